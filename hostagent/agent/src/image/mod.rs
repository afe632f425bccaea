//! The image pipeline: pull a container image (registry or local OCI layout) into a
//! digest-verified layer cache, unpack its layers into a root file system, and build the
//! block devices a task's microVM gets (ext4 image roots, the volume device, the scratch
//! device).
//!
//! Modules, in dependency order: `error` (ImageError, steps, kinds), `digest` (strict
//! sha256 digests), `policy` (the registry allow-list and address classes), `source`
//! (image references), `manifest` (manifest / index shapes), `cache` (the blob cache,
//! private modes), `fetch` (the guarded HTTP client: checked and pinned destinations,
//! timeouts, byte caps), `registry` (OCI Distribution pulls), `layout` (local OCI
//! layouts), `config` (image config and the ECS merge), `confine` and `unpack` (layer
//! unpacking), `ext4` (devices).
//!
//! ```no_run
//! # async fn f() -> Result<(), hostagent::image::ImageError> {
//! use hostagent::image::{ImageStore, StoreOptions};
//! let store = ImageStore::open("/var/lib/hostagent/images", StoreOptions::default())?;
//! let root = store
//!     .build_image_root("127.0.0.1:5000/busybox:1", None, "/var/lib/hostagent/tasks/t1".as_ref(),
//!                       "/var/lib/hostagent/tasks/t1/web.ext4".as_ref())
//!     .await?;
//! println!("{} bytes, argv from image: {:?}", root.device.size_bytes, root.image.config.cmd);
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod confine;
mod digest;
mod error;
mod ext4;
mod fetch;
mod layout;
mod manifest;
mod policy;
mod registry;
mod source;
mod unpack;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

pub use cache::BlobCache;
pub use config::{ContainerOverrides, ImageConfig, ProcessSpec};
pub use digest::Digest;
pub use error::{ErrorKind, Failure, ImageError, Step};
pub use ext4::{BlockDevice, GIB, TASK_LAYER_STORAGE_BYTES, TASK_VOLUME_BYTES};
pub use policy::{classify, AddressClass, AllowRegistry, BadAllowEntry, RegistryPolicy};
pub use registry::RegistryCredentials;
pub use source::{ImageSource, LayoutSelector, LAYOUT_PREFIX};
pub use unpack::UnpackStats;

use layout::LayoutPuller;
use manifest::{Descriptor, ImageManifest};
use registry::RegistryPuller;

/// Cap of a manifest, index or token answer, and of an image config (4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Settings of an image store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Registries (`host:port`) reached over plain http besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The operator's registry allow-list (`--allow-registry`). Empty: registries at
    /// public addresses only (see [`RegistryPolicy`]).
    pub allowed_registries: Vec<AllowRegistry>,
    /// Whether `oci-layout:/host/path` references are accepted (`--allow-oci-layout`).
    pub allow_oci_layout: bool,
    /// Registry connect timeout (name resolution included), and the longest wait for the
    /// next bytes of an answer.
    pub timeout: Duration,
    /// Whole-request limit of manifest, index, token and config requests.
    pub request_timeout: Duration,
    /// Limit of one image's whole pull (manifest, config and every layer).
    pub image_timeout: Duration,
    /// Cap of manifest, index and token answers (bytes).
    pub max_manifest_bytes: u64,
    /// Cap of an image config blob (bytes).
    pub max_config_bytes: u64,
    /// Layer storage budget of one image (bytes): compressed layers, unpacked content and
    /// the image root must each fit.
    pub layer_budget_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            insecure_registries: Vec::new(),
            allowed_registries: Vec::new(),
            allow_oci_layout: false,
            timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            image_timeout: Duration::from_secs(600),
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            max_config_bytes: MAX_MANIFEST_BYTES,
            layer_budget_bytes: TASK_LAYER_STORAGE_BYTES,
        }
    }
}

/// A layer in the cache, verified.
#[derive(Debug, Clone)]
pub struct PulledLayer {
    /// Blob digest (compressed).
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Digest of the uncompressed tar, from the config.
    pub diff_id: Option<Digest>,
    /// The cached blob.
    pub path: PathBuf,
}

/// An image whose config and layers are in the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as given.
    pub reference: String,
    /// Digest of the (platform) manifest.
    pub manifest_digest: Digest,
    /// Digest of the config blob (the image ID).
    pub config_digest: Digest,
    /// How the image wants to run.
    pub config: ImageConfig,
    /// Layers, bottom first.
    pub layers: Vec<PulledLayer>,
}

impl PulledImage {
    /// Digests of the blobs this image needs in the cache (config and layers).
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.config_digest).chain(self.layers.iter().map(|l| &l.digest))
    }
}

/// A built image root.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    /// The ext4 device file.
    pub device: BlockDevice,
    /// The image it was built from.
    pub image: PulledImage,
    /// Unpacked content statistics.
    pub unpacked: UnpackStats,
}

enum Puller {
    Registry(Box<RegistryPuller>),
    Layout(LayoutPuller),
}

impl Puller {
    async fn manifest(&self) -> Result<ImageManifest, Failure> {
        match self {
            Puller::Registry(r) => r.manifest().await,
            Puller::Layout(l) => l.manifest().await,
        }
    }

    async fn fetch(&self, desc: &Descriptor, dest: &Path) -> Result<(), Failure> {
        match self {
            Puller::Registry(r) => r.fetch_blob(desc, dest).await,
            Puller::Layout(l) => l.fetch_blob(desc, dest).await,
        }
    }
}

/// The image store of a host: a blob cache plus the pipeline around it.
#[derive(Debug)]
pub struct ImageStore {
    cache: BlobCache,
    opts: StoreOptions,
}

impl ImageStore {
    /// Opens (creating if needed) the store with its cache at `cache_dir`.
    pub fn open(cache_dir: impl Into<PathBuf>, opts: StoreOptions) -> Result<Self, ImageError> {
        let dir = cache_dir.into();
        let cache = BlobCache::open(&dir).map_err(|e| {
            Failure::io(format!("open cache {}", dir.display()), e).at("-", Step::Cache)
        })?;
        Ok(ImageStore { cache, opts })
    }

    /// The blob cache.
    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    /// Pulls `image` (registry reference or `oci-layout:/dir[:tag]`): manifest, config and
    /// every layer end up verified in the cache.
    pub async fn pull(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> Result<PulledImage, ImageError> {
        let source = ImageSource::parse(image).map_err(|f| f.at(image, Step::Reference))?;
        let o = &self.opts;
        let puller = match source {
            ImageSource::Registry(r) => {
                let access = registry::Access {
                    policy: RegistryPolicy::new(&o.allowed_registries),
                    insecure: &o.insecure_registries,
                    limits: fetch::Limits {
                        connect: o.timeout,
                        read: o.timeout,
                        request: o.request_timeout,
                        deadline: tokio::time::Instant::now() + o.image_timeout,
                        total: o.image_timeout,
                    },
                    caps: registry::Caps {
                        manifest_bytes: o.max_manifest_bytes,
                    },
                };
                Puller::Registry(Box::new(
                    RegistryPuller::new(r, creds, access)
                        .map_err(|f| f.at(image, Step::Manifest))?,
                ))
            }
            ImageSource::Layout { .. } if !o.allow_oci_layout => {
                return Err(ImageError::new(
                    image,
                    Step::Reference,
                    ErrorKind::NotAllowed,
                    "oci-layout: references are disabled on this host (--allow-oci-layout)",
                ));
            }
            ImageSource::Layout { dir, selector } => {
                Puller::Layout(LayoutPuller::new(dir, selector))
            }
        };
        let m = puller
            .manifest()
            .await
            .map_err(|f| f.at(image, Step::Manifest))?;
        let total: u64 = m.layers.iter().map(|l| l.size).sum();
        if total > self.opts.layer_budget_bytes {
            return Err(ImageError::new(
                image,
                Step::Manifest,
                ErrorKind::TooLarge,
                format!(
                    "layers total {total} bytes, over the layer storage budget of {} bytes",
                    self.opts.layer_budget_bytes
                ),
            ));
        }
        if m.config.size > self.opts.max_config_bytes {
            return Err(ImageError::new(
                image,
                Step::Config,
                ErrorKind::TooLarge,
                format!(
                    "the manifest declares a {} byte config, over the cap of {} bytes",
                    m.config.size, self.opts.max_config_bytes
                ),
            ));
        }
        let cfg_path = self
            .fetch(&puller, &m.config)
            .await
            .map_err(|f| f.at(image, Step::Config))?;
        let parsed = async {
            let data = tokio::fs::read(&cfg_path)
                .await
                .map_err(|e| Failure::io("read config", e))?;
            config::parse_config(&data)
        }
        .await
        .map_err(|f| f.at(image, Step::Config))?;
        if !parsed.diff_ids.is_empty() && parsed.diff_ids.len() != m.layers.len() {
            return Err(ImageError::new(
                image,
                Step::Config,
                ErrorKind::BadContent,
                format!(
                    "config lists {} diff_ids for {} layers",
                    parsed.diff_ids.len(),
                    m.layers.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(m.layers.len());
        for (i, l) in m.layers.iter().enumerate() {
            let step = || Step::Layer(l.digest.to_string());
            let diff_id = match parsed.diff_ids.get(i) {
                Some(d) => Some(Digest::parse(d).map_err(|f| f.at(image, step()))?),
                None => None,
            };
            let path = self
                .fetch(&puller, l)
                .await
                .map_err(|f| f.at(image, step()))?;
            layers.push(PulledLayer {
                digest: l.digest.clone(),
                size: l.size,
                diff_id,
                path,
            });
        }
        info!(image, manifest = %m.digest, layers = layers.len(), "image pulled");
        Ok(PulledImage {
            reference: image.to_string(),
            manifest_digest: m.digest,
            config_digest: m.config.digest,
            config: parsed.config,
            layers,
        })
    }

    async fn fetch(&self, p: &Puller, desc: &Descriptor) -> Result<PathBuf, Failure> {
        self.cache
            .ensure(&desc.digest, desc.size, |tmp| async move {
                info!(digest = %desc.digest, size = desc.size, "fetching blob");
                p.fetch(desc, &tmp).await
            })
            .await
    }

    /// Unpacks a pulled image into `rootfs` (which must not exist yet). Each layer blob
    /// is verified again right before use; on failure `rootfs` is removed.
    pub async fn unpack(
        &self,
        img: &PulledImage,
        rootfs: &Path,
    ) -> Result<UnpackStats, ImageError> {
        let image = img.reference.as_str();
        let first = img
            .layers
            .first()
            .map(|l| l.digest.to_string())
            .unwrap_or_default();
        std::fs::create_dir(rootfs)
            .map_err(|e| Failure::io(format!("create {}", rootfs.display()), e))
            .map_err(|f| f.at(image, Step::Unpack(first)))?;
        let res = self.unpack_into(img, rootfs).await;
        if res.is_err() {
            if let Err(e) = std::fs::remove_dir_all(rootfs) {
                warn!(path = %rootfs.display(), %e, "cannot remove partial rootfs");
            }
        }
        res
    }

    async fn unpack_into(
        &self,
        img: &PulledImage,
        rootfs: &Path,
    ) -> Result<UnpackStats, ImageError> {
        let image = img.reference.as_str();
        let mut stats = UnpackStats::default();
        for l in &img.layers {
            let step = || Step::Unpack(l.digest.to_string());
            let path = self
                .cache
                .verified(&l.digest, l.size)
                .await
                .and_then(|p| {
                    p.ok_or_else(|| {
                        Failure::new(
                            ErrorKind::BadContent,
                            "cached layer vanished or went corrupt",
                        )
                    })
                })
                .map_err(|f| f.at(image, step()))?;
            let (root, diff_id, max) = (
                rootfs.to_path_buf(),
                l.diff_id.clone(),
                self.opts.layer_budget_bytes,
            );
            let mut st = stats.clone();
            stats = tokio::task::spawn_blocking(move || {
                unpack::unpack_layer(&path, &root, diff_id.as_ref(), max, &mut st).map(|()| st)
            })
            .await
            .map_err(|e| Failure::new(ErrorKind::Io, format!("unpack task failed: {e}")))
            .and_then(|r| r)
            .map_err(|f| f.at(image, step()))?;
        }
        Ok(stats)
    }

    /// Pulls and unpacks `image` into a fresh private staging directory (0700) under
    /// `work_dir` (created if missing): the root file system is
    /// its `rootfs/`. The staging directory is removed when the returned value is
    /// dropped, and on any failure.
    pub async fn unpack_staged(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
        work_dir: &Path,
    ) -> Result<(Staging, PulledImage, UnpackStats), ImageError> {
        let pulled = self.pull(image, creds).await?;
        let staging = Staging::create(work_dir)
            .map_err(|e| Failure::io(format!("create staging in {}", work_dir.display()), e))
            .map_err(|f| f.at(image, Step::BuildRoot))?;
        let unpacked = self.unpack(&pulled, &staging.rootfs()).await?;
        Ok((staging, pulled, unpacked))
    }

    /// The whole pipeline for one container: pull, unpack into a private staging
    /// directory under `work_dir`, build the ext4 image root at `out`, remove the
    /// staging directory.
    pub async fn build_image_root(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
        work_dir: &Path,
        out: &Path,
    ) -> Result<ImageRoot, ImageError> {
        let (staging, pulled, unpacked) = self.unpack_staged(image, creds, work_dir).await?;
        let built =
            ext4::build_image_root(&staging.rootfs(), out, self.opts.layer_budget_bytes).await;
        drop(staging);
        let device = built.map_err(|f| f.at(image, Step::BuildRoot))?;
        Ok(ImageRoot {
            device,
            image: pulled,
            unpacked,
        })
    }
}

/// A private (0700) directory an image is unpacked in; removed on drop.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(work_dir: &Path) -> std::io::Result<Staging> {
        std::fs::create_dir_all(work_dir)?;
        let dir = work_dir.join(cache::unique_name(".unpack"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        // The mode is the point: do not leave it to the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Staging { dir })
    }

    /// The staging directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The unpacked root file system inside it.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            warn!(path = %self.dir.display(), %e, "cannot remove the unpack staging directory");
        }
    }
}

/// Builds an ext4 image from an already unpacked directory (`max_bytes`: budget).
pub async fn build_ext4_from_dir(
    rootfs: &Path,
    out: &Path,
    max_bytes: u64,
) -> Result<BlockDevice, ImageError> {
    ext4::build_image_root(rootfs, out, max_bytes)
        .await
        .map_err(|f| f.at(&rootfs.display().to_string(), Step::BuildRoot))
}

/// Creates the task's volume device: a sparse 4 GiB file holding an empty ext4.
pub async fn create_volume_device(out: &Path) -> Result<BlockDevice, ImageError> {
    ext4::create_empty_ext4(out, TASK_VOLUME_BYTES, "volumes")
        .await
        .map_err(|f| f.at("-", Step::Volume))
}

/// Creates the task's scratch device for the containers' writable layers: what the
/// image roots (`image_root_bytes` in all) leave of the 10 GiB layer storage.
pub async fn create_scratch_device(
    out: &Path,
    image_root_bytes: u64,
) -> Result<BlockDevice, ImageError> {
    let left = TASK_LAYER_STORAGE_BYTES.saturating_sub(image_root_bytes) / 4096 * 4096;
    if left < 64 << 20 {
        return Err(ImageError::new(
            "-",
            Step::Volume,
            ErrorKind::TooLarge,
            format!(
                "image roots take {image_root_bytes} bytes: less than 64 MiB of the {} byte layer storage is left for writable layers",
                TASK_LAYER_STORAGE_BYTES
            ),
        ));
    }
    ext4::create_empty_ext4(out, left, "scratch")
        .await
        .map_err(|f| f.at("-", Step::Volume))
}
