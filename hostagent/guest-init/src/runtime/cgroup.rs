//! cgroup v2: one cgroup for the task, one child per container weighted by its share.
//! Controllers that the hierarchy does not offer are skipped (tests on hosts whose cgroup2
//! mount has none still get membership, hence clean-up of every process).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "io"];

pub struct Cgroups {
    task_dir: PathBuf,
}

/// Maps ECS CPU units to cgroup v2 cpu.weight: 1024 units (one vCPU) = weight 100, the
/// kernel's default; linear, clamped to the kernel's 1..=10000.
pub fn cpu_weight(units: u32) -> u64 {
    (u64::from(units) * 100 / 1024).clamp(1, 10_000)
}

fn enable_controllers(dir: &Path) {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in CONTROLLERS
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == **c))
    {
        // Best effort: a controller can be busy in a parent we do not own.
        let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

fn write_if_present(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    let p = dir.join(file);
    if p.exists() {
        fs::write(&p, value).map_err(|e| {
            io::Error::new(e.kind(), format!("writing {value} to {}: {e}", p.display()))
        })?;
    }
    Ok(())
}

impl Cgroups {
    /// Creates `<root>/<task>` and enables the controllers it can for its children.
    pub fn create(root: &Path, task: &str) -> io::Result<Self> {
        enable_controllers(root);
        let task_dir = root.join(task);
        match fs::create_dir(&task_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", task_dir.display()),
                ))
            }
        }
        enable_controllers(&task_dir);
        Ok(Self { task_dir })
    }

    /// Creates a container's cgroup with its cpu weight and memory limits (MiB).
    pub fn container(
        &self,
        name: &str,
        cpu: u32,
        mem_low: Option<u64>,
        mem_max: Option<u64>,
    ) -> io::Result<PathBuf> {
        let dir = self.task_dir.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", dir.display()),
                ))
            }
        }
        if cpu > 0 {
            write_if_present(&dir, "cpu.weight", &cpu_weight(cpu).to_string())?;
        }
        if let Some(m) = mem_low {
            write_if_present(&dir, "memory.low", &(m << 20).to_string())?;
        }
        if let Some(m) = mem_max {
            write_if_present(&dir, "memory.max", &(m << 20).to_string())?;
        }
        Ok(dir)
    }

    /// Removes a container's cgroup once its processes are gone.
    pub fn remove(&self, name: &str) {
        remove_dir_retry(&self.task_dir.join(name));
    }
}

fn remove_dir_retry(dir: &Path) {
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            // EBUSY while the last processes are being torn down.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.task_dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    remove_dir_retry(&e.path());
                }
            }
        }
        remove_dir_retry(&self.task_dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_units_to_weight() {
        assert_eq!(super::cpu_weight(1024), 100);
        assert_eq!(super::cpu_weight(256), 25);
        assert_eq!(super::cpu_weight(2), 1);
        assert_eq!(super::cpu_weight(u32::MAX), 10_000);
    }
}
