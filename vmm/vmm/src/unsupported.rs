//! The one "not supported" answer. Every Firecracker endpoint, field value or config-file
//! section this vmm does not serve is refused with [`NotSupported`], so the wording is the
//! same from one endpoint to the next (over the API: 400 with it as `fault_message`).

/// A Firecracker feature this vmm does not serve; `what` names it (`PUT /balloon`,
/// drive `socket` (vhost-user), `config file section "mmds-config"`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not supported by this vmm")]
pub struct NotSupported {
    /// The endpoint, field value or section.
    pub what: String,
}

impl NotSupported {
    /// The error for `what`.
    pub fn new(what: impl Into<String>) -> Self {
        NotSupported { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wording() {
        assert_eq!(
            NotSupported::new("PUT /balloon").to_string(),
            "PUT /balloon is not supported by this vmm"
        );
    }
}
