//! The fields of a task definition that the guest init acts on: per container
//! `dependsOn`, `healthCheck`, `mountPoints`, `ulimits`, `workingDirectory`, `user`, and
//! the task's `volumes`. They are parsed into the agent protocol's types when a task
//! definition is registered (where a malformed one is refused) and again when a task is
//! launched, so what reaches the host is exactly what was accepted.

use super::ContainerDefinition;
use agent_proto::{Dependency, HealthCheck, MountPoint, Ulimit};
use serde::de::DeserializeOwned;
use serde_json::Value;

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
) -> Result<Option<T>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("Invalid {name} for container '{container}': {e}")),
    }
}

/// Parses the runtime fields of `d`; the error names the container and the field.
pub fn runtime_fields(d: &ContainerDefinition) -> Result<RuntimeFields, String> {
    let n = d.name.as_str();
    if !d.volumes_from.is_empty() {
        return Err(format!(
            "volumesFrom is not supported (container '{n}'): declare a task volume and \
             mount it with mountPoints in each container"
        ));
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
pub fn volume_names(volumes: &[Value]) -> Result<Vec<String>, String> {
    volumes
        .iter()
        .map(|v| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("Invalid volume: every volume needs a 'name' string.")?;
            if let Some(k) = EXTERNAL_VOLUMES.iter().find(|k| v.get(**k).is_some()) {
                return Err(format!(
                    "Volume '{name}': {k} is not supported; only task storage volumes are."
                ));
            }
            if v.pointer("/host/sourcePath").is_some() {
                return Err(format!(
                    "Volume '{name}': host.sourcePath is not supported on Fargate."
                ));
            }
            Ok(name.to_string())
        })
        .collect()
}
