//! One error type for the daemon; each variant maps to an HTTP status and a code.

use axum::http::StatusCode;

/// Result alias used across netd.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in netd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request (or config) is malformed or names something invalid.
    #[error("{0}")]
    Invalid(String),
    /// A named object (task, security group, subnet) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with existing state (duplicate task, group in use).
    #[error("{0}")]
    Conflict(String),
    /// A subnet has no free address left.
    #[error("{0}")]
    Exhausted(String),
    /// A netlink / namespace / tap operation failed.
    #[error("kernel: {0}")]
    Kernel(String),
    /// `nft` rejected a ruleset transaction.
    #[error("nftables: {0}")]
    Nft(String),
    /// Flushing a deleted ENI's conntrack entries failed (or the tool is missing).
    #[error("conntrack: {0}")]
    Conntrack(String),
    /// Reading or writing the state or config file failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// HTTP status for the API.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Exhausted(_) => StatusCode::CONFLICT,
            Error::Kernel(_) | Error::Nft(_) | Error::Conntrack(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Stable machine-readable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "InvalidParameter",
            Error::NotFound(_) => "NotFound",
            Error::Conflict(_) => "Conflict",
            Error::Exhausted(_) => "SubnetExhausted",
            Error::Kernel(_) => "KernelError",
            Error::Nft(_) => "NftablesError",
            Error::Conntrack(_) => "ConntrackError",
            Error::Io(_) => "IoError",
        }
    }
}

impl From<rtnetlink::Error> for Error {
    fn from(e: rtnetlink::Error) -> Self {
        Error::Kernel(e.to_string())
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Kernel(e.to_string())
    }
}

/// Shorthand for `Err(Error::Invalid(..))`.
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}
