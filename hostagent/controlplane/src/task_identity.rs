//! What a task receives from its account's identity and secret stores at launch: the
//! temporary credentials of its task role, and the values of the secrets its containers
//! name. Lifecycle asks through the [`TaskIdentity`] trait, so the launch path does not
//! depend on how roles, parameters and secrets are stored; the server wires the real
//! implementation in. [`NoIdentity`] is the one for a control plane without those stores
//! (every role and secret is unknown).

use thiserror::Error;

/// Temporary credentials minted for one task and one role.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskCredentials {
    /// The role the credentials act as.
    pub role_arn: String,
    /// `ASIA...` access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token the caller sends as `X-Amz-Security-Token`.
    pub session_token: String,
    /// When they stop working, in ms since the Unix epoch.
    pub expiration_ms: u64,
}

impl std::fmt::Debug for TaskCredentials {
    // The secret parts never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCredentials")
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .field("expiration_ms", &self.expiration_ms)
            .finish_non_exhaustive()
    }
}

/// Why a role or a secret could not be had for a task. The messages are the reasons
/// ECS gives when a task cannot get them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// The role does not exist in the task's account.
    #[error("role {0} does not exist")]
    RoleNotFound(String),
    /// The secret or parameter does not exist in the task's account.
    #[error("secret {0} does not exist")]
    SecretNotFound(String),
    /// The execution role may not read the secret.
    #[error("the execution role is not authorized to read {0}")]
    AccessDenied(String),
    /// The stores could not be read.
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
}

/// The identity and secret stores, as the launch path sees them.
pub trait TaskIdentity: Send + Sync {
    /// Mints credentials for `role_arn` (a role of `account`) bound to `task_arn`.
    fn credentials_for_task(
        &self,
        account: &str,
        role_arn: &str,
        task_arn: &str,
    ) -> Result<TaskCredentials, IdentityError>;

    /// The value of a container secret: `value_from` is an SSM parameter or a Secrets
    /// Manager secret (name or ARN) of `account`, read as `execution_role_arn`.
    fn resolve_secret(
        &self,
        account: &str,
        execution_role_arn: Option<&str>,
        value_from: &str,
    ) -> Result<String, IdentityError>;

    /// The task stopped: every credential minted for it stops working.
    fn task_stopped(&self, account: &str, task_arn: &str);
}

/// A control plane without identity or secret stores: every role and secret is unknown.
pub struct NoIdentity;

impl TaskIdentity for NoIdentity {
    fn credentials_for_task(
        &self,
        _account: &str,
        role_arn: &str,
        _task_arn: &str,
    ) -> Result<TaskCredentials, IdentityError> {
        Err(IdentityError::RoleNotFound(role_arn.to_string()))
    }

    fn resolve_secret(
        &self,
        _account: &str,
        _execution_role_arn: Option<&str>,
        value_from: &str,
    ) -> Result<String, IdentityError> {
        Err(IdentityError::SecretNotFound(value_from.to_string()))
    }

    fn task_stopped(&self, _account: &str, _task_arn: &str) {}
}
