//! CPUID for each vCPU, derived from KVM's supported set: APIC IDs, topology (one thread per
//! core, or two with `smt`; all vCPUs in one socket), the hypervisor bit, the vCPU count and the TSC-deadline
//! timer.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const HYPERVISOR_BIT: u32 = 1 << 31;
const HTT_BIT: u32 = 1 << 28;
/// CPUID.01H:ECX[24]. KVM emulates the LAPIC's TSC-deadline mode but leaves this bit out of
/// its supported set (it depends on the in-kernel LAPIC, which only the VMM knows it made).
/// Without it, Linux calibrates the LAPIC timer against the PIT at boot: 100 ms lost on
/// every boot, and where the calibration fails (timing under emulation) the LAPIC timer is
/// disabled and the guest's timers stop firing once the PIT is idle.
const TSC_DEADLINE_BIT: u32 = 1 << 24;

/// What the VM offers beyond KVM's supported CPUID set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// The in-kernel LAPIC emulates TSC-deadline mode (`KVM_CAP_TSC_DEADLINE_TIMER`).
    pub tsc_deadline: bool,
    /// Two hardware threads per core (`smt: true` in `/machine-config`).
    pub smt: bool,
}

/// Number of bits needed to number `n` items (ceil(log2(n))).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, cpu: u32, count: u32, features: Features) {
    let threads = if features.smt && count > 1 { 2 } else { 1 };
    match e.function {
        0x1 => {
            // EBX[31:24] initial APIC ID, [23:16] logical processors, [15:8] CLFLUSH size/8.
            e.ebx = (cpu << 24) | ((count & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff);
            e.ecx |= HYPERVISOR_BIT;
            if features.tsc_deadline {
                e.ecx |= TSC_DEADLINE_BIT;
            }
            if count > 1 {
                e.edx |= HTT_BIT;
            } else {
                e.edx &= !HTT_BIT;
            }
        }
        0x4 => {
            // Deterministic cache parameters: EAX[31:26] cores per package - 1,
            // EAX[25:14] logical processors sharing this cache - 1 (L3 is shared by all,
            // L1 and L2 by the threads of one core).
            let level = (e.eax >> 5) & 0x7;
            let sharing = if level >= 3 { count - 1 } else { threads - 1 };
            let cores = (count / threads).max(1);
            e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((cores - 1) & 0x3f) << 26);
        }
        0xb | 0x1f => {
            // Extended topology: level 0 = SMT (threads per core), level 1 = core (all
            // vCPUs).
            e.edx = cpu;
            match e.index {
                0 => {
                    e.eax = bits_for(threads);
                    e.ebx = threads;
                    e.ecx = (1 << 8) | e.index;
                }
                1 => {
                    e.eax = bits_for(count);
                    e.ebx = count;
                    e.ecx = (2 << 8) | e.index;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        0x8000_0008 => {
            // AMD: ECX[15:12] APIC ID size, ECX[7:0] number of cores - 1.
            e.ecx = (e.ecx & !0xf0ff) | (bits_for(count) << 12) | ((count - 1) & 0xff);
        }
        _ => {}
    }
}

/// The CPUID table for vCPU `cpu` (its APIC ID) of `count` vCPUs.
pub fn vcpu_cpuid(supported: &CpuId, cpu: u8, count: u8, features: Features) -> CpuId {
    let mut cpuid = supported.clone();
    let count = u32::from(count.max(1));
    for e in cpuid.as_mut_slice() {
        patch_entry(e, u32::from(cpu), count, features);
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .unwrap()
    }

    #[test]
    fn apic_id_count_and_hypervisor_bit() {
        let sup = CpuId::from_entries(&[entry(1, 0), entry(0xb, 0), entry(0xb, 1)]).unwrap();
        let c = vcpu_cpuid(&sup, 5, 8, Features::default());
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 5);
        assert_eq!((l1.ebx >> 16) & 0xff, 8);
        assert_ne!(l1.ecx & HYPERVISOR_BIT, 0);
        assert_ne!(l1.edx & HTT_BIT, 0);
        let smt = find(&c, 0xb, 0);
        assert_eq!((smt.ebx, smt.edx), (1, 5));
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.edx), (3, 8, 5));
    }

    #[test]
    fn smt_reports_two_threads_per_core() {
        let mut l4 = entry(4, 0);
        l4.eax = 1 << 5; // L1 cache
        let sup = CpuId::from_entries(&[entry(0xb, 0), entry(0xb, 1), l4]).unwrap();
        let smt = Features {
            smt: true,
            ..Default::default()
        };
        let c = vcpu_cpuid(&sup, 3, 4, smt);
        let t = find(&c, 0xb, 0);
        assert_eq!((t.eax, t.ebx, t.edx), (1, 2, 3));
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx), (2, 4));
        let cache = find(&c, 4, 0).eax;
        assert_eq!(((cache >> 14) & 0xfff, cache >> 26), (1, 1));
        let off = vcpu_cpuid(&sup, 3, 4, Features::default());
        assert_eq!(find(&off, 0xb, 0).ebx, 1);
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut e = entry(1, 0);
        e.edx = HTT_BIT;
        let c = vcpu_cpuid(
            &CpuId::from_entries(&[e]).unwrap(),
            0,
            1,
            Features::default(),
        );
        assert_eq!(find(&c, 1, 0).edx & HTT_BIT, 0);
    }

    #[test]
    fn tsc_deadline_only_when_the_lapic_emulates_it() {
        let sup = CpuId::from_entries(&[entry(1, 0)]).unwrap();
        let off = vcpu_cpuid(&sup, 0, 1, Features::default());
        assert_eq!(find(&off, 1, 0).ecx & TSC_DEADLINE_BIT, 0);
        let on = vcpu_cpuid(
            &sup,
            0,
            1,
            Features {
                tsc_deadline: true,
                ..Default::default()
            },
        );
        assert_ne!(find(&on, 1, 0).ecx & TSC_DEADLINE_BIT, 0);
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!([1, 2, 3, 4, 5, 32].map(bits_for), [0, 1, 2, 2, 3, 5]);
    }
}
