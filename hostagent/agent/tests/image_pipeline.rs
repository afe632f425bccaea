//! End-to-end tests of the image pipeline against a real registry (Debian's
//! docker-registry), real umoci/skopeo-built images and real mkfs.ext4/debugfs; and
//! against hostile registries (real HTTP servers on loopback, `hostile` below) for the
//! source policy, timeouts and byte caps.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{debugfs, list_files, Registry};
use hostagent::image::{
    create_scratch_device, create_volume_device, ContainerOverrides, ErrorKind, ImageStore,
    RegistryCredentials, Step, StoreOptions, GIB, TASK_LAYER_STORAGE_BYTES,
};

/// What these tests allow explicitly: loopback registries (the test's own) and layouts.
fn test_options() -> StoreOptions {
    StoreOptions {
        allowed_registries: vec!["127.0.0.1".parse().unwrap()],
        allow_oci_layout: true,
        ..StoreOptions::default()
    }
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(dir.join("cache"), test_options()).unwrap()
}

/// Checks an image root holds busybox and the upper layer's whiteout took effect.
fn check_image_root(img: &Path) {
    let bin = debugfs(img, "ls -l /bin");
    assert!(bin.contains("busybox"), "{bin}");
    assert!(
        bin.lines()
            .any(|l| l.contains("120777") && l.trim_end().ends_with(" sh")),
        "applet symlink missing: {bin}"
    );
    let sh = debugfs(img, "stat /bin/sh");
    assert!(sh.contains("Fast link dest: \"busybox\""), "{sh}");
    let hello = debugfs(img, "cat /etc/hello");
    assert!(hello.contains("hello from the image"), "{hello}");
    let doomed = debugfs(img, "stat /etc/doomed");
    assert!(
        doomed.contains("File not found"),
        "whited-out file present: {doomed}"
    );
    let bb = debugfs(img, "stat /bin/busybox");
    assert!(
        bb.contains("Mode:  0755") || bb.contains("Mode: 0755"),
        "{bb}"
    );
    let owned = debugfs(img, "stat /home/owned");
    assert!(
        owned.contains("User:  1000   Group:  1001"),
        "ownership lost: {owned}"
    );
    let size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(bb.contains(&format!("Size: {size}")), "{bb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pull_cache_and_image_root() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let reg = Registry::start(t.path());
    reg.push(&layout, "v1", "busybox", false);
    let image = format!("{}/busybox:v1", reg.addr);
    let s = store(t.path());

    // Pull + unpack + ext4, with the image config recorded.
    let work = t.path().join("task");
    let out = t.path().join("task-web.ext4");
    let root = s.build_image_root(&image, None, &work, &out).await.unwrap();
    check_image_root(&out);
    assert_eq!(
        root.device.size_bytes,
        std::fs::metadata(&out).unwrap().len()
    );
    assert_eq!(root.image.layers.len(), 2);
    assert_eq!(root.image.config.cmd, vec!["/bin/sh".to_string()]);
    assert_eq!(root.image.config.working_dir, "/etc");
    let p = root.image.config.merge(&ContainerOverrides::default());
    assert_eq!(p.environment.get("FOO").map(String::as_str), Some("bar"));
    assert!(
        list_files(&work).is_empty(),
        "unpacked tree not removed: {:?}",
        list_files(&work)
    );

    // The cache holds every layer under its digest, and they verify.
    for l in &root.image.layers {
        let p = s.cache().blob_path(&l.digest);
        assert_eq!(p, l.path);
        assert_eq!(
            common::sha256_hex(&std::fs::read(&p).unwrap()),
            l.digest.hex()
        );
    }
    let big = root
        .image
        .layers
        .iter()
        .max_by_key(|l| l.size)
        .unwrap()
        .clone();
    // Mark the cached blob with an old mtime: a re-fetch gives a new file.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let mark = |p: &Path| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    let fetched_again = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap() != old;
    mark(&big.path);

    // A second pull uses the cache (the blob is not re-fetched)...
    let again = s.pull(&image, None).await.unwrap();
    assert_eq!(again.manifest_digest, root.image.manifest_digest);
    assert!(!fetched_again(&big.path), "cached blob was fetched again");

    // ...and a corrupt cached blob (same size, flipped byte) is detected and re-fetched.
    let mut data = std::fs::read(&big.path).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&big.path, &data).unwrap();
    mark(&big.path);
    let fixed = s.pull(&image, None).await.unwrap();
    assert_eq!(fixed.layers.len(), 2);
    assert!(fetched_again(&big.path), "corrupt blob not re-fetched");
    assert_eq!(
        common::sha256_hex(&std::fs::read(&big.path).unwrap()),
        big.digest.hex()
    );
    // A truncated one too.
    std::fs::write(&big.path, b"short").unwrap();
    let out2 = t.path().join("again.ext4");
    s.build_image_root(&image, None, &work, &out2)
        .await
        .unwrap();
    check_image_root(&out2);

    // Concurrent pulls of the same image into a fresh shared cache don't corrupt it.
    let shared = t.path().join("shared-cache");
    let (a, b) = (
        ImageStore::open(&shared, test_options()).unwrap(),
        ImageStore::open(&shared, test_options()).unwrap(),
    );
    let (ra, rb) = tokio::join!(a.pull(&image, None), b.pull(&image, None));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.layers[0].path, rb.layers[0].path);
    assert!(list_files(&shared.join("tmp")).is_empty());
    drop(reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_index_resolves_to_linux_amd64() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let reg = Registry::start(t.path());
    reg.push(&layout, "multi", "multi", true);
    let s = store(t.path());
    let img = s
        .pull(&format!("{}/multi:multi", reg.addr), None)
        .await
        .unwrap();
    // amd64 -> v1 (two layers); arm64 -> base (one layer).
    assert_eq!(img.layers.len(), 2);
    // Same through the local layout.
    let img = s
        .pull(&format!("oci-layout:{}:multi", layout.display()), None)
        .await
        .unwrap();
    assert_eq!(img.layers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_layout_source() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let s = store(t.path());
    let out = t.path().join("root.ext4");
    let r = s
        .build_image_root(
            &format!("oci-layout:{}:v1", layout.display()),
            None,
            &t.path().join("w"),
            &out,
        )
        .await
        .unwrap();
    check_image_root(&out);
    assert_eq!(r.image.config.env, vec!["FOO=bar".to_string()]);
    // The base tag has no whiteout: /etc/doomed is there.
    let out = t.path().join("base.ext4");
    s.build_image_root(
        &format!("oci-layout:{}:base", layout.display()),
        None,
        &t.path().join("w"),
        &out,
    )
    .await
    .unwrap();
    assert!(debugfs(&out, "cat /etc/doomed").contains("deleted by the upper layer"));
    // A corrupt blob in the layout is refused.
    let bad = t.path().join("bad.ext4");
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = idx["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::write(layout.join("blobs/sha256").join(m), b"{}").unwrap();
    let e = s
        .build_image_root(
            &format!("oci-layout:{}:v1", layout.display()),
            None,
            &t.path().join("w"),
            &bad,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadContent, "{e}");
    assert!(!bad.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_and_nothing_left_behind() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let reg = Registry::start(t.path());
    reg.push(&layout, "v1", "busybox", false);
    let s = ImageStore::open(
        t.path().join("cache"),
        StoreOptions {
            timeout: std::time::Duration::from_secs(5),
            ..test_options()
        },
    )
    .unwrap();
    let work = t.path().join("work");
    let out = t.path().join("out.ext4");
    // Port 1 (tcpmux) is privileged and unused: connections are refused.
    let dead = "127.0.0.1:1".to_string();
    let cases = [
        (
            format!("{}/nosuch:v1", reg.addr),
            ErrorKind::NotFound,
            Step::Manifest,
        ),
        (
            format!("{}/busybox:nosuchtag", reg.addr),
            ErrorKind::NotFound,
            Step::Manifest,
        ),
        (
            format!("{dead}/busybox:v1"),
            ErrorKind::Unreachable,
            Step::Manifest,
        ),
        (
            "Bad Ref!".to_string(),
            ErrorKind::InvalidReference,
            Step::Reference,
        ),
        (
            format!("oci-layout:{}:nosuchtag", layout.display()),
            ErrorKind::NotFound,
            Step::Manifest,
        ),
        (
            "oci-layout:/nonexistent/layout:v1".to_string(),
            ErrorKind::NotFound,
            Step::Manifest,
        ),
    ];
    for (image, kind, step) in cases {
        let e = s
            .build_image_root(&image, None, &work, &out)
            .await
            .unwrap_err();
        let msg = e.to_string();
        eprintln!("{msg}");
        assert_eq!(e.kind, kind, "{msg}");
        assert_eq!(e.step, step, "{msg}");
        assert!(
            msg.starts_with(&format!("image {image}: {step}: ")),
            "{msg}"
        );
        assert!(!out.exists());
        assert!(list_files(&work).is_empty());
        assert!(list_files(&t.path().join("cache/tmp")).is_empty());
        let blobs = list_files(&t.path().join("cache/blobs"));
        assert!(blobs.iter().all(|p| p.is_dir()), "{blobs:?}");
    }

    // Over the layer storage budget: refused, nothing left.
    let tiny = ImageStore::open(
        t.path().join("cache2"),
        StoreOptions {
            layer_budget_bytes: 4096,
            ..test_options()
        },
    )
    .unwrap();
    let e = tiny
        .build_image_root(&format!("{}/busybox:v1", reg.addr), None, &work, &out)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(!out.exists());
    assert!(list_files(&work).is_empty());
    drop(reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_and_scratch_devices() {
    let t = tempfile::tempdir().unwrap();
    let vol = t.path().join("volume.ext4");
    let d = create_volume_device(&vol).await.unwrap();
    let m = std::fs::metadata(&vol).unwrap();
    assert_eq!(d.size_bytes, 4 * GIB);
    assert_eq!(m.len(), 4 * GIB);
    assert!(
        m.blocks() * 512 < 256 << 20,
        "volume not sparse: {} bytes used",
        m.blocks() * 512
    );
    assert!(debugfs(&vol, "stats").contains("Filesystem volume name:   volumes"));
    let scratch = t.path().join("scratch.ext4");
    let d = create_scratch_device(&scratch, GIB).await.unwrap();
    assert_eq!(d.size_bytes, TASK_LAYER_STORAGE_BYTES - GIB);
    let e = create_scratch_device(&t.path().join("no.ext4"), TASK_LAYER_STORAGE_BYTES)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(!t.path().join("no.ext4").exists());
    assert_eq!(list_files(t.path()).len(), 2, "{:?}", list_files(t.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registry() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let reg = Registry::start_with(t.path(), Some(("alice", "s3cret")));
    reg.push_as(
        &layout,
        "v1",
        "private/busybox",
        false,
        Some("alice:s3cret"),
    );
    let image = format!("{}/private/busybox:v1", reg.addr);
    let s = store(t.path());
    let e = s.pull(&image, None).await.unwrap_err();
    eprintln!("{e}");
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let wrong = RegistryCredentials {
        username: "alice".into(),
        password: "nope".into(),
    };
    let e = s.pull(&image, Some(&wrong)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(!e.to_string().contains("nope"), "password leaked: {e}");
    let good = RegistryCredentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let img = s.pull(&image, Some(&good)).await.unwrap();
    assert_eq!(img.layers.len(), 2);
}

/// Real HTTP servers that play a hostile registry: they record what reaches them and
/// answer what the test says, including bodies that never end.
mod hostile {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// An answer.
    pub enum Reply {
        /// Status, extra headers, body (with its true Content-Length).
        Full(u16, Vec<(String, String)>, Vec<u8>),
        /// Status, an optional (lying) Content-Length, then bytes until the client leaves.
        Endless(u16, Option<u64>),
        /// Status, then one byte every 100 ms until the client leaves.
        Trickle(u16),
    }

    pub fn json(status: u16, body: &[u8], content_type: &str) -> Reply {
        Reply::Full(
            status,
            vec![("Content-Type".into(), content_type.into())],
            body.to_vec(),
        )
    }

    type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

    pub struct Server {
        pub port: u16,
        /// Connections accepted.
        pub connections: Arc<AtomicUsize>,
        /// Request heads received.
        pub requests: Arc<Mutex<Vec<String>>>,
        /// Body bytes written by Endless / Trickle answers.
        pub sent: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
    }

    impl Server {
        /// Listens on `bind` (`127.0.0.1:0`, `0.0.0.0:0`); `handler(path, head)`.
        pub fn start(
            bind: &str,
            handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
        ) -> Server {
            let l = TcpListener::bind(bind).unwrap();
            let port = l.local_addr().unwrap().port();
            let s = Server {
                port,
                connections: Arc::default(),
                requests: Arc::default(),
                sent: Arc::default(),
                stop: Arc::default(),
            };
            let (conns, reqs, sent, stop) = (
                s.connections.clone(),
                s.requests.clone(),
                s.sent.clone(),
                s.stop.clone(),
            );
            let handler: Arc<Handler> = Arc::new(handler);
            std::thread::spawn(move || {
                for c in l.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(c) = c else { continue };
                    conns.fetch_add(1, Ordering::SeqCst);
                    let (h, reqs, sent, stop) =
                        (handler.clone(), reqs.clone(), sent.clone(), stop.clone());
                    std::thread::spawn(move || serve(c, &*h, &reqs, &sent, &stop));
                }
            });
            s
        }

        pub fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
    }

    fn serve(
        mut c: TcpStream,
        h: &Handler,
        reqs: &Mutex<Vec<String>>,
        sent: &AtomicU64,
        stop: &AtomicBool,
    ) {
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match c.read(&mut b) {
                Ok(1) => head.push(b[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        reqs.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let status_line = |code: u16| format!("HTTP/1.1 {code} Whatever\r\nConnection: close\r\n");
        match h(&path, &head) {
            Reply::Full(code, headers, body) => {
                let mut out = status_line(code);
                for (k, v) in headers {
                    out += &format!("{k}: {v}\r\n");
                }
                out += &format!("Content-Length: {}\r\n\r\n", body.len());
                let _ = c.write_all(out.as_bytes());
                let _ = c.write_all(&body);
            }
            Reply::Endless(code, len) => {
                let mut out = status_line(code);
                if let Some(n) = len {
                    out += &format!("Content-Length: {n}\r\n");
                }
                out += "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n";
                if c.write_all(out.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'{'; 64 << 10];
                while !stop.load(Ordering::SeqCst) && c.write_all(&chunk).is_ok() {
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
            Reply::Trickle(code) => {
                let out = status_line(code)
                    + "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n";
                if c.write_all(out.as_bytes()).is_err() {
                    return;
                }
                while !stop.load(Ordering::SeqCst) && c.write_all(b" ").is_ok() {
                    sent.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

use hostile::{json, Reply, Server};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A small valid image config, and a manifest naming it and one layer of `layer_size`
/// bytes (digest of `layer`), with the config declared as `config_size` if given.
fn fake_image(layer: &[u8], layer_size: u64, config_size: Option<u64>) -> (Vec<u8>, Vec<u8>) {
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", common::sha256_hex(&config)),
                   "size": config_size.unwrap_or(config.len() as u64)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", common::sha256_hex(layer)),
                    "size": layer_size}],
    });
    (serde_json::to_vec(&manifest).unwrap(), config)
}

fn options_allowing(entries: &[&str]) -> StoreOptions {
    StoreOptions {
        allowed_registries: entries.iter().map(|e| e.parse().unwrap()).collect(),
        ..StoreOptions::default()
    }
}

fn open(t: &Path, name: &str, opts: StoreOptions) -> ImageStore {
    ImageStore::open(t.join(name), opts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_only_destinations_refused_by_default() {
    let t = tempfile::tempdir().unwrap();
    // Listening on every IPv4 address: a reference that got through would connect.
    let srv = Server::start("0.0.0.0:0", |_, _| json(404, b"{}", "application/json"));
    let p = srv.port;
    let s = open(t.path(), "cache", StoreOptions::default());
    let mut cases = vec![
        (format!("127.0.0.1:{p}/img:v1"), "loopback"),
        (format!("127.8.9.10:{p}/img:v1"), "loopback"),
        (format!("localhost:{p}/img:v1"), "loopback"),
        ("169.254.169.254/latest/img:v1".to_string(), "link-local"),
        ("10.0.2.2:5000/img:v1".to_string(), "private"),
        ("172.16.0.1:5000/img:v1".to_string(), "private"),
        ("192.168.1.1/img:v1".to_string(), "private"),
        (format!("0.0.0.0:{p}/img:v1"), "unspecified"),
        ("224.0.0.1/img:v1".to_string(), "multicast"),
    ];
    // (IPv6 literals are not valid in image references; IPv6 classes are unit-tested
    // in policy.rs.) The host's own addresses (private or public, they reach the host's
    // services).
    for a in own_ipv4_addresses() {
        cases.push((format!("{a}:{p}/img:v1"), ""));
    }
    for (image, class) in cases {
        let started = Instant::now();
        let e = s.pull(&image, None).await.unwrap_err();
        let msg = e.to_string();
        eprintln!("{msg}");
        assert_eq!(e.kind, ErrorKind::NotAllowed, "{msg}");
        assert_eq!(e.step, Step::Manifest, "{msg}");
        assert!(msg.contains(class), "{msg}");
        assert!(msg.contains("allow-list"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(5), "{msg}");
    }
    assert_eq!(
        srv.connections.load(Ordering::SeqCst),
        0,
        "a refused registry was contacted"
    );
    assert!(list_files(&t.path().join("cache/tmp")).is_empty());

    // The operator allows the registry by host:port: it is contacted (and answers 404).
    for entries in [
        vec![format!("127.0.0.1:{p}")],
        vec!["127.0.0.0/8".to_string()],
    ] {
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let s = open(t.path(), "cache2", options_allowing(&entries));
        let e = s
            .pull(&format!("127.0.0.1:{p}/img:v1"), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("404"), "{e}");
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 2);
    // Another port of the same address, and a name resolving to it, stay refused.
    let s = open(
        t.path(),
        "cache3",
        options_allowing(&["127.0.0.1:1", "public"]),
    );
    for image in [
        format!("127.0.0.1:{p}/img:v1"),
        format!("localhost:{p}/img:v1"),
    ] {
        let e = s.pull(&image, None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAllowed, "{e}");
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 2);
}

/// The host's IPv4 addresses other than loopback (from `ip`).
fn own_ipv4_addresses() -> Vec<String> {
    let out = common::run(std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]));
    out.lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next())
        .filter(|a| !a.starts_with("127."))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_registry_by_name_and_by_cidr() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let reg = Registry::start(t.path());
    reg.push(&layout, "v1", "busybox", false);
    let port = reg.addr.rsplit(':').next().unwrap().to_string();
    let by_name = format!("localhost:{port}/busybox:v1");
    // Refused by default...
    let e = open(t.path(), "c0", StoreOptions::default())
        .pull(&by_name, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotAllowed, "{e}");
    // ...pulled when the operator names the registry, or its network.
    let img = open(
        t.path(),
        "c1",
        options_allowing(&[&format!("localhost:{port}")]),
    )
    .pull(&by_name, None)
    .await
    .unwrap();
    assert_eq!(img.layers.len(), 2);
    let img = open(t.path(), "c2", options_allowing(&["127.0.0.0/8"]))
        .pull(&format!("{}/busybox:v1", reg.addr), None)
        .await
        .unwrap();
    assert_eq!(img.layers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_layout_only_with_the_operator_flag() {
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let s = open(t.path(), "cache", StoreOptions::default());
    for image in [
        format!("oci-layout:{}:v1", layout.display()),
        "oci-layout:/etc:v1".to_string(),
    ] {
        let e = s.pull(&image, None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAllowed, "{e}");
        assert_eq!(e.step, Step::Reference, "{e}");
        assert!(e.to_string().contains("--allow-oci-layout"), "{e}");
    }
    assert!(list_files(&t.path().join("cache/blobs/sha256")).is_empty());
    let s = open(
        t.path(),
        "cache2",
        StoreOptions {
            allow_oci_layout: true,
            ..StoreOptions::default()
        },
    );
    let img = s
        .pull(&format!("oci-layout:{}:v1", layout.display()), None)
        .await
        .unwrap();
    assert_eq!(img.layers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_endless_manifests_refused_at_the_cap() {
    let t = tempfile::tempdir().unwrap();
    // A declared 1 GiB manifest, and one with no length that never ends.
    let lying = Server::start("127.0.0.1:0", |_, _| Reply::Endless(200, Some(1 << 30)));
    let endless = Server::start("127.0.0.1:0", |_, _| Reply::Endless(200, None));
    let s = open(t.path(), "cache", test_options());
    for srv in [&lying, &endless] {
        let started = Instant::now();
        let e = s
            .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
            .await
            .unwrap_err();
        eprintln!("{e}");
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        assert_eq!(e.step, Step::Manifest, "{e}");
        assert!(e.to_string().contains("cap of 4194304 bytes"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // The endless one was cut off near the cap (plus what socket buffers hold).
    std::thread::sleep(Duration::from_millis(300));
    let sent = endless.sent.load(Ordering::SeqCst);
    assert!(
        sent < 4 * (4 << 20),
        "{sent} bytes were read from an endless body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_answers_time_out() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start("127.0.0.1:0", |_, _| Reply::Trickle(200));
    let s = open(
        t.path(),
        "cache",
        StoreOptions {
            request_timeout: Duration::from_secs(2),
            ..test_options()
        },
    );
    let started = Instant::now();
    let e = s
        .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
        .await
        .unwrap_err();
    eprintln!("{e}");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A layer that trickles forever is bounded by the whole pull's limit.
    let layer = b"layer".to_vec();
    let (manifest, config) = fake_image(&layer, 1 << 20, None);
    let srv = Server::start("127.0.0.1:0", move |path, _| {
        if path.contains("/manifests/") {
            json(200, &manifest, OCI_MANIFEST)
        } else if path.ends_with(&common::sha256_hex(&config)) {
            json(200, &config, "application/octet-stream")
        } else {
            Reply::Trickle(200)
        }
    });
    let s = open(
        t.path(),
        "cache2",
        StoreOptions {
            image_timeout: Duration::from_secs(3),
            ..test_options()
        },
    );
    let started = Instant::now();
    let e = s
        .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
        .await
        .unwrap_err();
    eprintln!("{e}");
    assert!(matches!(e.step, Step::Layer(_)), "{e}");
    assert!(e.to_string().contains("ran over its limit of 3 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(list_files(&t.path().join("cache2/tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_checked_against_declared_sizes() {
    let t = tempfile::tempdir().unwrap();
    let layer = vec![7u8; 100];
    let (manifest, config) = fake_image(&layer, 100, None);
    let cfg_hex = common::sha256_hex(&config);
    // The layer answers without a length and never ends; a second server announces a
    // length above the declared size.
    let (m1, c1, h1) = (manifest.clone(), config.clone(), cfg_hex.clone());
    let endless = Server::start("127.0.0.1:0", move |path, _| {
        if path.contains("/manifests/") {
            json(200, &m1, OCI_MANIFEST)
        } else if path.ends_with(&h1) {
            json(200, &c1, "application/octet-stream")
        } else {
            Reply::Endless(200, None)
        }
    });
    let (m2, c2, h2) = (manifest.clone(), config.clone(), cfg_hex.clone());
    let lying = Server::start("127.0.0.1:0", move |path, _| {
        if path.contains("/manifests/") {
            json(200, &m2, OCI_MANIFEST)
        } else if path.ends_with(&h2) {
            json(200, &c2, "application/octet-stream")
        } else {
            Reply::Endless(200, Some(10 << 20))
        }
    });
    let s = open(t.path(), "cache", test_options());
    for srv in [&endless, &lying] {
        let e = s
            .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
            .await
            .unwrap_err();
        eprintln!("{e}");
        assert_eq!(e.kind, ErrorKind::BadContent, "{e}");
        assert!(matches!(e.step, Step::Layer(_)), "{e}");
        assert!(e.to_string().contains("larger than the 100 bytes"), "{e}");
        assert!(list_files(&t.path().join("cache/tmp")).is_empty());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(endless.sent.load(Ordering::SeqCst) < 16 << 20);

    // A config declared above the cap is refused before it is fetched.
    let (big_cfg, _) = fake_image(&layer, 100, Some(5 << 20));
    let srv = Server::start("127.0.0.1:0", move |_, _| json(200, &big_cfg, OCI_MANIFEST));
    let e = s
        .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.step, Step::Config, "{e}");
    assert!(
        srv.requests().iter().all(|r| !r.contains("/blobs/")),
        "{:?}",
        srv.requests()
    );
    // A layer declared above the layer budget is refused from the manifest.
    let (huge_layer, _) = fake_image(&layer, 11 << 30, None);
    let srv = Server::start("127.0.0.1:0", move |_, _| {
        json(200, &huge_layer, OCI_MANIFEST)
    });
    let e = s
        .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.step, Step::Manifest, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answers_are_never_echoed() {
    let t = tempfile::tempdir().unwrap();
    const SECRET: &str = "SECRET-FROM-THE-HOST-SERVICE";
    let envelope = format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"{SECRET}"}}]}}"#);
    let bad_shape = format!(r#"{{"schemaVersion":2,"config":"{SECRET}"}}"#);
    let cases: Vec<(u16, String, ErrorKind, &str)> = vec![
        (
            500,
            envelope.clone(),
            ErrorKind::Registry,
            "500 Internal Server Error",
        ),
        (404, envelope.clone(), ErrorKind::NotFound, "404 Not Found"),
        (
            403,
            envelope.clone(),
            ErrorKind::Unauthorized,
            "403 Forbidden",
        ),
        (418, SECRET.to_string(), ErrorKind::Registry, "418"),
        (
            200,
            bad_shape,
            ErrorKind::BadContent,
            "manifest is not valid",
        ),
        (
            200,
            SECRET.to_string(),
            ErrorKind::BadContent,
            "manifest is not valid",
        ),
    ];
    let s = open(t.path(), "cache", test_options());
    for (code, body, kind, says) in cases {
        let srv = Server::start("127.0.0.1:0", move |_, _| {
            json(code, body.as_bytes(), "application/json")
        });
        let e = s
            .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
            .await
            .unwrap_err();
        let msg = e.to_string();
        eprintln!("{msg}");
        assert_eq!(e.kind, kind, "{msg}");
        assert_eq!(e.step, Step::Manifest, "{msg}");
        assert!(msg.contains(says), "{msg}");
        assert!(!msg.contains(SECRET), "registry body echoed: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_token_realms_are_checked() {
    let t = tempfile::tempdir().unwrap();
    // A second server the registry points at: not in the allow-list.
    let inner = Server::start("127.0.0.1:0", |_, _| json(200, b"{}", "application/json"));
    let target = format!("http://127.0.0.1:{}/x", inner.port);
    let t1 = target.clone();
    let redirecting = Server::start("127.0.0.1:0", move |_, _| {
        Reply::Full(302, vec![("Location".into(), t1.clone())], Vec::new())
    });
    let to_metadata = Server::start("127.0.0.1:0", |_, _| {
        Reply::Full(
            307,
            vec![(
                "Location".into(),
                "http://169.254.169.254/latest/meta-data/".into(),
            )],
            Vec::new(),
        )
    });
    let realm = format!(r#"Bearer realm="{target}",service="s""#);
    let challenging = Server::start("127.0.0.1:0", move |_, _| {
        Reply::Full(
            401,
            vec![("WWW-Authenticate".into(), realm.clone())],
            Vec::new(),
        )
    });
    for (srv, says) in [
        (&redirecting, "redirect target"),
        (&to_metadata, "link-local"),
        (&challenging, "token service"),
    ] {
        let s = open(
            t.path(),
            "cache",
            options_allowing(&[&format!("127.0.0.1:{}", srv.port)]),
        );
        let e = s
            .pull(&format!("127.0.0.1:{}/img:v1", srv.port), None)
            .await
            .unwrap_err();
        let msg = e.to_string();
        eprintln!("{msg}");
        assert_eq!(e.kind, ErrorKind::NotAllowed, "{msg}");
        assert!(msg.contains(says), "{msg}");
        assert!(
            !msg.contains(&target) && !msg.contains("meta-data"),
            "{msg}"
        );
    }
    assert_eq!(inner.connections.load(Ordering::SeqCst), 0);

    // With the target allowed the redirect is followed, without the credentials.
    let s = open(
        t.path(),
        "cache2",
        options_allowing(&[
            &format!("127.0.0.1:{}", redirecting.port),
            &format!("127.0.0.1:{}", inner.port),
        ]),
    );
    let creds = RegistryCredentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let basic = Server::start("127.0.0.1:0", |_, head| {
        if head.to_ascii_lowercase().contains("authorization: basic") {
            json(404, b"{}", "application/json")
        } else {
            Reply::Full(
                401,
                vec![("WWW-Authenticate".into(), "Basic realm=\"r\"".into())],
                vec![],
            )
        }
    });
    let _ = s
        .pull(
            &format!("127.0.0.1:{}/img:v1", redirecting.port),
            Some(&creds),
        )
        .await;
    assert_eq!(inner.connections.load(Ordering::SeqCst), 1);
    assert!(inner
        .requests()
        .iter()
        .all(|r| !r.to_ascii_lowercase().contains("authorization")));
    // Basic credentials go to the registry that asked for them.
    let s = open(t.path(), "cache3", test_options());
    let e = s
        .pull(&format!("127.0.0.1:{}/img:v1", basic.port), Some(&creds))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_and_cache_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let layout = common::busybox_layout(t.path());
    let s = open(t.path(), "cache", test_options());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let work = t.path().join("task");
    let (staging, pulled, _) = s
        .unpack_staged(&format!("oci-layout:{}:v1", layout.display()), None, &work)
        .await
        .unwrap();
    assert_eq!(mode(staging.path()), 0o700);
    assert!(staging.path().starts_with(&work));
    assert!(staging.rootfs().join("bin/busybox").is_file());
    let dir = staging.path().to_path_buf();
    drop(staging);
    assert!(!dir.exists(), "staging not removed");
    let cache = t.path().join("cache");
    for d in ["", "blobs", "blobs/sha256", "tmp"] {
        assert_eq!(mode(&cache.join(d)), 0o700, "{d}");
    }
    for l in &pulled.layers {
        assert_eq!(mode(&l.path) & 0o077, 0, "{}", l.path.display());
    }
    assert_eq!(mode(&s.cache().blob_path(&pulled.config_digest)) & 0o077, 0);
}
