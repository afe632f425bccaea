//! End-to-end tests of the image pipeline against a real registry (Debian's
//! docker-registry), real umoci/skopeo-built images and real mkfs.ext4/debugfs.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{debugfs, list_files, Registry};
use hostagent::image::{
    create_scratch_device, create_volume_device, ContainerOverrides, ErrorKind, ImageStore,
    RegistryCredentials, Step, StoreOptions, GIB, TASK_LAYER_STORAGE_BYTES,
};

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(dir.join("cache"), StoreOptions::default()).unwrap()
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
        ImageStore::open(&shared, StoreOptions::default()).unwrap(),
        ImageStore::open(&shared, StoreOptions::default()).unwrap(),
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
            ..Default::default()
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
            ..Default::default()
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
