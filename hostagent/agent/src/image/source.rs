//! Image sources: a registry reference (`registry/repo:tag`, `repo@sha256:...`) or a local
//! OCI image layout (`oci-layout:/path/to/layout[:tag|@sha256:...]`).

use std::path::PathBuf;

use oci_client::Reference;

use super::error::{ErrorKind, Failure};

/// Prefix of a local OCI layout source.
pub const LAYOUT_PREFIX: &str = "oci-layout:";

/// Which manifest of a local layout to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutSelector {
    /// The manifest whose `org.opencontainers.image.ref.name` is this tag.
    Tag(String),
    /// The manifest (or index) with this digest.
    Digest(String),
    /// The only manifest of the layout.
    Only,
}

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// An OCI Distribution registry.
    Registry(Reference),
    /// A local OCI image layout directory.
    Layout {
        /// The layout directory (holds `index.json` and `blobs/`).
        dir: PathBuf,
        /// Which manifest.
        selector: LayoutSelector,
    },
}

impl ImageSource {
    /// Parses an image reference as a container definition gives it.
    pub fn parse(s: &str) -> Result<ImageSource, Failure> {
        if let Some(rest) = s.strip_prefix(LAYOUT_PREFIX) {
            return parse_layout(rest);
        }
        if s.is_empty() || s.trim() != s {
            return Err(Failure::new(
                ErrorKind::InvalidReference,
                "empty reference or surrounding white space",
            ));
        }
        let r: Reference = s.parse().map_err(|e| {
            Failure::new(
                ErrorKind::InvalidReference,
                format!("invalid reference: {e}"),
            )
        })?;
        Ok(ImageSource::Registry(r))
    }

    /// The registry host (`host[:port]`), for registry sources.
    pub fn registry(&self) -> Option<&str> {
        match self {
            ImageSource::Registry(r) => Some(r.resolve_registry()),
            ImageSource::Layout { .. } => None,
        }
    }
}

fn parse_layout(rest: &str) -> Result<ImageSource, Failure> {
    let bad = |why: &str| Failure::new(ErrorKind::InvalidReference, why.to_string());
    if !rest.starts_with('/') {
        return Err(bad("oci-layout path must be absolute"));
    }
    let (dir, selector) = if let Some((dir, digest)) = rest.rsplit_once('@') {
        (dir, LayoutSelector::Digest(digest.to_string()))
    } else {
        match rest.rsplit_once(':') {
            // A ':' after the last '/' separates the tag.
            Some((dir, tag)) if !tag.contains('/') => {
                if tag.is_empty() {
                    return Err(bad("empty tag"));
                }
                (dir, LayoutSelector::Tag(tag.to_string()))
            }
            _ => (rest, LayoutSelector::Only),
        }
    };
    if dir.split('/').any(|c| c == "..") {
        return Err(bad("oci-layout path must not contain '..'"));
    }
    Ok(ImageSource::Layout {
        dir: PathBuf::from(dir),
        selector,
    })
}

/// Whether a registry host is on loopback (plain http is then allowed).
pub fn is_loopback_registry(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name == "localhost" {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layouts() {
        match ImageSource::parse("oci-layout:/a/b:v1").unwrap() {
            ImageSource::Layout { dir, selector } => {
                assert_eq!(dir, PathBuf::from("/a/b"));
                assert_eq!(selector, LayoutSelector::Tag("v1".into()));
            }
            _ => panic!("not a layout"),
        }
        match ImageSource::parse("oci-layout:/a/b").unwrap() {
            ImageSource::Layout { selector, .. } => assert_eq!(selector, LayoutSelector::Only),
            _ => panic!("not a layout"),
        }
        match ImageSource::parse("oci-layout:/a/b@sha256:00").unwrap() {
            ImageSource::Layout { selector, .. } => {
                assert_eq!(selector, LayoutSelector::Digest("sha256:00".into()))
            }
            _ => panic!("not a layout"),
        }
        assert!(ImageSource::parse("oci-layout:rel/path:v1").is_err());
        assert!(ImageSource::parse("oci-layout:/a/../b:v1").is_err());
    }

    #[test]
    fn parses_registry_refs() {
        let s = ImageSource::parse("127.0.0.1:5000/busybox:1").unwrap();
        assert_eq!(s.registry(), Some("127.0.0.1:5000"));
        assert!(ImageSource::parse("").is_err());
        assert!(ImageSource::parse("UPPER/Case:x").is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:80"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
        assert!(!is_loopback_registry("registry.example.com"));
    }
}
