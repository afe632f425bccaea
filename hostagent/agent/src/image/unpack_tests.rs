//! Unit tests of layer unpacking with hand-made (including malicious) archives.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::digest::Digest;
use super::error::ErrorKind;
use super::unpack::{unpack_layer, UnpackStats};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// Builds a tar with raw (unchecked) names, so tests can express hostile paths.
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, data, kind, mode, link): (&str, &[u8], tar::EntryType, u32, &str) = match e {
            E::Dir(n) => (n, b"", tar::EntryType::Directory, 0o755, ""),
            E::File(n, d, m) => (n, d, tar::EntryType::Regular, *m, ""),
            E::Sym(n, t) => (n, b"", tar::EntryType::Symlink, 0o777, t),
            E::Hard(n, t) => (n, b"", tar::EntryType::Link, 0o644, t),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn unpack(
    dir: &Path,
    root: &Path,
    layer: &[u8],
    max: u64,
) -> Result<UnpackStats, super::error::Failure> {
    let p = dir.join("layer.tar");
    fs::write(&p, layer).unwrap();
    let mut st = UnpackStats::default();
    unpack_layer(&p, root, Some(&Digest::of_bytes(layer)), max, &mut st).map(|()| st)
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    (t, root)
}

#[test]
fn unpacks_files_links_and_modes() {
    let (t, root) = setup();
    let layer = tar_of(&[
        E::Dir("bin/"),
        E::File("bin/busybox", b"#!fake", 0o4755),
        E::Sym("bin/sh", "/bin/busybox"),
        E::Hard("bin/ash", "bin/busybox"),
        E::File("./etc/motd", b"hi", 0o600),
    ]);
    let st = unpack(t.path(), &root, &layer, 1 << 20).unwrap();
    assert_eq!(st.entries, 5);
    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"#!fake");
    let m = fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::metadata(root.join("bin/ash")).unwrap().ino(), m.ino());
    assert_eq!(
        fs::metadata(root.join("etc/motd"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn applies_whiteouts_and_opaque_dirs() {
    let (t, root) = setup();
    let lower = tar_of(&[
        E::File("a/x", b"x", 0o644),
        E::File("a/y", b"y", 0o644),
        E::File("b/z", b"z", 0o644),
        E::File("b/sub/deep", b"d", 0o644),
        E::File("c/keep", b"k", 0o644),
    ]);
    unpack(t.path(), &root, &lower, 1 << 20).unwrap();
    let upper = tar_of(&[
        E::File("a/.wh.x", b"", 0o644),
        E::Dir("b/"),
        E::File("b/early", b"e", 0o644),
        E::File("b/.wh..wh..opq", b"", 0o644),
        E::File("b/late", b"l", 0o644),
        E::File(".wh.c", b"", 0o644),
    ]);
    unpack(t.path(), &root, &upper, 1 << 20).unwrap();
    assert!(!root.join("a/x").exists());
    assert!(root.join("a/y").exists());
    assert!(!root.join("b/z").exists());
    assert!(!root.join("b/sub").exists());
    assert!(
        root.join("b/early").exists(),
        "same-layer entries survive the opaque marker"
    );
    assert!(root.join("b/late").exists());
    assert!(!root.join("c").exists());
    assert!(
        !root.join("a/.wh.x").exists(),
        "whiteout markers are not created"
    );
}

#[test]
fn refuses_dot_dot() {
    for bad in ["../evil", "a/../../evil", "a/b/../../../evil"] {
        let (t, root) = setup();
        let err = unpack(
            t.path(),
            &root,
            &tar_of(&[E::File(bad, b"x", 0o644)]),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadContent, "{bad}");
        assert!(err.reason.contains("escapes"), "{}", err.reason);
        assert!(!t.path().join("evil").exists());
    }
}

#[test]
fn symlinks_cannot_lead_writes_outside_the_root() {
    let (t, root) = setup();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"s").unwrap();
    let abs = outside.to_str().unwrap();
    let layer = tar_of(&[
        E::Sym("esc", abs),
        E::File("esc/pwned", b"p", 0o644),
        E::Sym("up", "../../../../../.."),
        E::File("up/pwned2", b"p", 0o644),
    ]);
    unpack(t.path(), &root, &layer, 1 << 20).unwrap();
    assert!(!outside.join("pwned").exists());
    assert!(!t.path().join("pwned2").exists());
    // They landed inside the root, where the symlinks point when the root is `/`.
    assert!(root
        .join(abs.trim_start_matches('/'))
        .join("pwned")
        .exists());
    assert!(root.join("pwned2").exists());

    // A hardlink through the symlink cannot reach the outside file either.
    let (t2, root2) = setup();
    let layer = tar_of(&[E::Sym("esc", abs), E::Hard("stolen", "esc/secret")]);
    let err = unpack(t2.path(), &root2, &layer, 1 << 20).unwrap_err();
    assert!(!root2.join("stolen").exists(), "{}", err.reason);
    let layer = tar_of(&[E::Hard("stolen", "../outside/secret")]);
    assert!(unpack(t2.path(), &root2, &layer, 1 << 20).is_err());
}

#[test]
fn enforces_the_budget_and_the_diff_id() {
    let (t, root) = setup();
    let big = vec![7u8; 5000];
    let err = unpack(
        t.path(),
        &root,
        &tar_of(&[E::File("big", &big, 0o644)]),
        4096,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge);

    // gzip-compressed layer, checked against a wrong diff ID.
    let plain = tar_of(&[E::File("f", b"data", 0o644)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let p = t.path().join("layer.tgz");
    fs::write(&p, &gz).unwrap();
    let mut st = UnpackStats::default();
    unpack_layer(&p, &root, Some(&Digest::of_bytes(&plain)), 1 << 20, &mut st).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"data");
    let err = unpack_layer(&p, &root, Some(&Digest::of_bytes(b"x")), 1 << 20, &mut st).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadContent);
}

#[test]
fn unpacks_zstd_layers() {
    let (t, root) = setup();
    let plain = tar_of(&[E::File("z/file", b"zstd data", 0o640)]);
    let mut c = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    c.stdin.take().unwrap().write_all(&plain).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let p = t.path().join("layer.tar.zst");
    fs::write(&p, &out.stdout).unwrap();
    let mut st = UnpackStats::default();
    unpack_layer(&p, &root, Some(&Digest::of_bytes(&plain)), 1 << 20, &mut st).unwrap();
    assert_eq!(fs::read(root.join("z/file")).unwrap(), b"zstd data");
}

#[test]
fn symlink_loops_and_files_in_the_way_are_errors() {
    let (t, root) = setup();
    let layer = tar_of(&[E::Sym("loop", "loop"), E::File("loop/x", b"x", 0o644)]);
    let err = unpack(t.path(), &root, &layer, 1 << 20).unwrap_err();
    assert!(err.reason.contains("too many symlinks"), "{}", err.reason);
    let (t, root) = setup();
    let layer = tar_of(&[E::File("f", b"x", 0o644), E::File("f/x", b"x", 0o644)]);
    let err = unpack(t.path(), &root, &layer, 1 << 20).unwrap_err();
    assert!(err.reason.contains("not a directory"), "{}", err.reason);
    // A later directory entry replaces a lower file, and a file replaces a directory.
    let (t, root) = setup();
    unpack(
        t.path(),
        &root,
        &tar_of(&[E::File("p", b"x", 0o644), E::File("d/in", b"x", 0o644)]),
        1 << 20,
    )
    .unwrap();
    unpack(
        t.path(),
        &root,
        &tar_of(&[E::Dir("p/"), E::File("d", b"now a file", 0o644)]),
        1 << 20,
    )
    .unwrap();
    assert!(root.join("p").is_dir());
    assert_eq!(fs::read(root.join("d")).unwrap(), b"now a file");
}
