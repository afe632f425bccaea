//! The manifest shapes the pipeline works with (OCI image manifest/index and their Docker
//! v2 equivalents), with digests and sizes validated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;
use super::error::{ErrorKind, Failure};

/// Media types of an image index / manifest list.
pub const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A raw descriptor as found in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawDescriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A descriptor's platform.
#[derive(Debug, Clone, Deserialize)]
pub struct RawPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An index (`index.json` of a layout, or an image index blob).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawIndex {
    #[serde(default)]
    pub manifests: Vec<RawDescriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawManifest {
    pub config: RawDescriptor,
    #[serde(default)]
    pub layers: Vec<RawDescriptor>,
}

/// A validated descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type (as given).
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// Validates a raw descriptor.
    pub fn from_parts(media_type: &str, digest: &str, size: i64) -> Result<Descriptor, Failure> {
        let size = u64::try_from(size).map_err(|_| {
            Failure::new(ErrorKind::BadContent, format!("negative size for {digest}"))
        })?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::parse(digest)?,
            size,
        })
    }
}

impl TryFrom<&RawDescriptor> for Descriptor {
    type Error = Failure;
    fn try_from(r: &RawDescriptor) -> Result<Self, Failure> {
        Descriptor::from_parts(&r.media_type, &r.digest, r.size)
    }
}

/// An image manifest: config and layers, validated.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    /// Digest of the manifest (of the platform manifest when resolved from an index).
    pub digest: Digest,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// Validates a manifest's descriptors.
    pub fn new(
        digest: Digest,
        config: Descriptor,
        layers: Vec<Descriptor>,
    ) -> Result<Self, Failure> {
        for l in &layers {
            let mt = l.media_type.as_str();
            let ok = mt.is_empty()
                || mt.starts_with("application/vnd.oci.image.layer.")
                || mt.starts_with("application/vnd.docker.image.rootfs.");
            if !ok {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    format!("layer {} has unsupported media type {mt}", l.digest),
                ));
            }
        }
        Ok(ImageManifest {
            digest,
            config,
            layers,
        })
    }
}

/// Picks the linux/amd64 entry of an index.
pub fn pick_linux_amd64(index: &RawIndex) -> Result<&RawDescriptor, Failure> {
    index
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| {
            Failure::new(
                ErrorKind::Platform,
                "the image index has no linux/amd64 manifest",
            )
        })
}
