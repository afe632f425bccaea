//! CPU and memory use of a task's microVM, read from the jail's cgroup (the jailer puts
//! the vmm in `<hierarchy>/<parent>/<id>`), as percentages of the task's size.

use jailer::CgroupVersion;
use std::path::PathBuf;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// CPU time used so far, ns.
    pub cpu_ns: u64,
    /// Memory in use now, bytes.
    pub memory_bytes: u64,
}

/// Where a task's cgroup files are.
#[derive(Debug, Clone)]
pub struct CgroupFiles {
    cpu: PathBuf,
    memory: PathBuf,
    version: CgroupVersion,
}

fn v1_dir(controller: &str, rel: &str) -> Option<PathBuf> {
    let mounts = jailer::cgroups::cgroup_v1_mounts().ok()?;
    let m = mounts
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == controller))?;
    Some(m.point.join(rel))
}

impl CgroupFiles {
    /// The files of the jail `id` under `parent`, if the hierarchies are mounted.
    pub fn find(version: CgroupVersion, parent: &str, id: &str) -> Option<CgroupFiles> {
        let rel = format!("{parent}/{id}");
        match version {
            CgroupVersion::V1 => Some(CgroupFiles {
                cpu: v1_dir("cpuacct", &rel)?.join("cpuacct.usage"),
                memory: v1_dir("memory", &rel)?.join("memory.usage_in_bytes"),
                version,
            }),
            CgroupVersion::V2 => {
                let dir = jailer::cgroups::cgroup_v2_mount().ok()??.point.join(rel);
                Some(CgroupFiles {
                    cpu: dir.join("cpu.stat"),
                    memory: dir.join("memory.current"),
                    version,
                })
            }
        }
    }

    /// Reads both values.
    pub fn read(&self) -> Option<Sample> {
        let cpu = std::fs::read_to_string(&self.cpu).ok()?;
        let cpu_ns = match self.version {
            CgroupVersion::V1 => cpu.trim().parse().ok()?,
            CgroupVersion::V2 => parse_usage_usec(&cpu)?.saturating_mul(1000),
        };
        let memory_bytes = std::fs::read_to_string(&self.memory)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Sample {
            cpu_ns,
            memory_bytes,
        })
    }
}

/// `usage_usec` of a cgroup2 `cpu.stat`.
pub fn parse_usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// (CPU %, memory %) between two samples `wall_ns` apart, of a task with `cpu_units`
/// (1024 = one vCPU = 100 % of one core) and `memory_mib`.
pub fn utilization(
    prev: Sample,
    now: Sample,
    wall_ns: u64,
    cpu_units: u32,
    memory_mib: u32,
) -> (f64, f64) {
    let share = f64::from(cpu_units.max(1)) / 1024.0;
    let cpu = if wall_ns == 0 {
        0.0
    } else {
        now.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / (wall_ns as f64 * share) * 100.0
    };
    let mem = now.memory_bytes as f64 / (f64::from(memory_mib.max(1)) * 1048576.0) * 100.0;
    (cpu.clamp(0.0, 100.0), mem.clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_of_the_task_size() {
        let a = Sample {
            cpu_ns: 1_000_000_000,
            memory_bytes: 0,
        };
        let b = Sample {
            cpu_ns: 1_250_000_000,
            memory_bytes: 256 << 20,
        };
        // 0.25 s of CPU in 1 s with a quarter vCPU: all of it.
        let (c, m) = utilization(a, b, 1_000_000_000, 256, 512);
        assert!((c - 100.0).abs() < 1e-9, "{c}");
        assert!((m - 50.0).abs() < 1e-9, "{m}");
        let (c, _) = utilization(a, b, 1_000_000_000, 1024, 512);
        assert!((c - 25.0).abs() < 1e-9, "{c}");
        assert_eq!(utilization(b, a, 0, 1024, 512).0, 0.0);
        assert_eq!(parse_usage_usec("usage_usec 42\nuser_usec 1\n"), Some(42));
        assert_eq!(parse_usage_usec("nothing"), None);
    }

    #[test]
    fn reads_this_process_cgroup_when_v1_is_mounted() {
        // The root cgroup of the cpuacct/memory hierarchies always has both files on v1.
        let Some(f) = CgroupFiles::find(CgroupVersion::V1, ".", ".") else {
            eprintln!("SKIPPED: no cgroup v1 cpuacct/memory hierarchy");
            return;
        };
        if !f.cpu.exists() {
            eprintln!("SKIPPED: {} missing", f.cpu.display());
            return;
        }
        let s = f.read().expect("readable");
        assert!(s.cpu_ns > 0);
    }
}
