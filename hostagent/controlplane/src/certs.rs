//! A throwaway local certificate authority (`controlplane certs`): one CA, a server
//! certificate for the API listener (and etcd), and a client certificate (for the
//! control plane's etcd client), written as PEM files. For development, tests and the
//! quick start; a production deployment brings its own PKI.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The CA certificate: give it to clients (`aws --ca-bundle`, `hostagent
/// --controlplane-ca`, `--etcd-ca`, etcd's `--trusted-ca-file`).
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (kept only so that more certificates can be made by hand).
pub const CA_KEY: &str = "ca-key.pem";
/// The server certificate (`--tls-cert`, etcd's `--cert-file`).
pub const SERVER_CERT: &str = "server.pem";
/// Its key (`--tls-key`, etcd's `--key-file`).
pub const SERVER_KEY: &str = "server-key.pem";
/// The client certificate (`--etcd-cert`).
pub const CLIENT_CERT: &str = "client.pem";
/// Its key (`--etcd-key`).
pub const CLIENT_KEY: &str = "client-key.pem";

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused the parameters or failed to sign.
    #[error("making certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing to name in the server certificate.
    #[error("the server certificate needs at least one --host or --ip")]
    NoNames,
    /// A validity of zero days.
    #[error("--days must be at least 1")]
    Days,
}

/// What to put in the certificates.
#[derive(Debug, Clone)]
pub struct CertsSpec {
    /// DNS names the server certificate is valid for.
    pub hosts: Vec<String>,
    /// IP addresses the server certificate is valid for.
    pub ips: Vec<IpAddr>,
    /// Validity of every certificate, from now.
    pub days: u32,
}

/// `controlplane certs`: the flags of the subcommand.
#[derive(Debug, clap::Parser)]
#[command(
    name = "controlplane certs",
    about = "Makes a throwaway local CA, a server certificate (API listener, etcd) and an \
             etcd client certificate, as PEM files in --out"
)]
pub struct CertsArgs {
    /// Directory to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem,
    /// client-key.pem into (created; existing files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// A DNS name of the server certificate (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// An IP address of the server certificate (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of the machines that check it may be a little behind.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

fn write(dir: &Path, name: &str, text: &str, private: bool) -> Result<(), CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let err = |source| CertsError::Write {
        path: path.clone(),
        source,
    };
    // Replace, never rewrite in place: a key file must not keep a looser mode.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Makes the CA and both certificates and writes them into `dir` (created).
pub fn generate(dir: &Path, spec: &CertsSpec) -> Result<(), CertsError> {
    if spec.hosts.is_empty() && spec.ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    if spec.days == 0 {
        return Err(CertsError::Days);
    }
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "controlplane throwaway CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, spec.days);
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca, ca_key)?;

    let mut server = CertificateParams::new(spec.hosts.clone())?;
    server.subject_alt_names.extend(
        spec.ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .collect::<Vec<_>>(),
    );
    let first = spec
        .hosts
        .first()
        .cloned()
        .or_else(|| spec.ips.first().map(|i| i.to_string()))
        .unwrap_or_default();
    server.distinguished_name.push(DnType::CommonName, first);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // etcd checks the client-auth usage of its own certificate too when it dials itself.
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut server, spec.days);
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "controlplane");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client, spec.days);
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca)?;

    write(dir, CA_CERT, &ca.pem(), false)?;
    write(dir, CA_KEY, &ca_key_pem, true)?;
    write(dir, SERVER_CERT, &server_cert.pem(), false)?;
    write(dir, SERVER_KEY, &server_key.serialize_pem(), true)?;
    write(dir, CLIENT_CERT, &client_cert.pem(), false)?;
    write(dir, CLIENT_KEY, &client_key.serialize_pem(), true)?;
    Ok(())
}

/// Runs `controlplane certs`; the exit status.
pub fn main(args: CertsArgs) -> i32 {
    let spec = CertsSpec {
        hosts: args.hosts,
        ips: args.ips,
        days: args.days,
    };
    match generate(&args.out, &spec) {
        Ok(()) => {
            println!(
                "wrote {CA_CERT}, {CA_KEY}, {SERVER_CERT}, {SERVER_KEY}, {CLIENT_CERT}, \
                 {CLIENT_KEY} in {}",
                args.out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("controlplane certs: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_chain_that_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CertsSpec {
            hosts: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            days: 2,
        };
        generate(dir.path(), &spec).unwrap();
        for f in [CA_KEY, SERVER_KEY, CLIENT_KEY] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
        }
        // The server pair loads into a rustls server; the CA into a client's roots.
        crate::tls::server_config(&dir.path().join(SERVER_CERT), &dir.path().join(SERVER_KEY))
            .unwrap();
        crate::tls::client_config(&dir.path().join(CA_CERT)).unwrap();
        assert!(matches!(
            generate(
                dir.path(),
                &CertsSpec {
                    hosts: vec![],
                    ips: vec![],
                    days: 1
                }
            ),
            Err(CertsError::NoNames)
        ));
    }
}
