//! The fields of a task definition that the guest init acts on: per container
//! `dependsOn`, `healthCheck`, `mountPoints`, `ulimits`, `workingDirectory`, `user`, and
//! the task's `volumes`. They are parsed into the agent protocol's types when a task
//! definition is registered (where a malformed one is refused) and again when a task is
//! launched, so what reaches the host is exactly what was accepted.

use super::ContainerDefinition;
use agent_proto::{Dependency, HealthCheck, MountPoint, Ulimit};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a container definition's runtime fields or a task's volumes are refused.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// `volumesFrom` (not offered: volumes are declared on the task).
    #[error(
        "volumesFrom is not supported (container '{0}'): declare a task volume and \
         mount it with mountPoints in each container"
    )]
    VolumesFrom(String),
    /// A field that does not parse as the agent protocol's type.
    #[error("Invalid {field} for container '{container}': {err}")]
    Malformed {
        /// The field (`dependsOn`, ...).
        field: String,
        /// The container.
        container: String,
        /// The parse error.
        err: serde_json::Error,
    },
    /// A volume without a name.
    #[error("Invalid volume: every volume needs a 'name' string.")]
    VolumeName,
    /// A volume that needs storage outside the task.
    #[error("Volume '{name}': {kind} is not supported; only task storage volumes are.")]
    ExternalVolume {
        /// The volume.
        name: String,
        /// Its configuration key (`efsVolumeConfiguration`, ...).
        kind: String,
    },
    /// A host bind mount.
    #[error("Volume '{0}': host.sourcePath is not supported on Fargate.")]
    HostPath(String),
}

/// The runtime fields of one container definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeFields {
    /// `dependsOn`.
    pub depends_on: Vec<Dependency>,
    /// `healthCheck`.
    pub health_check: Option<HealthCheck>,
    /// `mountPoints`.
    pub mount_points: Vec<MountPoint>,
    /// `workingDirectory`.
    pub working_directory: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `ulimits`.
    pub ulimits: Vec<Ulimit>,
}

fn field<T: DeserializeOwned>(
    container: &str,
    name: &str,
    v: Option<&Value>,
) -> Result<Option<T>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|err| FieldError::Malformed {
                    field: name.to_string(),
                    container: container.to_string(),
                    err,
                })
        }
    }
}

/// Parses the runtime fields of `d`; the error names the container and the field.
pub fn runtime_fields(d: &ContainerDefinition) -> Result<RuntimeFields, FieldError> {
    let n = d.name.as_str();
    if !d.volumes_from.is_empty() {
        return Err(FieldError::VolumesFrom(n.to_string()));
    }
    let mount_points = Value::Array(d.mount_points.clone());
    Ok(RuntimeFields {
        depends_on: field(n, "dependsOn", d.extra.get("dependsOn"))?.unwrap_or_default(),
        health_check: field(n, "healthCheck", d.extra.get("healthCheck"))?,
        mount_points: field(n, "mountPoints", Some(&mount_points))?.unwrap_or_default(),
        working_directory: field(n, "workingDirectory", d.extra.get("workingDirectory"))?,
        user: field(n, "user", d.extra.get("user"))?,
        ulimits: field(n, "ulimits", d.extra.get("ulimits"))?.unwrap_or_default(),
    })
}

/// Volume configurations that need storage outside the task (not offered here).
const EXTERNAL_VOLUMES: [&str; 4] = [
    "efsVolumeConfiguration",
    "dockerVolumeConfiguration",
    "fsxWindowsFileServerVolumeConfiguration",
    "configuredAtLaunch",
];

/// The names of the task's volumes. Only task-local volumes (bind mounts on the task's
/// own storage, as Fargate's `{"name": ...}`) are accepted.
pub fn volume_names(volumes: &[Value]) -> Result<Vec<String>, FieldError> {
    volumes
        .iter()
        .map(|v| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or(FieldError::VolumeName)?;
            if let Some(k) = EXTERNAL_VOLUMES.iter().find(|k| v.get(**k).is_some()) {
                return Err(FieldError::ExternalVolume {
                    name: name.to_string(),
                    kind: k.to_string(),
                });
            }
            if v.pointer("/host/sourcePath").is_some() {
                return Err(FieldError::HostPath(name.to_string()));
            }
            Ok(name.to_string())
        })
        .collect()
}
