//! Confining untrusted archive paths to a root directory.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, Failure};

const MAX_SYMLINK_HOPS: u32 = 40;

/// Splits an archive path into safe components: `.` and empty parts dropped, a leading
/// `/` ignored, `..` refused.
pub(crate) fn safe_components(raw: &[u8]) -> Result<Vec<OsString>, Failure> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    format!(
                        "entry {:?} escapes the root ('..')",
                        String::from_utf8_lossy(raw)
                    ),
                ))
            }
            _ if c.contains(&0) => {
                return Err(Failure::new(ErrorKind::BadContent, "NUL in entry path"))
            }
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// Resolves `comps` to a directory inside `root`, following symlinks as if `root` were
/// `/` (absolute targets restart at `root`, `..` stops at `root`). Missing directories are
/// created (0755) when `create`; the resolved path is returned. A non-directory in the
/// way is an error.
pub(crate) fn resolve_dir(
    root: &Path,
    comps: &[OsString],
    create: bool,
    created: &mut HashSet<PathBuf>,
) -> Result<PathBuf, Failure> {
    let mut stack: Vec<OsString> = Vec::new();
    let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let mut p = root.to_path_buf();
        p.extend(&stack);
        p.push(&c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => stack.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Failure::new(
                        ErrorKind::BadContent,
                        format!("too many symlinks resolving {}", p.display()),
                    ));
                }
                let target = fs::read_link(&p).map_err(|e| Failure::io("readlink", e))?;
                let t = target.as_os_str().as_bytes();
                if t.starts_with(b"/") {
                    stack.clear();
                }
                for part in t.split(|b| *b == b'/').rev() {
                    queue.push_front(OsStr::from_bytes(part).to_os_string());
                }
            }
            Ok(_) => {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    format!("{} is not a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&p).map_err(|e| Failure::io(format!("mkdir {}", p.display()), e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                    .map_err(|e| Failure::io("chmod", e))?;
                created.insert(p);
                stack.push(c);
            }
            Err(e) => return Err(Failure::io(format!("resolve {}", p.display()), e)),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&stack);
    Ok(p)
}

/// Removes whatever is at `p` (a directory recursively; symlinks are not followed).
pub(crate) fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
