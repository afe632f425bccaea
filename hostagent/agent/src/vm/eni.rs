//! The task's ENI(s) from netd: `PUT /v1/tasks/{id}` (taps owned by the jailed vmm's uid,
//! in the task's network namespace) and `DELETE` on release.

use agent_proto::TaskSpec;
use hyper::Method;
use netd::model::{CreateTaskRequest, EniRequest, Task};
use netd::Client;
use std::path::Path;

/// Longest wait for one netd call.
pub const NETD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A netd call that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetdError {
    /// netd did not answer within [`NETD_TIMEOUT`].
    #[error("netd did not answer within {NETD_TIMEOUT:?}")]
    Timeout,
    /// The call failed (connection, HTTP error answer, bad body).
    #[error(transparent)]
    Client(#[from] netd::client::ClientError),
    /// `GET /v1/subnets` answered an error status.
    #[error("netd GET /v1/subnets: {0}")]
    Subnets(hyper::StatusCode),
    /// netd created the task without an ENI.
    #[error("netd answered a task without ENI")]
    NoEni,
}

/// netd, as the runtime uses it.
#[derive(Debug, Clone)]
pub struct Netd {
    client: Client,
}

/// Picks the netd subnet: the task's first subnet netd knows, else `default`.
pub fn pick_subnet(requested: &[String], known: &[String], default: &str) -> String {
    requested
        .iter()
        .find(|s| known.contains(s))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

impl Netd {
    /// A client of the netd socket `socket`.
    pub fn new(socket: &Path) -> Netd {
        Netd {
            client: Client::new(socket),
        }
    }

    /// Names of netd's subnets.
    pub async fn subnets(&self) -> Result<Vec<String>, NetdError> {
        let (status, v) = tokio::time::timeout(
            NETD_TIMEOUT,
            self.client.call(Method::GET, "/v1/subnets", None),
        )
        .await
        .map_err(|_| NetdError::Timeout)??;
        if !status.is_success() {
            return Err(NetdError::Subnets(status));
        }
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.get("name")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Creates the task's primary ENI (idempotent in netd: the same request again answers
    /// the same task).
    pub async fn create(
        &self,
        task_id: &str,
        spec: &TaskSpec,
        default_subnet: &str,
        tap_owner: (u32, u32),
    ) -> Result<Task, NetdError> {
        let known = self.subnets().await?;
        let subnet = pick_subnet(&spec.network.subnets, &known, default_subnet);
        let req = CreateTaskRequest {
            enis: vec![EniRequest {
                subnet,
                security_groups: spec.network.security_groups.clone(),
                public_ip: None,
            }],
            tap_uid: Some(tap_owner.0),
            tap_gid: Some(tap_owner.1),
        };
        let task = tokio::time::timeout(NETD_TIMEOUT, self.client.create_task(task_id, &req))
            .await
            .map_err(|_| NetdError::Timeout)??;
        if task.enis.is_empty() {
            let _ = self.release(task_id).await;
            return Err(NetdError::NoEni);
        }
        Ok(task)
    }

    /// Deletes the task's network (404: already gone, fine).
    pub async fn release(&self, task_id: &str) -> Result<(), NetdError> {
        match tokio::time::timeout(NETD_TIMEOUT, self.client.delete_task(task_id)).await {
            Err(_) => Err(NetdError::Timeout),
            Ok(Ok(())) => Ok(()),
            Ok(Err(netd::client::ClientError::Api { status: 404, .. })) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_choice() {
        let known = vec!["service".to_string(), "customer".to_string()];
        assert_eq!(
            pick_subnet(&["subnet-x".into(), "customer".into()], &known, "service"),
            "customer"
        );
        assert_eq!(
            pick_subnet(&["subnet-x".into()], &known, "service"),
            "service"
        );
        assert_eq!(pick_subnet(&[], &known, "service"), "service");
    }
}
