//! Test fixtures: a real Debian `docker-registry` on a free loopback port, and a small
//! busybox image built with umoci and pushed with skopeo.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running registry; stopped (killed and reaped) on drop, even when a test panics.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts `docker-registry` with storage under `dir`.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None)
    }

    /// Starts `docker-registry`, with htpasswd (basic) auth for `user:password` if given.
    pub fn start_with(dir: &Path, basic: Option<(&str, &str)>) -> Registry {
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.join("registry.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((user, password)) = basic {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password))).unwrap();
            yaml += &format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            );
        }
        std::fs::write(&cfg, yaml).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reg.ready() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn ready(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let mut resp = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut resp).is_ok()
            && (resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.0 401"))
    }

    /// Pushes `oci:<layout>:<tag>` as `<repo>:<tag>`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool) {
        self.push_as(layout, tag, repo, all, None)
    }

    /// Like `push`, with `user:password` credentials.
    pub fn push_as(&self, layout: &Path, tag: &str, repo: &str, all: bool, creds: Option<&str>) {
        let policy = layout.with_extension("policy.json");
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let mut c = Command::new("skopeo");
        c.arg("--policy")
            .arg(&policy)
            .arg("copy")
            .arg("--dest-tls-verify=false");
        if all {
            c.arg("--all");
        }
        if let Some(creds) = creds {
            c.arg("--dest-creds").arg(creds);
        }
        c.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr));
        run(&mut c);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bcrypt hash for htpasswd (Debian's python3 `crypt`, backed by libxcrypt).
fn bcrypt(password: &str) -> String {
    let out = run(Command::new("python3").arg("-W").arg("ignore").arg("-c").arg(
        "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
    ).arg(password));
    let h = out.trim().to_string();
    assert!(h.starts_with("$2"), "no bcrypt support: {h}");
    h
}

/// A busybox image layout at `<dir>/layout` with tags:
/// - `base`: one layer (/bin/busybox, applet symlinks, /etc/hello, /etc/doomed)
/// - `v1`: base + config (Cmd, Env, WorkingDir) + a layer whiting out /etc/doomed
/// - `multi`: an image index with a linux/arm64 entry (-> base) before linux/amd64 (-> v1)
pub fn busybox_layout(dir: &Path) -> PathBuf {
    let root = dir.join("src-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "ls", "cat", "echo", "httpd"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/hello"), "hello from the image\n").unwrap();
    std::fs::write(root.join("etc/doomed"), "deleted by the upper layer\n").unwrap();
    std::fs::create_dir(root.join("home")).unwrap();
    std::fs::write(root.join("home/owned"), "owned by 1000:1001\n").unwrap();
    std::os::unix::fs::chown(root.join("home/owned"), Some(1000), Some(1001)).unwrap();
    let l = dir.join("layout");
    let img = |tag: &str| format!("{}:{tag}", l.display());
    run(Command::new("umoci").arg("init").arg("--layout").arg(&l));
    run(Command::new("umoci").args(["new", "--image", &img("base")]));
    run(Command::new("umoci")
        .args(["insert", "--image", &img("base")])
        .arg(&root)
        .arg("/"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img("base"),
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "FOO=bar",
        "--config.workingdir",
        "/etc",
        "--tag",
        "v1",
    ]));
    run(Command::new("umoci").args(["insert", "--image", &img("v1"), "--whiteout", "/etc/doomed"]));
    add_index(&l);
    std::fs::remove_dir_all(&root).unwrap();
    l
}

/// Adds the `multi` tag: an image index over the `base` and `v1` manifests.
fn add_index(layout: &Path) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let find = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };
    let entry = |m: serde_json::Value, arch: &str| {
        serde_json::json!({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
                           "platform": {"architecture": arch, "os": "linux"}})
    };
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(find("base"), "arm64"), entry(find("v1"), "amd64")],
    });
    let bytes = serde_json::to_vec(&inner).unwrap();
    let hex = sha256_hex(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"), "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// sha256 of bytes, with the coreutils tool (keeps the fixture independent of the crate).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Runs a debugfs request against an ext4 image, returning stdout (+stderr).
pub fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("debugfs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `dir` (recursive), for "nothing left behind" checks.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
