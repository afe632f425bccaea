//! The microVM's virtio devices (block, net, vsock, entropy from `vmm-devices`): created on
//! `PUT` (so a missing backing file, tap or socket is a 400 right away), attached to the VM
//! at InstanceStart (root drive first, so it is `/dev/vda`), updated live on `PATCH`.

use crate::config::{
    same_id, Drive, DriveConfigError, DriveUpdate, Entropy, FullVmConfig, IdError, IoEngine,
    NetConfigError, NetworkInterface, NetworkInterfaceUpdate, RateLimiter, Vsock,
};
use crate::device_manager::{DeviceError, DeviceManager, Subscriber};
use crate::sync::lock;
use crate::vstate::memory::GuestMemory;
use kvm_ioctls::VmFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vmm_devices::block::{Block, BlockConfig, BlockError};
use vmm_devices::net::tap::TapError;
use vmm_devices::net::{parse_mac, Net, NetConfig};
use vmm_devices::rng::Rng;
use vmm_devices::transport::{MmioTransport, VirtioDevice};
use vmm_devices::vsock::{Vsock as VsockDev, VsockConfig, VsockError};
use vmm_sys_util::eventfd::EventFd;

/// Why a virtio device request (`PUT`/`PATCH` of `/drives`, `/network-interfaces`,
/// `/vsock`, `/entropy`) was refused. Each message names the device.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// A malformed id, or path and body ids that differ.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A drive body this vmm does not serve.
    #[error(transparent)]
    DriveConfig(#[from] DriveConfigError),
    /// A network interface body with a malformed field.
    #[error(transparent)]
    NetConfig(#[from] NetConfigError),
    /// The block device could not open or swap its backing file.
    #[error("drive {id}: {source}")]
    Block {
        /// The drive.
        id: String,
        /// The device's error.
        source: BlockError,
    },
    /// `PATCH /drives/{id}` of a drive never configured.
    #[error("no drive with drive_id {0:?}")]
    NoDrive(String),
    /// Two interfaces on one tap.
    #[error("host_dev_name {tap} is already used by {by}")]
    TapInUse {
        /// The tap.
        tap: String,
        /// The interface that has it.
        by: String,
    },
    /// Two interfaces with one MAC.
    #[error("guest_mac {mac} is already used by {by}")]
    MacInUse {
        /// The MAC as given.
        mac: String,
        /// The interface that has it.
        by: String,
    },
    /// The tap could not be opened or set up.
    #[error("network interface {id}: {source}")]
    Tap {
        /// The interface.
        id: String,
        /// The device's error.
        source: TapError,
    },
    /// `PATCH /network-interfaces/{id}` of an interface never configured.
    #[error("no network interface with iface_id {0:?}")]
    NoNet(String),
    /// `uds_path` is empty.
    #[error("uds_path must not be empty")]
    EmptyUdsPath,
    /// The vsock device could not bind its socket.
    #[error("vsock: {0}")]
    Vsock(VsockError),
    /// The entropy device could not be created.
    #[error("entropy device: {0}")]
    Entropy(std::io::Error),
}

struct DriveEntry {
    cfg: Drive,
    dev: Arc<Mutex<Block>>,
}

struct NetEntry {
    cfg: NetworkInterface,
    dev: Arc<Mutex<Net>>,
}

/// The configured virtio devices.
#[derive(Default)]
pub struct VirtioDevices {
    drives: Vec<DriveEntry>,
    nets: Vec<NetEntry>,
    vsock: Option<(Vsock, Arc<Mutex<VsockDev>>)>,
    entropy: Option<(Entropy, Arc<Mutex<Rng>>)>,
}

impl VirtioDevices {
    /// `PUT /drives/{id}`: opens the backing file now.
    pub fn put_drive(&mut self, id: &str, d: Drive) -> Result<(), VirtioError> {
        same_id("drive_id", id, &d.drive_id)?;
        let path = PathBuf::from(d.validate()?);
        d.check_single_root(self.drives.iter().map(|e| &e.cfg))?;
        let dev = Block::new(&BlockConfig {
            drive_id: id.to_string(),
            path_on_host: path,
            is_read_only: d.is_read_only.unwrap_or(false),
            rate_limiter: RateLimiter::to_device(d.rate_limiter.as_ref()),
            io_engine: IoEngine::to_device(d.io_engine),
        })
        .map_err(|source| VirtioError::Block {
            id: id.to_string(),
            source,
        })?;
        let entry = DriveEntry {
            cfg: d,
            dev: Arc::new(Mutex::new(dev)),
        };
        match self.drives.iter_mut().find(|e| e.cfg.drive_id == id) {
            Some(e) => *e = entry,
            None => self.drives.push(entry),
        }
        Ok(())
    }

    /// `PATCH /drives/{id}` on a running VM: new backing file and/or rate limiter.
    pub fn patch_drive(&mut self, id: &str, u: DriveUpdate) -> Result<(), VirtioError> {
        same_id("drive_id", id, &u.drive_id)?;
        let e = self
            .drives
            .iter_mut()
            .find(|e| e.cfg.drive_id == id)
            .ok_or_else(|| VirtioError::NoDrive(id.to_string()))?;
        if let Some(p) = &u.path_on_host {
            lock(&e.dev)
                .update_backing_file(Path::new(p))
                .map_err(|source| VirtioError::Block {
                    id: id.to_string(),
                    source,
                })?;
            e.cfg.path_on_host = Some(p.clone());
        }
        if let Some(rl) = u.rate_limiter {
            lock(&e.dev).update_rate_limiter(&RateLimiter::to_device(Some(&rl)));
            e.cfg.rate_limiter = Some(rl);
        }
        Ok(())
    }

    /// `PUT /network-interfaces/{id}`: opens the tap now.
    pub fn put_net(&mut self, id: &str, n: NetworkInterface) -> Result<(), VirtioError> {
        same_id("iface_id", id, &n.iface_id)?;
        let mac = n.mac()?;
        for other in self.nets.iter().filter(|e| e.cfg.iface_id != id) {
            if other.cfg.host_dev_name == n.host_dev_name {
                return Err(VirtioError::TapInUse {
                    tap: n.host_dev_name.clone(),
                    by: other.cfg.iface_id.clone(),
                });
            }
            if mac.is_some() && other.cfg.guest_mac.as_deref().and_then(parse_mac) == mac {
                return Err(VirtioError::MacInUse {
                    mac: n.guest_mac.clone().unwrap_or_default(),
                    by: other.cfg.iface_id.clone(),
                });
            }
        }
        // A tap can be opened once: an interface being replaced lets go of it first.
        let pos = self.nets.iter().position(|e| e.cfg.iface_id == id);
        if let Some(p) = pos {
            self.nets.remove(p);
        }
        let dev = Net::new(&NetConfig {
            iface_id: id.to_string(),
            host_dev_name: n.host_dev_name.clone(),
            guest_mac: mac,
            rx_rate_limiter: RateLimiter::to_device(n.rx_rate_limiter.as_ref()),
            tx_rate_limiter: RateLimiter::to_device(n.tx_rate_limiter.as_ref()),
        })
        .map_err(|source| VirtioError::Tap {
            id: id.to_string(),
            source,
        })?;
        let entry = NetEntry {
            cfg: n,
            dev: Arc::new(Mutex::new(dev)),
        };
        match pos {
            Some(p) => self.nets.insert(p, entry),
            None => self.nets.push(entry),
        }
        Ok(())
    }

    /// `PATCH /network-interfaces/{id}` on a running VM: new rate limiters (an absent one
    /// stays as it is).
    pub fn patch_net(&mut self, id: &str, u: NetworkInterfaceUpdate) -> Result<(), VirtioError> {
        same_id("iface_id", id, &u.iface_id)?;
        let e = self
            .nets
            .iter_mut()
            .find(|e| e.cfg.iface_id == id)
            .ok_or_else(|| VirtioError::NoNet(id.to_string()))?;
        if let Some(rx) = u.rx_rate_limiter {
            e.cfg.rx_rate_limiter = Some(rx);
        }
        if let Some(tx) = u.tx_rate_limiter {
            e.cfg.tx_rate_limiter = Some(tx);
        }
        lock(&e.dev).update_rate_limiters(
            &RateLimiter::to_device(e.cfg.rx_rate_limiter.as_ref()),
            &RateLimiter::to_device(e.cfg.tx_rate_limiter.as_ref()),
        );
        Ok(())
    }

    /// `PUT /vsock`: binds `uds_path` now (`vsock_id` is accepted and ignored).
    pub fn put_vsock(&mut self, v: Vsock) -> Result<(), VirtioError> {
        if v.uds_path.is_empty() {
            return Err(VirtioError::EmptyUdsPath);
        }
        // The old device removes its socket when dropped, so a PUT with the same path works.
        self.vsock = None;
        let dev = VsockDev::new(&VsockConfig {
            guest_cid: u64::from(v.guest_cid),
            uds_path: PathBuf::from(&v.uds_path),
        })
        .map_err(VirtioError::Vsock)?;
        self.vsock = Some((v, Arc::new(Mutex::new(dev))));
        Ok(())
    }

    /// `PUT /entropy`.
    pub fn put_entropy(&mut self, e: Entropy) -> Result<(), VirtioError> {
        let dev = Rng::new(&RateLimiter::to_device(e.rate_limiter.as_ref()))
            .map_err(VirtioError::Entropy)?;
        self.entropy = Some((e, Arc::new(Mutex::new(dev))));
        Ok(())
    }

    /// Kernel command-line entries for the root drive: `root=/dev/vda` (or
    /// `root=PARTUUID=...`) and `rw`/`ro`. Empty without a root drive.
    pub fn root_cmdline(&self) -> Vec<String> {
        let Some(root) = self.drives.iter().find(|e| e.cfg.is_root_device) else {
            return Vec::new();
        };
        let dev = match root.cfg.partuuid.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("root=PARTUUID={p}"),
            None => "root=/dev/vda".to_string(),
        };
        let mode = if root.cfg.is_read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        };
        vec![dev, mode.to_string()]
    }

    /// Attaches every device to the VM being built (root drive, other drives in `PUT` order,
    /// network interfaces, vsock, entropy) and registers their metrics.
    pub fn attach(
        &self,
        vm: &VmFd,
        mem: &GuestMemory,
        dm: &mut DeviceManager,
    ) -> Result<(), DeviceError> {
        let roots = self.drives.iter().filter(|e| e.cfg.is_root_device);
        let others = self.drives.iter().filter(|e| !e.cfg.is_root_device);
        for e in roots.chain(others) {
            let m = lock(&e.dev).metrics();
            attach_one(vm, mem, dm, e.dev.clone(), e.dev.clone())?;
            crate::metrics::register_device(format!("block_{}", e.cfg.drive_id), m);
        }
        for e in &self.nets {
            let m = lock(&e.dev).metrics();
            attach_one(vm, mem, dm, e.dev.clone(), e.dev.clone())?;
            crate::metrics::register_device(format!("net_{}", e.cfg.iface_id), m);
        }
        if let Some((_, dev)) = &self.vsock {
            let m = lock(dev).metrics();
            attach_one(vm, mem, dm, dev.clone(), dev.clone())?;
            crate::metrics::register_device("vsock".into(), m);
        }
        if let Some((_, dev)) = &self.entropy {
            let m = lock(dev).metrics();
            attach_one(vm, mem, dm, dev.clone(), dev.clone())?;
            crate::metrics::register_device("entropy".into(), m);
        }
        Ok(())
    }

    /// Removes the vsock listener's socket file (at exit: the device itself lives on in
    /// threads that are not joined).
    pub fn remove_sockets(&self) {
        if let Some((cfg, _)) = &self.vsock {
            let _ = std::fs::remove_file(&cfg.uds_path);
        }
    }

    /// The devices' configurations as last set (`GET /vm/config`).
    pub fn write_configs(&self, c: &mut FullVmConfig) {
        c.drives = self.drives.iter().map(|e| e.cfg.clone()).collect();
        c.network_interfaces = self.nets.iter().map(|e| e.cfg.clone()).collect();
        c.vsock = self.vsock.as_ref().map(|(cfg, _)| cfg.clone());
        c.entropy = self.entropy.as_ref().map(|(cfg, _)| cfg.clone());
    }

    /// Number of configured devices.
    pub fn count(&self) -> usize {
        self.drives.len()
            + self.nets.len()
            + usize::from(self.vsock.is_some())
            + usize::from(self.entropy.is_some())
    }
}

fn attach_one(
    vm: &VmFd,
    mem: &GuestMemory,
    dm: &mut DeviceManager,
    device: Arc<Mutex<dyn VirtioDevice>>,
    subscriber: Subscriber,
) -> Result<(), DeviceError> {
    let transport = MmioTransport::new(mem.clone(), device).map_err(DeviceError::EventFd)?;
    let irq_evt = transport
        .irq_evt()
        .try_clone()
        .map_err(DeviceError::EventFd)?;
    let queue_evts = transport
        .queue_evts()
        .iter()
        .map(EventFd::try_clone)
        .collect::<Result<Vec<_>, _>>()
        .map_err(DeviceError::EventFd)?;
    let (base, gsi) = dm.register_virtio_mmio(
        vm,
        Arc::new(Mutex::new(transport)),
        &irq_evt,
        &queue_evts,
        Some(subscriber),
    )?;
    tracing::info!("virtio-mmio device at {base:#x}, GSI {gsi}");
    Ok(())
}
