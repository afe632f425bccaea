//! The microVM's state machine (configured -> running) and the handlers behind every API
//! request and the config file.

use crate::boot::BootSpec;
use crate::builder::{self, BuildError, RunningVm, VmSpec};
use crate::config::{
    host_mem_mib, ActionType, BootSource, FullVmConfig, HugePages, LoggerConfig, MachineConfig,
    MachineConfigError, MachineConfigUpdate, MetricsConfig, VmConfigFile, DEFAULT_BOOT_ARGS,
};
use crate::config::{Drive, DriveUpdate, Entropy, NetworkInterface, NetworkInterfaceUpdate, Vsock};
use crate::device_manager::Subscriber;
use crate::legacy::serial::SerialOut;
use crate::logger::LoggerError;
use crate::metrics::{MetricsError, METRICS};
use crate::seccomp::SeccompError;
use crate::sync::lock;
use crate::virtio::{VirtioDevices, VirtioError};
use crate::vstate::exit::ExitNotifier;
use crate::vstate::memory::Backing;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why a request (API or config file) was refused. It stays typed up to the API module,
/// which answers it as 400 `{"fault_message": "<Display>"}`; in config-file mode the
/// message goes to stderr and the log.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A configuration request after InstanceStart (the operation is named).
    #[error("{0} is not allowed after the microVM started")]
    AfterStart(&'static str),
    /// A live update before InstanceStart (the operation is named).
    #[error("{0} is only allowed on a running microVM (use PUT before InstanceStart)")]
    NotRunning(&'static str),
    /// `/machine-config` values this vmm or host cannot run.
    #[error(transparent)]
    MachineConfig(#[from] MachineConfigError),
    /// `kernel_image_path` cannot be opened.
    #[error("cannot open kernel image {path}: {source}")]
    KernelImage {
        /// The path as given.
        path: String,
        /// The open error.
        source: std::io::Error,
    },
    /// `initrd_path` cannot be opened.
    #[error("cannot open initrd {path}: {source}")]
    Initrd {
        /// The path as given.
        path: String,
        /// The open error.
        source: std::io::Error,
    },
    /// `serial_out_path` is empty.
    #[error("serial_out_path must not be empty")]
    EmptySerialPath,
    /// The serial output file or pipe cannot be opened (at InstanceStart).
    #[error("cannot open serial output {}: {source}", path.display())]
    SerialOutput {
        /// The file or named pipe.
        path: PathBuf,
        /// The open error.
        source: std::io::Error,
    },
    /// `/logger`: bad level or log file.
    #[error(transparent)]
    Logger(#[from] LoggerError),
    /// `/metrics`: already configured or bad file.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `FlushMetrics` without a metrics file.
    #[error("metrics are not configured")]
    MetricsNotConfigured,
    /// An action Firecracker refuses before boot (`FlushMetrics`, `SendCtrlAltDel`).
    #[error("{0} is not supported before the microVM starts (InstanceStart first)")]
    BeforeStart(&'static str),
    /// InstanceStart without `/boot-source`.
    #[error("cannot start: no boot source configured (PUT /boot-source)")]
    NoBootSource,
    /// Building or starting the VM failed (memory, KVM, devices, kernel loading, vCPUs).
    #[error("cannot start the microVM: {0}")]
    Build(BuildError),
    /// The event loop's seccomp filter could not be installed (the vmm then exits).
    #[error(transparent)]
    Seccomp(SeccompError),
    /// A virtio device request.
    #[error(transparent)]
    Virtio(#[from] VirtioError),
}

/// Where the serial console goes.
#[derive(Debug, Clone, Default)]
pub enum SerialSink {
    /// The vmm's stdout.
    #[default]
    Stdout,
    /// A file (appended) or named pipe.
    Path(PathBuf),
}

impl SerialSink {
    fn open(&self) -> Result<SerialOut, ControllerError> {
        Ok(match self {
            SerialSink::Stdout => Box::new(std::io::stdout()),
            SerialSink::Path(p) => Box::new(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .map_err(|source| ControllerError::SerialOutput {
                        path: p.clone(),
                        source,
                    })?,
            ),
        })
    }
}

/// Instance information for `GET /`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceInfo {
    /// Instance id (`--id`).
    pub id: String,
    /// "Not started" or "Running".
    pub state: &'static str,
    /// This vmm's version.
    pub vmm_version: &'static str,
    /// The binary's name.
    pub app_name: &'static str,
}

/// The microVM being configured or running.
pub struct Controller {
    id: String,
    machine: MachineConfig,
    boot: Option<BootSource>,
    serial: SerialSink,
    exit: ExitNotifier,
    running: Option<RunningVm>,
    pending: Vec<Subscriber>,
    read_stdin: bool,
    virtio: VirtioDevices,
}

impl Controller {
    /// A controller for instance `id`.
    pub fn new(id: String, serial: SerialSink, exit: ExitNotifier, read_stdin: bool) -> Self {
        Controller {
            id,
            machine: MachineConfig::default(),
            boot: None,
            serial,
            exit,
            running: None,
            pending: Vec::new(),
            read_stdin,
            virtio: VirtioDevices::default(),
        }
    }

    fn ensure_not_started(&self, what: &'static str) -> Result<(), ControllerError> {
        if self.running.is_some() {
            return Err(ControllerError::AfterStart(what));
        }
        Ok(())
    }

    /// `GET /`.
    pub fn info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.id.clone(),
            state: if self.running.is_some() {
                "Running"
            } else {
                "Not started"
            },
            vmm_version: env!("CARGO_PKG_VERSION"),
            app_name: "vmm",
        }
    }

    /// `GET /machine-config`.
    pub fn machine_config(&self) -> &MachineConfig {
        &self.machine
    }

    /// `GET /vm/config`: everything configured so far.
    pub fn vm_config(&self) -> FullVmConfig {
        let mut c = FullVmConfig {
            boot_source: self.boot.clone().unwrap_or_default(),
            machine_config: self.machine.clone(),
            ..Default::default()
        };
        self.virtio.write_configs(&mut c);
        c
    }

    /// `PUT /machine-config` (sizes are checked at InstanceStart, as Firecracker does).
    pub fn put_machine_config(&mut self, m: MachineConfig) -> Result<(), ControllerError> {
        self.ensure_not_started("changing the machine configuration")?;
        m.validate()?;
        self.machine = m;
        Ok(())
    }

    /// `PATCH /machine-config`.
    pub fn patch_machine_config(&mut self, u: MachineConfigUpdate) -> Result<(), ControllerError> {
        let m = self.machine.update(u);
        self.put_machine_config(m)
    }

    /// `PUT /boot-source`: checks that the files exist and can be read now.
    pub fn put_boot_source(&mut self, b: BootSource) -> Result<(), ControllerError> {
        self.ensure_not_started("changing the boot source")?;
        std::fs::File::open(&b.kernel_image_path).map_err(|source| {
            ControllerError::KernelImage {
                path: b.kernel_image_path.clone(),
                source,
            }
        })?;
        if let Some(i) = &b.initrd_path {
            std::fs::File::open(i).map_err(|source| ControllerError::Initrd {
                path: i.clone(),
                source,
            })?;
        }
        self.boot = Some(b);
        Ok(())
    }

    /// `PUT /logger`.
    pub fn put_logger(&mut self, l: LoggerConfig) -> Result<(), ControllerError> {
        if let Some(level) = &l.level {
            crate::logger::set_level(crate::logger::parse_level(level)?);
        }
        if let Some(p) = &l.log_path {
            crate::logger::set_path(std::path::Path::new(p))?;
        }
        Ok(())
    }

    /// `PUT /serial`: the guest console goes to a file or named pipe.
    pub fn put_serial(&mut self, s: crate::config::SerialConfig) -> Result<(), ControllerError> {
        self.ensure_not_started("changing the serial output")?;
        if s.serial_out_path.is_empty() {
            return Err(ControllerError::EmptySerialPath);
        }
        self.serial = SerialSink::Path(s.serial_out_path.into());
        Ok(())
    }

    /// `PUT /metrics`.
    pub fn put_metrics(&mut self, m: MetricsConfig) -> Result<(), ControllerError> {
        crate::metrics::init(std::path::Path::new(&m.metrics_path))?;
        Ok(())
    }

    /// `PUT /drives/{id}` (before start).
    pub fn put_drive(&mut self, id: &str, d: Drive) -> Result<(), ControllerError> {
        self.ensure_not_started("PUT /drives")?;
        Ok(self.virtio.put_drive(id, d)?)
    }

    /// `PATCH /drives/{id}` (running VM).
    pub fn patch_drive(&mut self, id: &str, u: DriveUpdate) -> Result<(), ControllerError> {
        self.ensure_started("PATCH /drives")?;
        Ok(self.virtio.patch_drive(id, u)?)
    }

    /// `PUT /network-interfaces/{id}` (before start).
    pub fn put_net(&mut self, id: &str, n: NetworkInterface) -> Result<(), ControllerError> {
        self.ensure_not_started("PUT /network-interfaces")?;
        Ok(self.virtio.put_net(id, n)?)
    }

    /// `PATCH /network-interfaces/{id}` (running VM).
    pub fn patch_net(
        &mut self,
        id: &str,
        u: NetworkInterfaceUpdate,
    ) -> Result<(), ControllerError> {
        self.ensure_started("PATCH /network-interfaces")?;
        Ok(self.virtio.patch_net(id, u)?)
    }

    /// `PUT /vsock` (before start).
    pub fn put_vsock(&mut self, v: Vsock) -> Result<(), ControllerError> {
        self.ensure_not_started("PUT /vsock")?;
        Ok(self.virtio.put_vsock(v)?)
    }

    /// `PUT /entropy` (before start).
    pub fn put_entropy(&mut self, e: Entropy) -> Result<(), ControllerError> {
        self.ensure_not_started("PUT /entropy")?;
        Ok(self.virtio.put_entropy(e)?)
    }

    fn ensure_started(&self, what: &'static str) -> Result<(), ControllerError> {
        if self.running.is_none() {
            return Err(ControllerError::NotRunning(what));
        }
        Ok(())
    }

    fn ensure_started_for(&self, action: &'static str) -> Result<(), ControllerError> {
        if self.running.is_none() {
            return Err(ControllerError::BeforeStart(action));
        }
        Ok(())
    }

    /// `PUT /actions`.
    pub fn action(&mut self, a: ActionType) -> Result<(), ControllerError> {
        match a {
            ActionType::InstanceStart => self.start(),
            ActionType::FlushMetrics => {
                self.ensure_started_for("FlushMetrics")?;
                if !crate::metrics::flush() {
                    return Err(ControllerError::MetricsNotConfigured);
                }
                Ok(())
            }
            ActionType::SendCtrlAltDel => match &self.running {
                Some(vm) => {
                    lock(&vm.i8042).send_ctrl_alt_del();
                    Ok(())
                }
                None => Err(ControllerError::BeforeStart("SendCtrlAltDel")),
            },
        }
    }

    /// InstanceStart: builds the VM and starts the vCPUs.
    pub fn start(&mut self) -> Result<(), ControllerError> {
        self.ensure_not_started("InstanceStart")?;
        let boot = self.boot.clone().ok_or(ControllerError::NoBootSource)?;
        self.machine.validate_for_start(host_mem_mib())?;
        let t0 = Instant::now();
        let spec = VmSpec {
            vcpus: self.machine.vcpu_count,
            mem_mib: self.machine.mem_size_mib,
            backing: match self.machine.huge_pages {
                HugePages::None => Backing::Anonymous,
                HugePages::Hugetlbfs2M => Backing::HugePages2M,
            },
            smt: self.machine.smt,
            boot: BootSpec {
                kernel: boot.kernel_image_path.into(),
                initrd: boot.initrd_path.map(Into::into),
                cmdline: boot
                    .boot_args
                    .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_string()),
                extra_cmdline: self.virtio.root_cmdline(),
            },
        };
        let out = self.serial.open()?;
        let virtio = &self.virtio;
        let vm = builder::build_and_start(&spec, out, &self.exit, t0, &mut |vm, mem, dm| {
            virtio.attach(&vm.fd, mem, dm)
        })
        .map_err(ControllerError::Build)?;
        // The event loop handles guest-driven events from now on: filter it first.
        if let Err(e) = crate::seccomp::apply(crate::seccomp::ThreadKind::Vmm) {
            self.exit.notify(1);
            return Err(ControllerError::Seccomp(e));
        }
        METRICS
            .instance_start_ms
            .store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            "microVM started: {} vCPUs, {} MiB, {} virtio devices, in {} ms",
            spec.vcpus,
            spec.mem_mib,
            self.virtio.count(),
            t0.elapsed().as_millis()
        );
        if self.read_stdin {
            let input =
                crate::legacy::serial::SerialInput::new(vm.serial.clone(), std::io::stdin());
            self.pending
                .push(std::sync::Arc::new(std::sync::Mutex::new(input)));
        }
        self.pending.extend(vm.subscribers.iter().cloned());
        self.running = Some(vm);
        Ok(())
    }

    /// Applies a config file (everything but starting).
    pub fn apply_config_file(&mut self, c: VmConfigFile) -> Result<(), ControllerError> {
        if let Some(l) = c.logger {
            self.put_logger(l)?;
        }
        if let Some(m) = c.metrics {
            self.put_metrics(m)?;
        }
        if let Some(m) = c.machine_config {
            self.put_machine_config(m)?;
        }
        for d in c.drives {
            let id = d.drive_id.clone();
            self.put_drive(&id, d)?;
        }
        for n in c.network_interfaces {
            let id = n.iface_id.clone();
            self.put_net(&id, n)?;
        }
        if let Some(v) = c.vsock {
            self.put_vsock(v)?;
        }
        if let Some(e) = c.entropy {
            self.put_entropy(e)?;
        }
        self.put_boot_source(c.boot_source)
    }

    /// Subscribers that the event loop must add (taken once).
    pub fn take_subscribers(&mut self) -> Vec<Subscriber> {
        std::mem::take(&mut self.pending)
    }

    /// Cleans up what outlives the process otherwise (the vsock socket file).
    pub fn shutdown(&mut self) {
        self.virtio.remove_sockets();
    }

    /// Whether the microVM runs.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl() -> Controller {
        Controller::new(
            "t".into(),
            SerialSink::Stdout,
            ExitNotifier::new().unwrap(),
            false,
        )
    }

    #[test]
    fn start_without_boot_source_is_a_fault() {
        let mut c = ctl();
        let e = c.action(ActionType::InstanceStart).unwrap_err();
        assert!(e.to_string().contains("boot source"), "{e:?}");
        assert!(!c.is_running());
    }

    #[test]
    fn missing_kernel_is_a_fault() {
        let mut c = ctl();
        let e = c
            .put_boot_source(BootSource {
                kernel_image_path: "/nonexistent/vmlinux".into(),
                boot_args: None,
                initrd_path: None,
            })
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/vmlinux"), "{e:?}");
    }

    #[test]
    fn machine_config_put_and_patch() {
        let mut c = ctl();
        c.put_machine_config(MachineConfig {
            vcpu_count: 2,
            mem_size_mib: 256,
            ..Default::default()
        })
        .unwrap();
        c.patch_machine_config(MachineConfigUpdate {
            vcpu_count: Some(4),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.machine_config().vcpu_count, 4);
        assert_eq!(c.machine_config().mem_size_mib, 256);
        let zero = MachineConfigUpdate {
            mem_size_mib: Some(0),
            ..Default::default()
        };
        assert!(c
            .patch_machine_config(zero)
            .unwrap_err()
            .to_string()
            .contains("mem_size_mib 0"));
        assert_eq!(c.machine_config().mem_size_mib, 256);
        // Too big for the host: accepted now, refused at InstanceStart.
        let huge = MachineConfigUpdate {
            mem_size_mib: Some(usize::MAX / 2),
            ..Default::default()
        };
        c.patch_machine_config(huge).unwrap();
        c.boot = Some(BootSource {
            kernel_image_path: "/nonexistent".into(),
            ..Default::default()
        });
        assert!(c.start().unwrap_err().to_string().contains("host"));
        assert_eq!(
            c.action(ActionType::FlushMetrics).unwrap_err().to_string(),
            "FlushMetrics is not supported before the microVM starts (InstanceStart first)"
        );
        assert_eq!(c.info().state, "Not started");
    }

    #[test]
    fn garbage_kernel_fails_start_with_a_message() {
        let p = std::env::temp_dir().join(format!("vmm-ctl-garbage-{}", std::process::id()));
        std::fs::write(&p, vec![0x90u8; 8192]).unwrap();
        let mut c = ctl();
        c.put_boot_source(BootSource {
            kernel_image_path: p.display().to_string(),
            boot_args: None,
            initrd_path: None,
        })
        .unwrap();
        let r = c.start();
        std::fs::remove_file(&p).unwrap();
        let e = r.unwrap_err();
        // Without /dev/kvm the VM creation fails first; with it, the format check does.
        assert!(
            e.to_string()
                .contains("neither an ELF vmlinux nor a bzImage")
                || e.to_string().contains("/dev/kvm"),
            "{e:?}"
        );
        assert!(!c.is_running());
    }
}
