//! Starts Debian's `/usr/bin/etcd` as a one-member cluster on free loopback ports
//! with its own data directory; killed when dropped. Tests (unit, integration,
//! benchmarks) use it to run the control plane over a real etcd.
//!
//! Clients reach it over TLS only, with a client certificate (`--client-cert-auth`):
//! a throwaway CA, etcd's server certificate and a client certificate are made
//! with [`crate::certs`] in `<data_dir>/tls` on its first start. The member's peer
//! URL (one member, loopback) stays plain; `/health` is read on a plain metrics URL.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs;
use crate::store::etcd::EtcdTls;

/// Where Debian's `etcd-server` installs the daemon.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// Whether `/usr/bin/etcd` is installed.
pub fn available() -> bool {
    Path::new(ETCD_BIN).exists()
}

/// A running etcd.
pub struct EtcdProcess {
    /// `https://127.0.0.1:PORT` to give clients.
    pub endpoint: String,
    /// The CA and client certificate its clients need.
    pub client_tls: EtcdTls,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET /health` on the metrics URL says `"health":"true"` (the member has a leader and serves).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.contains("\"health\":\"true\"")
}

impl EtcdProcess {
    /// Starts etcd over `data_dir` (created if needed). The ports are remembered in
    /// `data_dir/ports`, so starting again over the same directory reuses them (a
    /// member keeps its advertised URLs in its data).
    pub fn start(data_dir: &Path) -> std::io::Result<EtcdProcess> {
        std::fs::create_dir_all(data_dir)?;
        let ports_file = data_dir.join("ports");
        let (client, peer, metrics) =
            match std::fs::read_to_string(&ports_file).ok().and_then(|s| {
                let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((it.next()??, it.next()??, it.next()??))
            }) {
                Some(p) => p,
                None => {
                    let p = (free_port()?, free_port()?, free_port()?);
                    std::fs::write(&ports_file, format!("{} {} {}", p.0, p.1, p.2))?;
                    p
                }
            };
        let tls = data_dir.join("tls");
        if !tls.join(certs::CLIENT_KEY).exists() {
            let spec = certs::CertsSpec {
                hosts: vec!["localhost".into()],
                ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
                days: 30,
            };
            certs::generate(&tls, &spec).map_err(std::io::Error::other)?;
        }
        let endpoint = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let metrics_url = format!("http://127.0.0.1:{metrics}");
        let log = std::fs::File::create(data_dir.join("etcd.log"))?;
        let child = Command::new(ETCD_BIN)
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(data_dir.join("member-data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--max-txn-ops", "1024"])
            .arg("--cert-file")
            .arg(tls.join(certs::SERVER_CERT))
            .arg("--key-file")
            .arg(tls.join(certs::SERVER_KEY))
            .arg("--trusted-ca-file")
            .arg(tls.join(certs::CA_CERT))
            .arg("--client-cert-auth")
            .args(["--listen-metrics-urls", &metrics_url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut p = EtcdProcess {
            endpoint,
            client_tls: EtcdTls {
                ca: tls.join(certs::CA_CERT),
                cert: tls.join(certs::CLIENT_CERT),
                key: tls.join(certs::CLIENT_KEY),
            },
            data_dir: data_dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(metrics) {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "etcd exited ({st}); see {}",
                    data_dir.join("etcd.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("etcd did not start in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    /// The control plane flags that reach it: `--etcd-endpoint` and its TLS files.
    pub fn client_flags(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--etcd-endpoint".into(),
            self.endpoint.clone(),
            "--etcd-ca".into(),
            path(&self.client_tls.ca),
            "--etcd-cert".into(),
            path(&self.client_tls.cert),
            "--etcd-key".into(),
            path(&self.client_tls.key),
        ]
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
