//! Firecracker's API bodies and config-file format, as typed structs.

pub mod devices;

use crate::unsupported::NotSupported;
pub use devices::{
    same_id, validate_id, Drive, DriveConfigError, DriveUpdate, Entropy, IdError, IoEngine,
    NetConfigError, NetworkInterface, NetworkInterfaceUpdate, RateLimiter, Vsock,
};
use serde::{Deserialize, Serialize};

/// Most vCPUs a microVM may have.
pub const MAX_VCPUS: u8 = 32;

/// Guest memory backing (`huge_pages` in `/machine-config`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HugePages {
    /// Normal pages.
    #[default]
    None,
    /// 2 MiB huge pages from the host's hugetlbfs pool.
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

/// Smallest guest this vmm boots (checked at InstanceStart, as Firecracker checks sizes).
pub const MIN_MEM_MIB: usize = 16;

/// `/machine-config` (GET response and PUT body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Number of vCPUs (1-32).
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    pub mem_size_mib: usize,
    /// Simultaneous multithreading: two threads per core in the guest's CPU topology
    /// (`vcpu_count` must then be 1 or even).
    #[serde(default)]
    pub smt: bool,
    /// Dirty page tracking (accepted, not used).
    #[serde(default)]
    pub track_dirty_pages: bool,
    /// CPU template name (only "None" is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<String>,
    /// Guest memory backing: "None" or "2M".
    #[serde(default)]
    pub huge_pages: HugePages,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            vcpu_count: 1,
            mem_size_mib: 128,
            smt: false,
            track_dirty_pages: false,
            cpu_template: None,
            huge_pages: HugePages::None,
        }
    }
}

/// `PATCH /machine-config`: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigUpdate {
    /// vCPUs.
    pub vcpu_count: Option<u8>,
    /// MiB.
    pub mem_size_mib: Option<usize>,
    /// SMT.
    pub smt: Option<bool>,
    /// Dirty tracking.
    pub track_dirty_pages: Option<bool>,
    /// CPU template.
    pub cpu_template: Option<String>,
    /// Huge pages.
    pub huge_pages: Option<HugePages>,
}

impl MachineConfigUpdate {
    /// True when no field is set (`{}`), which Firecracker refuses.
    pub fn is_empty(&self) -> bool {
        self.vcpu_count.is_none()
            && self.mem_size_mib.is_none()
            && self.smt.is_none()
            && self.track_dirty_pages.is_none()
            && self.cpu_template.is_none()
            && self.huge_pages.is_none()
    }
}

impl MachineConfig {
    /// Applies a PATCH.
    pub fn update(&self, u: MachineConfigUpdate) -> MachineConfig {
        MachineConfig {
            vcpu_count: u.vcpu_count.unwrap_or(self.vcpu_count),
            mem_size_mib: u.mem_size_mib.unwrap_or(self.mem_size_mib),
            smt: u.smt.unwrap_or(self.smt),
            track_dirty_pages: u.track_dirty_pages.unwrap_or(self.track_dirty_pages),
            cpu_template: u.cpu_template.or_else(|| self.cpu_template.clone()),
            huge_pages: u.huge_pages.unwrap_or(self.huge_pages),
        }
    }

    /// The checks Firecracker makes when the configuration is set (`PUT`/`PATCH`): vCPU
    /// count (1 or even with SMT), a non-zero memory size that is a whole number of pages,
    /// a CPU template this vmm has. Sizes the host or the boot cannot honour are refused
    /// later, by [`MachineConfig::validate_for_start`].
    pub fn validate(&self) -> Result<(), MachineConfigError> {
        if self.vcpu_count == 0 || self.vcpu_count > MAX_VCPUS {
            return Err(MachineConfigError::VcpuCount(self.vcpu_count));
        }
        if self.smt && self.vcpu_count > 1 && self.vcpu_count % 2 == 1 {
            return Err(MachineConfigError::SmtOddVcpus(self.vcpu_count));
        }
        let page_mib = match self.huge_pages {
            HugePages::None => 1,
            HugePages::Hugetlbfs2M => 2,
        };
        if self.mem_size_mib == 0 || self.mem_size_mib % page_mib != 0 {
            return Err(MachineConfigError::MemSize(self.mem_size_mib));
        }
        if let Some(t) = self.cpu_template.as_deref().filter(|t| *t != "None") {
            return Err(MachineConfigError::CpuTemplate(NotSupported::new(format!(
                "cpu_template {t:?}"
            ))));
        }
        Ok(())
    }

    /// The checks made at InstanceStart: at least [`MIN_MEM_MIB`] and at most the host's
    /// total RAM (`host_mem_mib`).
    pub fn validate_for_start(
        &self,
        host_mem_mib: Option<usize>,
    ) -> Result<(), MachineConfigError> {
        if self.mem_size_mib < MIN_MEM_MIB {
            return Err(MachineConfigError::MemTooSmall(self.mem_size_mib));
        }
        if let Some(host) = host_mem_mib {
            if self.mem_size_mib > host {
                return Err(MachineConfigError::MemExceedsHost {
                    mem_size_mib: self.mem_size_mib,
                    host_mib: host,
                });
            }
        }
        Ok(())
    }
}

/// A `/machine-config` this vmm or host cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MachineConfigError {
    /// `vcpu_count` outside 1..=[`MAX_VCPUS`].
    #[error("vcpu_count must be between 1 and {MAX_VCPUS}, got {0}")]
    VcpuCount(u8),
    /// `smt: true` with an odd vCPU count above 1.
    #[error("with smt, vcpu_count must be 1 or even, got {0}")]
    SmtOddVcpus(u8),
    /// `mem_size_mib` zero, or not a whole number of (huge) pages.
    #[error("mem_size_mib {0} is invalid: it must be above 0 and a multiple of the page size (2 MiB with huge_pages \"2M\")")]
    MemSize(usize),
    /// `mem_size_mib` below [`MIN_MEM_MIB`] (at InstanceStart).
    #[error("mem_size_mib must be at least {MIN_MEM_MIB}, got {0}")]
    MemTooSmall(usize),
    /// `mem_size_mib` above the host's total RAM (at InstanceStart).
    #[error("mem_size_mib {mem_size_mib} exceeds the host's memory ({host_mib} MiB)")]
    MemExceedsHost {
        /// Requested guest memory.
        mem_size_mib: usize,
        /// The host's total RAM.
        host_mib: usize,
    },
    /// A CPU template other than "None".
    #[error(transparent)]
    CpuTemplate(NotSupported),
}

/// Total host RAM in MiB from /proc/meminfo.
pub fn host_mem_mib() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `PUT /boot-source` (the default, with an empty kernel path, is what `GET /vm/config`
/// shows before one is set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    /// Kernel image: ELF vmlinux or bzImage.
    pub kernel_image_path: String,
    /// Kernel command line.
    #[serde(default)]
    pub boot_args: Option<String>,
    /// Initrd image.
    #[serde(default)]
    pub initrd_path: Option<String>,
}

/// Command line used when `boot_args` is absent.
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off";

/// `PUT /logger`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    /// File or named pipe for logs.
    pub log_path: Option<String>,
    /// Error, Warning, Info, Debug, Trace, Off.
    pub level: Option<String>,
    /// Accepted for compatibility.
    pub show_level: Option<bool>,
    /// Accepted for compatibility.
    pub show_log_origin: Option<bool>,
    /// Accepted for compatibility (module filter).
    pub module: Option<String>,
}

/// `PUT /metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// File or named pipe for metrics lines.
    pub metrics_path: String,
}

/// `PUT /serial`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// File or named pipe for the guest console (instead of stdout).
    pub serial_out_path: String,
}

/// `PUT /actions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceAction {
    /// The action.
    pub action_type: ActionType,
}

/// Actions.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub enum ActionType {
    /// Boot the microVM.
    InstanceStart,
    /// Press Ctrl+Alt+Del on the guest's keyboard.
    SendCtrlAltDel,
    /// Write a metrics line now.
    FlushMetrics,
}

/// Firecracker's config file (`--config-file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfigFile {
    /// Kernel, initrd, command line.
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    /// vCPUs and memory.
    #[serde(rename = "machine-config", default)]
    pub machine_config: Option<MachineConfig>,
    /// Block devices.
    #[serde(default)]
    pub drives: Vec<Drive>,
    /// Network interfaces.
    #[serde(rename = "network-interfaces", default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// vsock device.
    #[serde(default)]
    pub vsock: Option<Vsock>,
    /// Entropy device.
    #[serde(default)]
    pub entropy: Option<Entropy>,
    /// Logger.
    #[serde(default)]
    pub logger: Option<LoggerConfig>,
    /// Metrics.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Balloon (not supported).
    #[serde(default)]
    pub balloon: Option<serde_json::Value>,
    /// MMDS (not supported).
    #[serde(rename = "mmds-config", default)]
    pub mmds_config: Option<serde_json::Value>,
    /// CPU templates (not supported).
    #[serde(rename = "cpu-config", default)]
    pub cpu_config: Option<serde_json::Value>,
}

/// `GET /vm/config`: the whole configuration in the config file's shape. The sections this
/// vmm does not serve, and the logger and metrics (as in Firecracker), are always null.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FullVmConfig {
    /// Always null.
    pub balloon: Option<()>,
    /// Block devices, in `PUT` order.
    pub drives: Vec<Drive>,
    /// Kernel, initrd, command line.
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    /// Always null.
    #[serde(rename = "cpu-config")]
    pub cpu_config: Option<()>,
    /// Always null.
    pub logger: Option<()>,
    /// vCPUs and memory.
    #[serde(rename = "machine-config")]
    pub machine_config: MachineConfig,
    /// Always null.
    pub metrics: Option<()>,
    /// Always null.
    #[serde(rename = "mmds-config")]
    pub mmds_config: Option<()>,
    /// Network interfaces, in `PUT` order.
    #[serde(rename = "network-interfaces")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// vsock device.
    pub vsock: Option<Vsock>,
    /// Entropy device.
    pub entropy: Option<Entropy>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Not JSON, or not the config file's shape (unknown keys included).
    #[error("invalid config file: {0}")]
    Parse(serde_json::Error),
    /// A section Firecracker has that this vmm does not implement yet.
    #[error(transparent)]
    Unsupported(NotSupported),
}

impl VmConfigFile {
    /// Parses the file's JSON and rejects sections this vmm does not implement yet.
    pub fn parse(text: &str) -> Result<Self, ConfigFileError> {
        let c: VmConfigFile = serde_json::from_str(text).map_err(ConfigFileError::Parse)?;
        let unsupported = [
            ("balloon", c.balloon.is_some()),
            ("mmds-config", c.mmds_config.is_some()),
            ("cpu-config", c.cpu_config.is_some()),
        ];
        for (name, present) in unsupported {
            if present {
                return Err(ConfigFileError::Unsupported(NotSupported::new(format!(
                    "config file section {name:?}"
                ))));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_config_validation() {
        let mut m = MachineConfig::default();
        assert!(m.validate().is_ok() && m.validate_for_start(Some(1024)).is_ok());
        m.vcpu_count = 33;
        assert!(m.validate().unwrap_err().to_string().contains("vcpu_count"));
        m.vcpu_count = 2;
        m.mem_size_mib = 4096;
        // Sizes are checked at InstanceStart, as Firecracker does.
        assert!(m.validate().is_ok());
        assert!(m
            .validate_for_start(Some(1024))
            .unwrap_err()
            .to_string()
            .contains("host"));
        m.mem_size_mib = 1;
        assert!(m.validate().is_ok());
        assert_eq!(
            m.validate_for_start(None),
            Err(MachineConfigError::MemTooSmall(1))
        );
        m.mem_size_mib = 0;
        assert_eq!(m.validate(), Err(MachineConfigError::MemSize(0)));
        let p = m.update(MachineConfigUpdate {
            mem_size_mib: Some(256),
            ..Default::default()
        });
        assert_eq!((p.vcpu_count, p.mem_size_mib), (2, 256));
        assert!(serde_json::from_str::<MachineConfig>(r#"{"vcpu_count":1}"#).is_err());
        assert!(serde_json::from_str::<MachineConfig>(
            r#"{"vcpu_count":1,"mem_size_mib":8,"x":1}"#
        )
        .is_err());
    }

    #[test]
    fn smt_and_huge_pages() {
        let m: MachineConfig = serde_json::from_str(
            r#"{"vcpu_count":2,"mem_size_mib":256,"smt":true,"huge_pages":"2M"}"#,
        )
        .unwrap();
        assert_eq!((m.smt, m.huge_pages), (true, HugePages::Hugetlbfs2M));
        assert!(m.validate().is_ok());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["huge_pages"], "2M");
        assert_eq!(
            serde_json::to_value(MachineConfig::default()).unwrap()["huge_pages"],
            "None"
        );
        let odd = m.update(MachineConfigUpdate {
            vcpu_count: Some(3),
            ..Default::default()
        });
        assert_eq!(odd.validate(), Err(MachineConfigError::SmtOddVcpus(3)));
        let odd_mib = m.update(MachineConfigUpdate {
            mem_size_mib: Some(129),
            ..Default::default()
        });
        assert_eq!(odd_mib.validate(), Err(MachineConfigError::MemSize(129)));
        assert!(serde_json::from_str::<MachineConfig>(
            r#"{"vcpu_count":1,"mem_size_mib":8,"huge_pages":"1G"}"#
        )
        .is_err());
        let t = MachineConfig {
            cpu_template: Some("T2".into()),
            ..Default::default()
        };
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "cpu_template \"T2\" is not supported by this vmm"
        );
        assert!(MachineConfigUpdate::default().is_empty());
    }

    #[test]
    fn config_file_firecracker_example() {
        let text = r#"{
          "boot-source": {"kernel_image_path": "vmlinux.bin",
                          "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
                          "initrd_path": null},
          "drives": [],
          "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false,
                             "track_dirty_pages": false}
        }"#;
        let c = VmConfigFile::parse(text).unwrap();
        assert_eq!(c.machine_config.unwrap().vcpu_count, 2);
        assert_eq!(c.boot_source.kernel_image_path, "vmlinux.bin");
    }

    /// The full shape of Firecracker's documented example (every section, nulls included).
    const FIRECRACKER_FULL: &str = r#"{
      "boot-source": {"kernel_image_path": "vmlinux.bin",
                      "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
                      "initrd_path": null},
      "drives": DRIVES,
      "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false,
                         "track_dirty_pages": false, "huge_pages": "None"},
      "cpu-config": null, "balloon": null, "network-interfaces": [], "vsock": null,
      "logger": {"log_path": "fc.log", "level": "Info", "show_level": true,
                 "show_log_origin": false},
      "metrics": null, "mmds-config": null, "entropy": null
    }"#;

    #[test]
    fn firecracker_full_example_with_and_without_drives() {
        let c = VmConfigFile::parse(&FIRECRACKER_FULL.replace("DRIVES", "[]")).unwrap();
        assert_eq!(c.machine_config.unwrap().huge_pages, HugePages::None);
        assert_eq!(c.logger.unwrap().level.as_deref(), Some("Info"));
        let drives = r#"[{"drive_id": "rootfs", "path_on_host": "bionic.rootfs.ext4",
            "is_root_device": true, "partuuid": null, "is_read_only": false,
            "cache_type": "Unsafe", "io_engine": "Sync", "rate_limiter": null}]"#;
        let c = VmConfigFile::parse(&FIRECRACKER_FULL.replace("DRIVES", drives)).unwrap();
        assert_eq!(c.drives.len(), 1);
        assert!(c.drives[0].is_root_device);
    }

    #[test]
    fn config_file_unsupported_and_unknown_sections() {
        let devices = r#"{"boot-source": {"kernel_image_path": "k"},
          "drives": [{"drive_id": "rootfs", "path_on_host": "r.ext4",
                      "is_root_device": true, "is_read_only": false}],
          "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                  "guest_mac": "06:00:ac:10:00:02"}],
          "vsock": {"vsock_id": "vsock0", "guest_cid": 3, "uds_path": "/tmp/v.sock"},
          "entropy": {"rate_limiter": null}}"#;
        let c = VmConfigFile::parse(devices).unwrap();
        assert_eq!(c.network_interfaces[0].host_dev_name, "tap0");
        assert_eq!(c.vsock.unwrap().guest_cid, 3);
        assert!(c.entropy.is_some());
        let balloon = r#"{"boot-source": {"kernel_image_path": "k"},
          "balloon": {"amount_mib": 1, "deflate_on_oom": false}}"#;
        assert!(VmConfigFile::parse(balloon)
            .unwrap_err()
            .to_string()
            .contains("balloon"));
        let unknown = r#"{"boot-source": {"kernel_image_path": "k"}, "gpu": {}}"#;
        assert!(VmConfigFile::parse(unknown)
            .unwrap_err()
            .to_string()
            .contains("gpu"));
    }

    #[test]
    fn full_config_reads_back_as_a_config_file() {
        let mut c = FullVmConfig {
            boot_source: BootSource {
                kernel_image_path: "k".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        c.machine_config.huge_pages = HugePages::Hugetlbfs2M;
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains(r#""mmds-config":null"#), "{text}");
        let back = VmConfigFile::parse(&text).unwrap();
        assert_eq!(back.machine_config, Some(c.machine_config));
        assert_eq!(back.boot_source.kernel_image_path, "k");
    }

    #[test]
    fn actions() {
        let a: InstanceAction = serde_json::from_str(r#"{"action_type":"InstanceStart"}"#).unwrap();
        assert_eq!(a.action_type, ActionType::InstanceStart);
        assert!(serde_json::from_str::<InstanceAction>(r#"{"action_type":"Explode"}"#).is_err());
    }
}
