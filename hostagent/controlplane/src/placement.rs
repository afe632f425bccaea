//! Placement: best-fit bin-packing of task CPU/memory onto the hosts of a cell,
//! optionally spreading a service's tasks across availability zones.
//!
//! Hosts that can take tasks sit in one ordered set per AZ, keyed by
//! `(free cpu, free memory, host index)`. Best fit is the first entry at or
//! after `(cpu, memory, 0)` whose memory fits: one range walk per distinct free
//! CPU value (a few dozen at most), so a placement costs O(k log n).

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;
use std::time::Instant;

/// Why a task could not be placed (the ECS `failures[].reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCapacity {
    /// No host has enough free CPU.
    Cpu,
    /// Some host has the CPU, none has the memory with it.
    Memory,
}

impl NoCapacity {
    /// `RESOURCE:CPU` or `RESOURCE:MEMORY`.
    pub fn reason(self) -> &'static str {
        match self {
            NoCapacity::Cpu => "RESOURCE:CPU",
            NoCapacity::Memory => "RESOURCE:MEMORY",
        }
    }
}

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSlot {
    /// Host id.
    pub id: String,
    /// Availability zone.
    pub az: String,
    /// Registered CPU units.
    pub cpu: u32,
    /// Registered memory MiB.
    pub memory: u32,
    /// Free CPU units.
    pub cpu_free: u32,
    /// Free memory MiB.
    pub memory_free: u32,
    /// Whether new tasks may go there (connected, not lost).
    pub schedulable: bool,
}

type Key = (u32, u32, u32);

/// The placement index of one cell.
#[derive(Default)]
pub struct Placement {
    hosts: Vec<HostSlot>,
    by_id: HashMap<String, u32>,
    free: BTreeMap<String, BTreeSet<Key>>,
}

impl Placement {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(h: &HostSlot, i: u32) -> Key {
        (h.cpu_free, h.memory_free, i)
    }

    fn unindex(&mut self, i: u32) {
        let h = &self.hosts[i as usize];
        if h.schedulable {
            if let Some(s) = self.free.get_mut(&h.az) {
                s.remove(&Self::key(h, i));
            }
        }
    }

    fn reindex(&mut self, i: u32) {
        let h = &self.hosts[i as usize];
        if h.schedulable {
            self.free
                .entry(h.az.clone())
                .or_default()
                .insert(Self::key(h, i));
        }
    }

    /// Adds a host (not schedulable until [`Placement::set_schedulable`]).
    /// Re-adding a known id keeps its usage.
    pub fn add_host(&mut self, id: &str, az: &str, cpu: u32, memory: u32) {
        if self.by_id.contains_key(id) {
            return;
        }
        let i = self.hosts.len() as u32;
        self.hosts.push(HostSlot {
            id: id.to_string(),
            az: az.to_string(),
            cpu,
            memory,
            cpu_free: cpu,
            memory_free: memory,
            schedulable: false,
        });
        self.by_id.insert(id.to_string(), i);
    }

    /// Marks a host able (or not) to take new tasks.
    pub fn set_schedulable(&mut self, id: &str, on: bool) {
        if let Some(&i) = self.by_id.get(id) {
            self.unindex(i);
            self.hosts[i as usize].schedulable = on;
            self.reindex(i);
        }
    }

    /// A host's slot.
    pub fn host(&self, id: &str) -> Option<&HostSlot> {
        self.by_id.get(id).map(|&i| &self.hosts[i as usize])
    }

    /// All hosts.
    pub fn hosts(&self) -> &[HostSlot] {
        &self.hosts
    }

    /// Records `cpu`/`memory` as used on `id` (a task placed or recovered).
    pub fn reserve(&mut self, id: &str, cpu: u32, memory: u32) {
        if let Some(&i) = self.by_id.get(id) {
            self.unindex(i);
            let h = &mut self.hosts[i as usize];
            h.cpu_free = h.cpu_free.saturating_sub(cpu);
            h.memory_free = h.memory_free.saturating_sub(memory);
            self.reindex(i);
        }
    }

    /// Gives back what a stopped task used.
    pub fn release(&mut self, id: &str, cpu: u32, memory: u32) {
        if let Some(&i) = self.by_id.get(id) {
            self.unindex(i);
            let h = &mut self.hosts[i as usize];
            h.cpu_free = (h.cpu_free + cpu).min(h.cpu);
            h.memory_free = (h.memory_free + memory).min(h.memory);
            self.reindex(i);
        }
    }

    fn best_in(set: &BTreeSet<Key>, cpu: u32, memory: u32) -> Result<Key, NoCapacity> {
        let mut start = (cpu, memory, 0);
        let cpu_fits = set.range((cpu, 0, 0)..).next().is_some();
        // `start` strictly increases, so this ends after at most one step per
        // distinct free-CPU value.
        while let Some(&k) = set.range(start..).next() {
            if k.1 >= memory {
                return Ok(k);
            }
            start = (k.0, memory, 0);
        }
        Err(if cpu_fits {
            NoCapacity::Memory
        } else {
            NoCapacity::Cpu
        })
    }

    /// Picks a host for a task of `cpu`/`memory` and reserves it there.
    /// With `spread` (tasks per AZ of the service), the AZ with the fewest of
    /// them that has room wins; otherwise the tightest fit over all AZs.
    pub fn place(
        &mut self,
        cpu: u32,
        memory: u32,
        spread: Option<&HashMap<String, usize>>,
    ) -> Result<String, NoCapacity> {
        let mut err = NoCapacity::Cpu;
        let mut best: Option<(usize, Key)> = None;
        for (az, set) in &self.free {
            match Self::best_in(set, cpu, memory) {
                Ok(k) => {
                    let rank = spread.map(|s| s.get(az).copied().unwrap_or(0)).unwrap_or(0);
                    if best.is_none_or(|(r, bk)| (rank, k) < (r, bk)) {
                        best = Some((rank, k));
                    }
                }
                Err(NoCapacity::Memory) => err = NoCapacity::Memory,
                Err(NoCapacity::Cpu) => {}
            }
        }
        let (_, k) = best.ok_or(err)?;
        let id = self.hosts[k.2 as usize].id.clone();
        self.reserve(&id, cpu, memory);
        Ok(id)
    }
}

/// An exponential latency histogram: 100 µs to ~3.3 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Seconds spent choosing a host for a task (all cells), shown by `GET /metrics`.
pub static PLACEMENT_SECONDS: LazyLock<Histogram> = LazyLock::new(latency_histogram);

/// Records how long one placement took.
pub fn observe(started: Instant) {
    PLACEMENT_SECONDS.observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(hosts: &[(&str, &str, u32, u32)]) -> Placement {
        let mut p = Placement::new();
        for (id, az, c, m) in hosts {
            p.add_host(id, az, *c, *m);
            p.set_schedulable(id, true);
        }
        p
    }

    #[test]
    fn best_fit_packs_tightest_host() {
        let mut p = cell(&[("a", "z1", 4096, 8192), ("b", "z1", 2048, 4096)]);
        assert_eq!(p.place(1024, 2048, None).unwrap(), "b");
        assert_eq!(p.place(1024, 2048, None).unwrap(), "b");
        assert_eq!(p.place(1024, 2048, None).unwrap(), "a");
        assert_eq!(p.host("b").unwrap().cpu_free, 0);
        p.release("b", 1024, 2048);
        assert_eq!(p.place(1024, 2048, None).unwrap(), "b");
    }

    #[test]
    fn memory_vs_cpu_failures() {
        let mut p = cell(&[("a", "z1", 4096, 2048)]);
        assert_eq!(p.place(8192, 1024, None), Err(NoCapacity::Cpu));
        assert_eq!(p.place(1024, 4096, None), Err(NoCapacity::Memory));
        // CPU fits only in the group whose memory is short.
        let mut p = cell(&[("a", "z1", 1024, 1024)]);
        assert_eq!(p.place(1024, 2048, None), Err(NoCapacity::Memory));
        // A host with more free CPU but little memory is skipped for one that fits.
        let mut p = cell(&[("a", "z1", 4096, 512), ("b", "z1", 1024, 4096)]);
        assert_eq!(p.place(512, 1024, None).unwrap(), "b");
        let mut p = cell(&[("a", "z1", 2048, 512), ("b", "z1", 4096, 4096)]);
        assert_eq!(p.place(512, 1024, None).unwrap(), "b");
    }

    #[test]
    fn unschedulable_hosts_get_nothing() {
        let mut p = cell(&[("a", "z1", 4096, 8192)]);
        p.set_schedulable("a", false);
        assert_eq!(p.place(256, 512, None), Err(NoCapacity::Cpu));
    }

    #[test]
    fn spread_prefers_emptiest_az() {
        let mut p = cell(&[("a", "z1", 4096, 8192), ("b", "z2", 4096, 8192)]);
        let mut counts = HashMap::new();
        for _ in 0..4 {
            let h = p.place(256, 512, Some(&counts)).unwrap();
            let az = p.host(&h).unwrap().az.clone();
            *counts.entry(az).or_insert(0) += 1;
        }
        assert_eq!(counts.get("z1"), Some(&2));
        assert_eq!(counts.get("z2"), Some(&2));
    }
}
