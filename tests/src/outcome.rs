//! What a scenario did: the result both ways of running one (`direct` on this machine,
//! `nested` in the nested KVM host) give back.

/// What a scenario did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The script's exit status (128 + signal number when killed).
    pub status: i32,
    /// Its standard output and standard error, interleaved.
    pub output: String,
}
