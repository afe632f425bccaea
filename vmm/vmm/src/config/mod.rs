//! Firecracker's API bodies and config-file format, as typed structs.

pub mod devices;

pub use devices::{
    same_id, validate_id, Drive, DriveConfigError, DriveUpdate, Entropy, IdError, NetConfigError,
    NetworkInterface, NetworkInterfaceUpdate, RateLimiter, Vsock,
};
use serde::{Deserialize, Serialize};

/// Most vCPUs a microVM may have.
pub const MAX_VCPUS: u8 = 32;

/// `/machine-config` (GET response and PUT body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Number of vCPUs (1-32).
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    pub mem_size_mib: usize,
    /// Simultaneous multithreading (accepted only as false: one thread per core).
    #[serde(default)]
    pub smt: bool,
    /// Dirty page tracking (accepted, not used).
    #[serde(default)]
    pub track_dirty_pages: bool,
    /// CPU template name (only "None" is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<String>,
    /// Huge pages ("None" only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huge_pages: Option<String>,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            vcpu_count: 1,
            mem_size_mib: 128,
            smt: false,
            track_dirty_pages: false,
            cpu_template: None,
            huge_pages: None,
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
    pub huge_pages: Option<String>,
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
            huge_pages: u.huge_pages.or_else(|| self.huge_pages.clone()),
        }
    }

    /// Checks the values against what this vmm and host support (`host_mem_mib` is the
    /// host's total RAM).
    pub fn validate(&self, host_mem_mib: Option<usize>) -> Result<(), MachineConfigError> {
        if self.vcpu_count == 0 || self.vcpu_count > MAX_VCPUS {
            return Err(MachineConfigError::VcpuCount(self.vcpu_count));
        }
        if self.smt {
            return Err(MachineConfigError::Smt);
        }
        if self.mem_size_mib < 16 {
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
        if let Some(t) = self.cpu_template.as_deref().filter(|t| *t != "None") {
            return Err(MachineConfigError::CpuTemplate(t.to_string()));
        }
        if let Some(h) = self.huge_pages.as_deref().filter(|h| *h != "None") {
            return Err(MachineConfigError::HugePages(h.to_string()));
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
    /// `smt: true`.
    #[error("smt is not supported: every vCPU is one core")]
    Smt,
    /// `mem_size_mib` below 16.
    #[error("mem_size_mib must be at least 16, got {0}")]
    MemTooSmall(usize),
    /// `mem_size_mib` above the host's total RAM.
    #[error("mem_size_mib {mem_size_mib} exceeds the host's memory ({host_mib} MiB)")]
    MemExceedsHost {
        /// Requested guest memory.
        mem_size_mib: usize,
        /// The host's total RAM.
        host_mib: usize,
    },
    /// A CPU template other than "None".
    #[error("cpu_template {0:?} is not supported (only \"None\")")]
    CpuTemplate(String),
    /// Huge pages other than "None".
    #[error("huge_pages {0:?} is not supported (only \"None\")")]
    HugePages(String),
}

/// Total host RAM in MiB from /proc/meminfo.
pub fn host_mem_mib() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `PUT /boot-source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Not JSON, or not the config file's shape (unknown keys included).
    #[error("invalid config file: {0}")]
    Parse(serde_json::Error),
    /// A section Firecracker has that this vmm does not implement yet.
    #[error("config file section \"{0}\" is not supported by this vmm yet")]
    Unsupported(&'static str),
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
                return Err(ConfigFileError::Unsupported(name));
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
        assert!(m.validate(Some(1024)).is_ok());
        m.vcpu_count = 33;
        assert!(m
            .validate(None)
            .unwrap_err()
            .to_string()
            .contains("vcpu_count"));
        m.vcpu_count = 2;
        m.mem_size_mib = 4096;
        assert!(m
            .validate(Some(1024))
            .unwrap_err()
            .to_string()
            .contains("host"));
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
        assert_eq!(
            c.machine_config.unwrap().huge_pages.as_deref(),
            Some("None")
        );
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
    fn actions() {
        let a: InstanceAction = serde_json::from_str(r#"{"action_type":"InstanceStart"}"#).unwrap();
        assert_eq!(a.action_type, ActionType::InstanceStart);
        assert!(serde_json::from_str::<InstanceAction>(r#"{"action_type":"Explode"}"#).is_err());
    }
}
