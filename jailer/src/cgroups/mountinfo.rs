//! Finds the cgroup hierarchies in /proc/self/mountinfo.

use std::path::PathBuf;

use crate::error::{Context, Result, Step};

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub point: PathBuf,
    /// v1: the controllers bound to it (from the super options); v2: empty.
    pub controllers: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (mount point, fs type, super options) of every mount in `text` (mountinfo format).
fn parse(text: &str) -> Vec<(PathBuf, String, String)> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let _source = r.next()?;
            let opts = r.next().unwrap_or("");
            Some((
                PathBuf::from(unescape(point)),
                fstype.to_string(),
                opts.to_string(),
            ))
        })
        .collect()
}

fn read() -> Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo").at(Step::Cgroup, "/proc/self/mountinfo")
}

fn v1_from(text: &str) -> Vec<CgroupMount> {
    parse(text)
        .into_iter()
        .filter(|(_, fstype, _)| fstype == "cgroup")
        .map(|(point, _, opts)| CgroupMount {
            point,
            controllers: opts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

fn v2_from(text: &str) -> Option<CgroupMount> {
    let mounts: Vec<_> = parse(text)
        .into_iter()
        .filter(|(_, fstype, _)| fstype == "cgroup2")
        .collect();
    let pick = mounts
        .iter()
        .find(|(p, _, _)| p == &PathBuf::from("/sys/fs/cgroup"))
        .or_else(|| mounts.first())?;
    Some(CgroupMount {
        point: pick.0.clone(),
        controllers: Vec::new(),
    })
}

/// Every mount point of this process's mount namespace, in mountinfo order.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(parse(&read()?).into_iter().map(|(p, _, _)| p).collect())
}

/// The cgroup v1 hierarchies of this process's mount namespace.
pub fn cgroup_v1_mounts() -> Result<Vec<CgroupMount>> {
    Ok(v1_from(&read()?))
}

/// The cgroup v2 (unified) hierarchy, preferring /sys/fs/cgroup.
pub fn cgroup_v2_mount() -> Result<Option<CgroupMount>> {
    Ok(v2_from(&read()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
35 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
36 25 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 25 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
38 25 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
39 25 0:34 / /mnt/with\\040space rw - ext4 /dev/sda rw
";

    #[test]
    fn finds_hierarchies() {
        let v1 = v1_from(SAMPLE);
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[0].point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(v1[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(v1[1].controllers, vec!["memory"]);
        assert_eq!(v1[2].controllers, vec!["xattr"]);
        let v2 = v2_from(SAMPLE).unwrap();
        assert_eq!(v2.point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(parse(SAMPLE)[4].0, PathBuf::from("/mnt/with space"));
    }
}
