//! Unpacking layers into a root file system directory. Layer content is untrusted: every
//! entry path is confined to the root (no `..`, and symlinks met while walking to an
//! entry's parent are resolved as if the root were `/`, so they never lead outside it).
//! OCI whiteouts are applied: `.wh.<name>` deletes `<name>` from lower layers,
//! `.wh..wh..opq` empties the directory of everything lower layers put there.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;
use tracing::{debug, warn};

use super::confine::{remove_any, resolve_dir, safe_components};
use super::digest::{Digest, HashingReader, PadAtEof};
use super::error::{ErrorKind, Failure};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Running totals of an unpack, checked against the layer storage budget.
#[derive(Debug, Clone, Default)]
pub struct UnpackStats {
    /// Entries created (files, directories, links, nodes).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Unpacks one layer blob (tar, tar+gzip or tar+zstd, detected by magic) into `root`.
/// When `diff_id` is given, the uncompressed stream must hash to it.
pub fn unpack_layer(
    blob: &Path,
    root: &Path,
    diff_id: Option<&Digest>,
    max_bytes: u64,
    stats: &mut UnpackStats,
) -> Result<(), Failure> {
    let mut file = BufReader::new(
        fs::File::open(blob).map_err(|e| Failure::io(format!("open {}", blob.display()), e))?,
    );
    let mut magic = [0u8; 4];
    let n = read_full(&mut file, &mut magic)
        .map_err(|e| Failure::io(format!("read {}", blob.display()), e))?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let raw = head.chain(file);
    let decoded: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(raw)
                .map_err(|e| Failure::new(ErrorKind::BadContent, format!("zstd: {e}")))?,
        )
    } else {
        Box::new(raw)
    };
    let mut archive = tar::Archive::new(PadAtEof::new(HashingReader::new(decoded)));
    let mut u = Unpacker {
        root,
        created: HashSet::new(),
        is_root: nix_geteuid() == 0,
        max_bytes,
        stats,
    };
    let entries = archive.entries().map_err(bad_tar)?;
    for entry in entries {
        let mut entry = entry.map_err(bad_tar)?;
        u.entry(&mut entry)?;
    }
    // Hash what follows the end-of-archive marker too, so the diff ID covers the stream.
    let mut reader = archive.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(bad_tar)?;
    if reader.padded > 0 {
        debug!(
            bytes = reader.padded,
            "layer archive lacked its end-of-archive padding"
        );
    }
    let (got, _) = reader.inner.finish();
    if let Some(want) = diff_id {
        if &got != want {
            return Err(Failure::new(
                ErrorKind::BadContent,
                format!("uncompressed layer is {got}, the config's diff_id says {want}"),
            ));
        }
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn bad_tar(e: io::Error) -> Failure {
    Failure::new(
        ErrorKind::BadContent,
        format!("malformed layer archive: {e}"),
    )
}

fn nix_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn cstr(p: &Path) -> Result<CString, Failure> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Failure::new(ErrorKind::BadContent, "NUL in path"))
}

struct Unpacker<'a> {
    root: &'a Path,
    /// Paths this layer created (an opaque whiteout keeps them).
    created: HashSet<PathBuf>,
    is_root: bool,
    max_bytes: u64,
    stats: &'a mut UnpackStats,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let ctx = |f: Failure| Failure::new(f.kind, format!("entry {shown:?}: {}", f.reason));
        let comps = safe_components(&raw)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the root directory itself
        };
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
        ) || matches!(kind, EntryType::GNULongLink)
        {
            return Ok(());
        }
        let parent = resolve_dir(self.root, parents, true, &mut self.created).map_err(ctx)?;
        let name_b = name.as_bytes();
        if name_b == OPAQUE_WHITEOUT.as_bytes() {
            return self.make_opaque(&parent).map_err(ctx);
        }
        if let Some(victim) = name_b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(ctx(Failure::new(ErrorKind::BadContent, "bad whiteout")));
            }
            let p = parent.join(OsStr::from_bytes(victim));
            debug!(path = %p.display(), "whiteout");
            return remove_any(&p).map_err(|e| ctx(Failure::io("whiteout", e)));
        }
        let target = parent.join(name);
        self.create(e, kind, &target).map_err(ctx)?;
        self.created.insert(target);
        self.stats.entries += 1;
        Ok(())
    }

    /// Removes every child of `dir` that this layer did not create.
    fn make_opaque(&self, dir: &Path) -> Result<(), Failure> {
        let rd = fs::read_dir(dir).map_err(|e| Failure::io("opaque whiteout", e))?;
        for child in rd {
            let child = child.map_err(|e| Failure::io("opaque whiteout", e))?.path();
            let ours = self.created.iter().any(|p| p.starts_with(&child));
            if !ours {
                remove_any(&child).map_err(|e| Failure::io("opaque whiteout", e))?;
            } else if fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir()) {
                self.make_opaque(&child)?;
            }
        }
        Ok(())
    }

    fn create<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        kind: EntryType,
        target: &Path,
    ) -> Result<(), Failure> {
        let h = e.header();
        let mode = h.mode().map_err(bad_tar)? & 0o7777;
        let uid = h.uid().map_err(bad_tar)?;
        let gid = h.gid().map_err(bad_tar)?;
        let mtime = h.mtime().unwrap_or(0);
        let io = |what: &str| {
            let t = target.display().to_string();
            let what = what.to_string();
            move |e: io::Error| Failure::io(format!("{what} {t}"), e)
        };
        match kind {
            EntryType::Directory => {
                if !fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
                    remove_any(target).map_err(io("replace"))?;
                    fs::create_dir(target).map_err(io("mkdir"))?;
                }
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = e.size();
                if self.stats.bytes.saturating_add(size) > self.max_bytes {
                    return Err(Failure::new(
                        ErrorKind::TooLarge,
                        format!(
                            "unpacked content exceeds the layer storage budget of {} bytes",
                            self.max_bytes
                        ),
                    ));
                }
                remove_any(target).map_err(io("replace"))?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(target)
                    .map_err(io("create"))?;
                let n = io::copy(&mut e.take(size), &mut f).map_err(io("write"))?;
                self.stats.bytes += n;
            }
            EntryType::Symlink => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| Failure::new(ErrorKind::BadContent, "symlink without target"))?
                    .into_owned();
                remove_any(target).map_err(io("replace"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), target)
                    .map_err(io("symlink"))?;
            }
            EntryType::Link => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| Failure::new(ErrorKind::BadContent, "hardlink without target"))?
                    .into_owned();
                let comps = safe_components(&link)?;
                let Some((lname, lparents)) = comps.split_last() else {
                    return Err(Failure::new(ErrorKind::BadContent, "hardlink to the root"));
                };
                let mut scratch = HashSet::new();
                let src = resolve_dir(self.root, lparents, false, &mut scratch)?.join(lname);
                let m = fs::symlink_metadata(&src).map_err(io("hardlink source of"))?;
                if m.is_dir() {
                    return Err(Failure::new(
                        ErrorKind::BadContent,
                        "hardlink to a directory",
                    ));
                }
                if src != target {
                    remove_any(target).map_err(io("replace"))?;
                    fs::hard_link(&src, target).map_err(io("hardlink"))?;
                }
                return Ok(()); // shares the source's metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if kind != EntryType::Fifo && !self.is_root {
                    warn!(path = %target.display(), "not root: skipping device node");
                    return Ok(());
                }
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                remove_any(target).map_err(io("replace"))?;
                let c = cstr(target)?;
                // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
                let r =
                    unsafe { libc::mknod(c.as_ptr(), fmt | 0o600, libc::makedev(major, minor)) };
                if r != 0 {
                    return Err(io("mknod")(io::Error::last_os_error()));
                }
            }
            other => {
                debug!(path = %target.display(), ?other, "skipping unsupported entry type");
                return Ok(());
            }
        }
        self.set_xattrs(e, target);
        self.set_owner_mode_time(target, kind, uid, gid, mode, mtime)
    }

    fn set_xattrs<R: Read>(&self, e: &mut tar::Entry<'_, R>, target: &Path) {
        let Ok(Some(exts)) = e.pax_extensions() else {
            return;
        };
        for ext in exts.flatten() {
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            let (Ok(p), Ok(n)) = (cstr(target), CString::new(name)) else {
                continue;
            };
            let v = ext.value_bytes();
            // SAFETY: valid NUL-terminated path and name; `v` is a live slice of v.len() bytes.
            let r =
                unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if r != 0 {
                warn!(path = %target.display(), xattr = %String::from_utf8_lossy(name),
                      err = %io::Error::last_os_error(), "cannot set xattr");
            }
        }
    }

    fn set_owner_mode_time(
        &self,
        target: &Path,
        kind: EntryType,
        uid: u64,
        gid: u64,
        mode: u32,
        mtime: u64,
    ) -> Result<(), Failure> {
        let t = target.display();
        if self.is_root {
            let (u, g) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
            std::os::unix::fs::lchown(target, u, g)
                .map_err(|e| Failure::io(format!("chown {t}"), e))?;
        }
        if kind != EntryType::Symlink {
            // After chown: chown clears set-id bits.
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
                .map_err(|e| Failure::io(format!("chmod {t}"), e))?;
        }
        if kind != EntryType::Directory {
            let c = cstr(target)?;
            let secs = libc::time_t::try_from(mtime).unwrap_or(0);
            let ts = [
                libc::timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                },
                libc::timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                },
            ];
            // SAFETY: valid path and a two-element timespec array, as utimensat requires.
            unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // Unit tests of layer unpacking with hand-made (including malicious) archives.

    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::{unpack_layer, UnpackStats};
    use crate::image::{Digest, ErrorKind};

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
    ) -> Result<UnpackStats, crate::image::Failure> {
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
        let err =
            unpack_layer(&p, &root, Some(&Digest::of_bytes(b"x")), 1 << 20, &mut st).unwrap_err();
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
}
