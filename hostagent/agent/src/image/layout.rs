//! Reading a local OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`).

use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{ErrorKind, Failure};
use super::manifest::{
    pick_linux_amd64, Descriptor, ImageManifest, RawDescriptor, RawIndex, RawManifest,
    INDEX_MEDIA_TYPES,
};
use super::source::LayoutSelector;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Manifests, indexes and configs are small; refuse absurd ones.
const MAX_JSON: u64 = 16 << 20;

/// A local layout source.
pub(crate) struct LayoutPuller {
    dir: PathBuf,
    selector: LayoutSelector,
}

impl LayoutPuller {
    pub fn new(dir: PathBuf, selector: LayoutSelector) -> Self {
        LayoutPuller { dir, selector }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Reads a small blob, checking its size and digest.
    async fn read_json_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, Failure> {
        if desc.size > MAX_JSON {
            return Err(Failure::new(
                ErrorKind::BadContent,
                format!("{} is too large ({} bytes)", desc.digest, desc.size),
            ));
        }
        let p = self.blob_path(&desc.digest);
        let data = tokio::fs::read(&p)
            .await
            .map_err(|e| not_found_or_io(&p, e))?;
        if data.len() as u64 != desc.size || Digest::of_bytes(&data) != desc.digest {
            return Err(Failure::new(
                ErrorKind::BadContent,
                format!("blob {} does not match its digest or size", desc.digest),
            ));
        }
        Ok(data)
    }

    /// Resolves the selected manifest (through an index when needed).
    pub async fn manifest(&self) -> Result<ImageManifest, Failure> {
        let index_path = self.dir.join("index.json");
        let data = tokio::fs::read(&index_path)
            .await
            .map_err(|e| not_found_or_io(&index_path, e))?;
        let index: RawIndex = serde_json::from_slice(&data).map_err(|e| {
            Failure::new(
                ErrorKind::BadContent,
                format!("index.json is not valid: {e}"),
            )
        })?;
        let chosen = self.select(&index)?;
        let mut desc = Descriptor::try_from(chosen)?;
        if INDEX_MEDIA_TYPES.contains(&desc.media_type.as_str()) {
            let data = self.read_json_blob(&desc).await?;
            let inner: RawIndex = serde_json::from_slice(&data).map_err(|e| {
                Failure::new(
                    ErrorKind::BadContent,
                    format!("image index is not valid: {e}"),
                )
            })?;
            desc = Descriptor::try_from(pick_linux_amd64(&inner)?)?;
        }
        let data = self.read_json_blob(&desc).await?;
        let m: RawManifest = serde_json::from_slice(&data).map_err(|e| {
            Failure::new(ErrorKind::BadContent, format!("manifest is not valid: {e}"))
        })?;
        let layers = m
            .layers
            .iter()
            .map(Descriptor::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        ImageManifest::new(desc.digest, Descriptor::try_from(&m.config)?, layers)
    }

    fn select<'a>(&self, index: &'a RawIndex) -> Result<&'a RawDescriptor, Failure> {
        let found = match &self.selector {
            LayoutSelector::Tag(tag) => index.manifests.iter().find(|m| {
                m.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag))
            }),
            LayoutSelector::Digest(d) => index.manifests.iter().find(|m| &m.digest == d),
            LayoutSelector::Only => match index.manifests.as_slice() {
                [one] => Some(one),
                [] => None,
                _ => {
                    return Err(Failure::new(
                        ErrorKind::InvalidReference,
                        "the layout holds several manifests: name a tag or digest",
                    ))
                }
            },
        };
        found.ok_or_else(|| {
            Failure::new(
                ErrorKind::NotFound,
                format!("no manifest {:?} in {}", self.selector, self.dir.display()),
            )
        })
    }

    /// Copies a blob of the layout to `dest` (created 0600; the cache verifies it),
    /// refusing it once it exceeds `desc.size` bytes.
    pub async fn fetch_blob(&self, desc: &Descriptor, dest: &Path) -> Result<(), Failure> {
        use tokio::io::AsyncReadExt;
        let src = self.blob_path(&desc.digest);
        let from = tokio::fs::File::open(&src)
            .await
            .map_err(|e| not_found_or_io(&src, e))?;
        let mut to = super::cache::create_private(dest)
            .await
            .map_err(|e| Failure::io(format!("create {}", dest.display()), e))?;
        let n = tokio::io::copy(&mut from.take(desc.size.saturating_add(1)), &mut to)
            .await
            .map_err(|e| Failure::io(format!("copy {}", src.display()), e))?;
        if n > desc.size {
            return Err(Failure::new(
                ErrorKind::BadContent,
                format!(
                    "blob {} is larger than the {} bytes its descriptor declares",
                    desc.digest, desc.size
                ),
            ));
        }
        Ok(())
    }
}

fn not_found_or_io(p: &Path, e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::NotFound {
        Failure::new(
            ErrorKind::NotFound,
            format!("{} does not exist", p.display()),
        )
    } else {
        Failure::io(format!("read {}", p.display()), e)
    }
}
