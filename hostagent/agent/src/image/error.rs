//! Errors of the image pipeline: every one names the image, the step and the reason.

use std::fmt;

/// The pipeline step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Parsing the image reference.
    Reference,
    /// Resolving and fetching the manifest (and the platform manifest of an index).
    Manifest,
    /// Fetching the image config.
    Config,
    /// Fetching or verifying a layer blob.
    Layer(String),
    /// Unpacking a layer into the root file system.
    Unpack(String),
    /// Building the ext4 image root.
    BuildRoot,
    /// Creating an empty volume / scratch device.
    Volume,
    /// Cache housekeeping (directories, locks).
    Cache,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Reference => f.write_str("parse reference"),
            Step::Manifest => f.write_str("fetch manifest"),
            Step::Config => f.write_str("fetch config"),
            Step::Layer(d) => write!(f, "fetch layer {d}"),
            Step::Unpack(d) => write!(f, "unpack layer {d}"),
            Step::BuildRoot => f.write_str("build ext4 image root"),
            Step::Volume => f.write_str("create volume device"),
            Step::Cache => f.write_str("layer cache"),
        }
    }
}

/// What kind of failure, so the launch code can pick a stop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The reference is malformed or names an unsupported source.
    InvalidReference,
    /// The image, tag or blob does not exist.
    NotFound,
    /// The registry refused the credentials.
    Unauthorized,
    /// The registry could not be reached.
    Unreachable,
    /// Content did not match its digest or size, or is malformed / unsafe.
    BadContent,
    /// The image does not fit the task's layer storage budget.
    TooLarge,
    /// No linux/amd64 image in the index, or a non-amd64 image.
    Platform,
    /// A local I/O or tool failure.
    Io,
    /// Anything else the registry answered.
    Registry,
    /// The operator does not allow this source: a registry outside the allow-list (or at
    /// a loopback, link-local, private or host address), or `oci-layout:` while disabled.
    NotAllowed,
}

/// An image pipeline error: `image <ref>: <step>: <reason>`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("image {image}: {step}: {reason}")]
pub struct ImageError {
    /// The image reference as given.
    pub image: String,
    /// The step that failed.
    pub step: Step,
    /// The failure class.
    pub kind: ErrorKind,
    /// Human-readable reason.
    pub reason: String,
}

impl ImageError {
    /// Builds an error.
    pub fn new(image: &str, step: Step, kind: ErrorKind, reason: impl Into<String>) -> Self {
        ImageError {
            image: image.to_string(),
            step,
            kind,
            reason: reason.into(),
        }
    }
}

/// A failure of one step before the image name and step are attached
/// (see [`Failure::at`]).
#[derive(Debug)]
pub struct Failure {
    /// The failure class.
    pub kind: ErrorKind,
    /// Human-readable reason.
    pub reason: String,
}

impl Failure {
    /// Builds a failure.
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Failure {
            kind,
            reason: reason.into(),
        }
    }

    /// An I/O failure while doing `what`.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Failure::new(ErrorKind::Io, format!("{what}: {e}"))
    }

    /// Attaches the image and step.
    pub fn at(self, image: &str, step: Step) -> ImageError {
        ImageError::new(image, step, self.kind, self.reason)
    }
}
