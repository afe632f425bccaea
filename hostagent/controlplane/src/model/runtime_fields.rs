//! The fields of a task definition that the guest init acts on: per container
//! `dependsOn`, `healthCheck`, `mountPoints`, `ulimits`, `workingDirectory`, `user`, and
//! the task's `volumes`. They are converted into the agent protocol's types when a task
//! definition is registered (where one the guest would refuse is refused) and again when
//! a task is launched, so what reaches the host is exactly what was accepted.

use super::{ContainerDefinition, Volume};
use agent_proto::{Condition, Dependency, HealthCheck, MountPoint, Ulimit};

/// Why a container definition's runtime fields or a task's volumes are refused.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// `volumesFrom` (not offered: volumes are declared on the task).
    #[error(
        "volumesFrom is not supported (container '{0}'): declare a task volume and \
         mount it with mountPoints in each container"
    )]
    VolumesFrom(String),
    /// A field whose value the guest cannot take.
    #[error("Invalid {field} for container '{container}': {why}")]
    Malformed {
        /// The field (`dependsOn`, ...).
        field: &'static str,
        /// The container.
        container: String,
        /// What is wrong.
        why: String,
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
        kind: &'static str,
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

fn condition(s: &str) -> Option<Condition> {
    Some(match s {
        "START" => Condition::Start,
        "COMPLETE" => Condition::Complete,
        "SUCCESS" => Condition::Success,
        "HEALTHY" => Condition::Healthy,
        _ => return None,
    })
}

/// Seconds of a health check setting, as the guest's type (range checked by the guest's rules).
fn secs(v: Option<i64>) -> Option<u32> {
    v.map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Converts the runtime fields of `d` into the guest's types; the error names the
/// container and the field.
pub fn runtime_fields(d: &ContainerDefinition) -> Result<RuntimeFields, FieldError> {
    let n = d.name.as_str();
    let bad = |field: &'static str, why: String| FieldError::Malformed {
        field,
        container: n.to_string(),
        why,
    };
    if !d.volumes_from.is_empty() {
        return Err(FieldError::VolumesFrom(n.to_string()));
    }
    let depends_on = d
        .depends_on
        .iter()
        .map(|x| {
            let c = condition(&x.condition).ok_or_else(|| {
                bad(
                    "dependsOn",
                    format!(
                        "condition '{}' is not START, COMPLETE, SUCCESS or HEALTHY",
                        x.condition
                    ),
                )
            })?;
            Ok(Dependency {
                container_name: x.container_name.clone(),
                condition: c,
            })
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    let mount_points = d
        .mount_points
        .iter()
        .map(|m| match (&m.source_volume, &m.container_path) {
            (Some(v), Some(p)) => Ok(MountPoint {
                source_volume: v.clone(),
                container_path: p.clone(),
                read_only: m.read_only.unwrap_or(false),
            }),
            _ => Err(bad(
                "mountPoints",
                "sourceVolume and containerPath are required".into(),
            )),
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    let ulimits = d
        .ulimits
        .iter()
        .map(
            |u| match (u64::try_from(u.soft_limit), u64::try_from(u.hard_limit)) {
                (Ok(soft_limit), Ok(hard_limit)) => Ok(Ulimit {
                    name: u.name.clone(),
                    soft_limit,
                    hard_limit,
                }),
                _ => Err(bad("ulimits", format!("negative limit for '{}'", u.name))),
            },
        )
        .collect::<Result<Vec<_>, FieldError>>()?;
    Ok(RuntimeFields {
        depends_on,
        health_check: d.health_check.as_ref().map(|h| HealthCheck {
            command: h.command.clone(),
            interval: secs(h.interval),
            timeout: secs(h.timeout),
            retries: secs(h.retries),
            start_period: secs(h.start_period),
        }),
        mount_points,
        working_directory: d.working_directory.clone(),
        user: d.user.clone(),
        ulimits,
    })
}

/// The names of the task's volumes. Only task-local volumes (bind mounts on the task's
/// own storage, as Fargate's `{"name": ...}`) are accepted.
pub fn volume_names(volumes: &[Volume]) -> Result<Vec<String>, FieldError> {
    volumes
        .iter()
        .map(|v| {
            if v.name.is_empty() {
                return Err(FieldError::VolumeName);
            }
            let external = [
                (
                    "efsVolumeConfiguration",
                    v.efs_volume_configuration.is_some(),
                ),
                (
                    "dockerVolumeConfiguration",
                    v.docker_volume_configuration.is_some(),
                ),
                (
                    "fsxWindowsFileServerVolumeConfiguration",
                    v.fsx_windows_file_server_volume_configuration.is_some(),
                ),
                ("configuredAtLaunch", v.configured_at_launch == Some(true)),
            ];
            if let Some((kind, _)) = external.iter().find(|(_, on)| *on) {
                return Err(FieldError::ExternalVolume {
                    name: v.name.clone(),
                    kind,
                });
            }
            if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
                return Err(FieldError::HostPath(v.name.clone()));
            }
            Ok(v.name.clone())
        })
        .collect()
}
