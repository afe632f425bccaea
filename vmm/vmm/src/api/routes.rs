//! Maps HTTP method + path + body to an API request (Firecracker's routes and bodies).

use crate::config::{
    BootSource, InstanceAction, LoggerConfig, MachineConfig, MachineConfigUpdate, MetricsConfig,
    SerialConfig,
};
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
}

/// Endpoints Firecracker has that this vmm does not serve yet.
const NOT_YET: &[&str] = &[
    "drives",
    "network-interfaces",
    "vsock",
    "entropy",
    "balloon",
    "mmds",
    "snapshot",
    "cpu-config",
    "hotplug",
];

fn body<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    if b.is_empty() {
        return Err("the request needs a JSON body".into());
    }
    serde_json::from_slice(b).map_err(|e| format!("invalid JSON body: {e}"))
}

/// Parses a request; the error is the fault message of a 400.
pub fn parse(method: &str, path: &str, b: &[u8]) -> Result<ApiRequest, String> {
    let path = path.split('?').next().unwrap_or("");
    let trimmed = path.trim_end_matches('/');
    let first = trimmed
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    Ok(match (method, trimmed) {
        ("GET", "") => ApiRequest::GetInfo,
        ("GET", "/version") => ApiRequest::GetVersion,
        ("GET", "/machine-config") => ApiRequest::GetMachineConfig,
        ("PUT", "/machine-config") => ApiRequest::PutMachineConfig(body(b)?),
        ("PATCH", "/machine-config") => ApiRequest::PatchMachineConfig(body(b)?),
        ("PUT", "/boot-source") => ApiRequest::PutBootSource(body(b)?),
        ("PUT", "/logger") => ApiRequest::PutLogger(body(b)?),
        ("PUT", "/metrics") => ApiRequest::PutMetrics(body(b)?),
        ("PUT", "/actions") => ApiRequest::Action(body(b)?),
        ("PUT", "/serial") => ApiRequest::PutSerial(body(b)?),
        _ if NOT_YET.contains(&first) => {
            return Err(format!(
                "{method} {path}: /{first} is not supported by this vmm yet"
            ))
        }
        _ => {
            return Err(format!(
                "invalid request method and/or path: {method} {path}"
            ))
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
        ] {
            assert!(
                doc.contains(&format!("\n  {path}\n")),
                "{path} missing from openapi.yaml"
            );
            let method_path = path.trim_end_matches(':');
            let m = if method_path == "/" || method_path == "/version" {
                "GET"
            } else {
                "PUT"
            };
            assert!(
                !matches!(parse(m, method_path, b"{}"), Err(e) if e.contains("invalid request"))
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
            .contains("invalid JSON"));
        assert!(parse("PUT", "/boot-source", b"")
            .unwrap_err()
            .contains("JSON body"));
        assert!(parse("PUT", "/boot-source", br#"{"boot_args":"x"}"#)
            .unwrap_err()
            .contains("kernel_image_path"));
        assert!(parse("DELETE", "/", b"")
            .unwrap_err()
            .contains("invalid request"));
        assert!(parse("PUT", "/drives/rootfs", b"{}")
            .unwrap_err()
            .contains("not supported"));
    }
}
