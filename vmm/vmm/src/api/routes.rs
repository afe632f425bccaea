//! Maps HTTP method + path + body to an API request (Firecracker's routes and bodies).

use crate::config::{
    BootSource, Drive, DriveUpdate, Entropy, InstanceAction, LoggerConfig, MachineConfig,
    MachineConfigUpdate, MetricsConfig, NetworkInterface, NetworkInterfaceUpdate, SerialConfig,
    Vsock,
};
use crate::unsupported::NotSupported;
use serde::de::DeserializeOwned;

/// A parsed API request.
#[derive(Debug, Clone)]
pub enum ApiRequest {
    /// `GET /`.
    GetInfo,
    /// `GET /version`.
    GetVersion,
    /// `GET /machine-config`.
    GetMachineConfig,
    /// `GET /vm/config`.
    GetVmConfig,
    /// `PUT /machine-config`.
    PutMachineConfig(MachineConfig),
    /// `PATCH /machine-config`.
    PatchMachineConfig(MachineConfigUpdate),
    /// `PUT /boot-source`.
    PutBootSource(BootSource),
    /// `PUT /logger`.
    PutLogger(LoggerConfig),
    /// `PUT /metrics`.
    PutMetrics(MetricsConfig),
    /// `PUT /actions`.
    Action(InstanceAction),
    /// `PUT /serial`.
    PutSerial(SerialConfig),
    /// `PUT /drives/{id}`.
    PutDrive(String, Drive),
    /// `PATCH /drives/{id}`.
    PatchDrive(String, DriveUpdate),
    /// `PUT /network-interfaces/{id}`.
    PutNet(String, NetworkInterface),
    /// `PATCH /network-interfaces/{id}`.
    PatchNet(String, NetworkInterfaceUpdate),
    /// `PUT /vsock`.
    PutVsock(Vsock),
    /// `PUT /entropy`.
    PutEntropy(Entropy),
}

/// First path segments of the Firecracker endpoints this vmm does not serve yet (`/vm`
/// is served for `GET /vm/config` only: pause and resume are not).
const NOT_YET: &[&str] = &[
    "balloon",
    "mmds",
    "snapshot",
    "cpu-config",
    "hotplug",
    "pmem",
    "vm",
];

/// A request that maps to no [`ApiRequest`]; answered as a 400 by the API module.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A route that takes a body got none.
    #[error("the request needs a JSON body")]
    NoBody,
    /// The body is not JSON of the route's shape (unknown fields included).
    #[error("invalid JSON body: {0}")]
    Json(serde_json::Error),
    /// `/drives` or `/network-interfaces` without a single id segment.
    #[error("{method} {path}: the path needs an id: /{first}/{{id}}")]
    NeedsId {
        /// HTTP method.
        method: String,
        /// Request path (query removed).
        path: String,
        /// The path's first segment.
        first: String,
    },
    /// A Firecracker endpoint this vmm does not serve yet.
    #[error(transparent)]
    NotSupported(#[from] NotSupported),
    /// A GET with a body (Firecracker refuses them).
    #[error("GET {path}: a GET request must not have a body")]
    GetWithBody {
        /// Request path (query removed).
        path: String,
    },
    /// A PATCH whose body sets no field.
    #[error("PATCH {path}: the body sets no field (an empty PATCH request changes nothing)")]
    EmptyPatch {
        /// Request path.
        path: &'static str,
    },
    /// Any other method and path.
    #[error("invalid request method and/or path: {method} {path}")]
    Unknown {
        /// HTTP method.
        method: String,
        /// Request path (query removed).
        path: String,
    },
}

fn body<T: DeserializeOwned>(b: &[u8]) -> Result<T, RouteError> {
    if b.is_empty() {
        return Err(RouteError::NoBody);
    }
    serde_json::from_slice(b).map_err(RouteError::Json)
}

/// Parses a request.
pub fn parse(method: &str, path: &str, b: &[u8]) -> Result<ApiRequest, RouteError> {
    let path = path.split('?').next().unwrap_or("");
    let trimmed = path.trim_end_matches('/');
    let first = trimmed
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let id = || {
        trimmed
            .trim_start_matches('/')
            .split_once('/')
            .map(|(_, id)| id.to_string())
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| RouteError::NeedsId {
                method: method.to_string(),
                path: path.to_string(),
                first: first.to_string(),
            })
    };
    if method == "GET" && !b.is_empty() {
        return Err(RouteError::GetWithBody {
            path: path.to_string(),
        });
    }
    Ok(match (method, trimmed) {
        ("GET", "") => ApiRequest::GetInfo,
        ("GET", "/version") => ApiRequest::GetVersion,
        ("GET", "/machine-config") => ApiRequest::GetMachineConfig,
        ("GET", "/vm/config") => ApiRequest::GetVmConfig,
        ("PUT", "/machine-config") => ApiRequest::PutMachineConfig(body(b)?),
        ("PATCH", "/machine-config") => {
            let u: MachineConfigUpdate = body(b)?;
            if u.is_empty() {
                return Err(RouteError::EmptyPatch {
                    path: "/machine-config",
                });
            }
            ApiRequest::PatchMachineConfig(u)
        }
        ("PUT", "/boot-source") => ApiRequest::PutBootSource(body(b)?),
        ("PUT", "/logger") => ApiRequest::PutLogger(body(b)?),
        ("PUT", "/metrics") => ApiRequest::PutMetrics(body(b)?),
        ("PUT", "/actions") => ApiRequest::Action(body(b)?),
        ("PUT", "/serial") => ApiRequest::PutSerial(body(b)?),
        ("PUT", "/vsock") => ApiRequest::PutVsock(body(b)?),
        ("PUT", "/entropy") => ApiRequest::PutEntropy(body(b)?),
        ("PUT", _) if first == "drives" => ApiRequest::PutDrive(id()?, body(b)?),
        ("PATCH", _) if first == "drives" => ApiRequest::PatchDrive(id()?, body(b)?),
        ("PUT", _) if first == "network-interfaces" => ApiRequest::PutNet(id()?, body(b)?),
        ("PATCH", _) if first == "network-interfaces" => ApiRequest::PatchNet(id()?, body(b)?),
        _ if NOT_YET.contains(&first) => {
            return Err(NotSupported::new(format!("{method} {trimmed}")).into())
        }
        _ => {
            return Err(RouteError::Unknown {
                method: method.to_string(),
                path: path.to_string(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ActionType;

    #[test]
    fn routes() {
        assert!(matches!(parse("GET", "/", b""), Ok(ApiRequest::GetInfo)));
        assert!(matches!(
            parse("PUT", "/actions", br#"{"action_type":"InstanceStart"}"#),
            Ok(ApiRequest::Action(InstanceAction {
                action_type: ActionType::InstanceStart
            }))
        ));
        assert!(matches!(
            parse(
                "PUT",
                "/machine-config/",
                br#"{"vcpu_count":2,"mem_size_mib":256}"#
            ),
            Ok(ApiRequest::PutMachineConfig(_))
        ));
        assert!(matches!(
            parse("PATCH", "/machine-config", br#"{"vcpu_count":2}"#),
            Ok(ApiRequest::PatchMachineConfig(_))
        ));
        let drive = br#"{"drive_id":"rootfs","path_on_host":"/r","is_root_device":true}"#;
        assert!(matches!(
            parse("PUT", "/drives/rootfs", drive),
            Ok(ApiRequest::PutDrive(id, d)) if id == "rootfs" && d.is_root_device
        ));
        assert!(matches!(
            parse("PATCH", "/drives/rootfs", br#"{"drive_id":"rootfs","path_on_host":"/s"}"#),
            Ok(ApiRequest::PatchDrive(id, _)) if id == "rootfs"
        ));
        let net = br#"{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01"}"#;
        assert!(matches!(
            parse("PUT", "/network-interfaces/eth0", net),
            Ok(ApiRequest::PutNet(id, _)) if id == "eth0"
        ));
        assert!(matches!(
            parse("PATCH", "/network-interfaces/eth0", br#"{"iface_id":"eth0"}"#),
            Ok(ApiRequest::PatchNet(id, _)) if id == "eth0"
        ));
        assert!(matches!(
            parse("PUT", "/vsock", br#"{"vsock_id":"v","guest_cid":3,"uds_path":"/v.sock"}"#),
            Ok(ApiRequest::PutVsock(v)) if v.guest_cid == 3
        ));
        assert!(matches!(
            parse("PUT", "/entropy", b"{}"),
            Ok(ApiRequest::PutEntropy(_))
        ));
    }

    #[test]
    fn openapi_documents_every_route() {
        let doc = include_str!("../../api/openapi.yaml");
        for path in [
            "/:",
            "/version:",
            "/machine-config:",
            "/boot-source:",
            "/actions:",
            "/logger:",
            "/metrics:",
            "/vsock:",
            "/entropy:",
            "/vm/config:",
            "/drives/{drive_id}:",
            "/network-interfaces/{iface_id}:",
        ] {
            assert!(
                doc.contains(&format!("\n  {path}\n")),
                "{path} missing from openapi.yaml"
            );
            let method_path = path.trim_end_matches(':');
            let m = if ["/", "/version", "/vm/config"].contains(&method_path) {
                "GET"
            } else {
                "PUT"
            };
            let body: &[u8] = if m == "GET" { b"" } else { b"{}" };
            assert!(
                !matches!(parse(m, method_path, body), Err(e) if e.to_string().contains("invalid request"))
            );
        }
        for action in ["InstanceStart", "SendCtrlAltDel", "FlushMetrics"] {
            assert!(doc.contains(action));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("PUT", "/boot-source", b"{not json")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        assert!(parse("PUT", "/boot-source", b"")
            .unwrap_err()
            .to_string()
            .contains("JSON body"));
        assert!(parse("PUT", "/boot-source", br#"{"boot_args":"x"}"#)
            .unwrap_err()
            .to_string()
            .contains("kernel_image_path"));
        assert!(parse("DELETE", "/", b"")
            .unwrap_err()
            .to_string()
            .contains("invalid request"));
        for (m, p) in [
            ("PUT", "/balloon"),
            ("GET", "/balloon/statistics"),
            ("PUT", "/mmds"),
            ("PUT", "/mmds/config"),
            ("PUT", "/cpu-config"),
            ("PUT", "/hotplug/memory"),
            ("PUT", "/pmem/p0"),
            ("PATCH", "/vm"),
            ("PUT", "/snapshot/create"),
        ] {
            let body: &[u8] = if m == "GET" { b"" } else { b"{}" };
            assert_eq!(
                parse(m, p, body).unwrap_err().to_string(),
                format!("{m} {p} is not supported by this vmm")
            );
        }
        assert!(matches!(
            parse("GET", "/vm/config", b""),
            Ok(ApiRequest::GetVmConfig)
        ));
        assert!(parse("GET", "/machine-config", b"{}")
            .unwrap_err()
            .to_string()
            .contains("must not have a body"));
        assert!(parse("PATCH", "/machine-config", b"{}")
            .unwrap_err()
            .to_string()
            .contains("sets no field"));
        assert!(parse("PUT", "/drives/rootfs", b"{}")
            .unwrap_err()
            .to_string()
            .contains("drive_id"));
        assert!(parse(
            "PUT",
            "/drives",
            br#"{"drive_id":"x","is_root_device":false}"#
        )
        .unwrap_err()
        .to_string()
        .contains("needs an id"));
        assert!(parse("PATCH", "/drives/a/b", br#"{"drive_id":"a"}"#)
            .unwrap_err()
            .to_string()
            .contains("needs an id"));
        assert!(parse("PUT", "/vsock", br#"{"guest_cid":3}"#)
            .unwrap_err()
            .to_string()
            .contains("uds_path"));
    }
}
