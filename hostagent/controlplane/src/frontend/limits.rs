//! Bounds on a request body, checked before it is parsed: its size (per operation)
//! and its JSON nesting depth (a linear scan of the bytes, before serde sees them).
//!
//! | operation                                  | largest body |
//! | ------------------------------------------ | ------------ |
//! | `RegisterTaskDefinition`                   | 64 KiB (ECS's task definition limit) |
//! | `RunTask`, `CreateService`, `UpdateService`| 64 KiB       |
//! | other ECS operations                       | 32 KiB       |
//! | CloudWatch Logs operations                 | 1 MiB + 64 KiB (a `PutLogEvents` batch is at most 1 MiB) |
//!
//! Every body: at most [`MAX_DEPTH`] nested arrays and objects. The deepest body an ECS
//! operation takes (`containerDefinitions[].linuxParameters.devices[].permissions[]`) is
//! 6 levels; the depth bound is what keeps every stored record far below serde_json's
//! own recursion limit (128) when it is read back.

use crate::error::ApiError;
use axum::body::{to_bytes, Body, Bytes};
use axum::http::HeaderMap;
use serde_json::Value;

/// The deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 32;
/// `RegisterTaskDefinition` (ECS: a task definition is at most 64 KiB).
pub const TASK_DEFINITION_BODY: usize = 64 * 1024;
/// `RunTask`, `CreateService`, `UpdateService` (tags, overrides, network).
pub const LAUNCH_BODY: usize = 64 * 1024;
/// Any other ECS operation (lists of at most 100 ARNs).
pub const OTHER_BODY: usize = 32 * 1024;
/// CloudWatch Logs operations (`PutLogEvents`: 1 MiB of events, plus JSON framing).
pub const LOGS_BODY: usize = 1024 * 1024 + 64 * 1024;

/// The largest body the operation named by an `X-Amz-Target` may have.
pub fn max_body(target: &str) -> usize {
    if target.starts_with(super::LOGS_TARGET_PREFIX) {
        return LOGS_BODY;
    }
    match target.strip_prefix(super::TARGET_PREFIX) {
        Some("RegisterTaskDefinition") => TASK_DEFINITION_BODY,
        Some("RunTask" | "CreateService" | "UpdateService") => LAUNCH_BODY,
        _ => OTHER_BODY,
    }
}

fn too_large(target: &str, limit: usize) -> ApiError {
    let op = target.rsplit('.').next().unwrap_or("this operation");
    ApiError::client(format!(
        "The request body exceeds {limit} bytes, the most {op} accepts."
    ))
}

/// Reads a body of at most the operation's bound (refused from its `Content-Length`
/// before reading, or once the bound is passed) and checks its nesting depth.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let limit = max_body(target);
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(target, limit));
    }
    // Without a Content-Length (chunked), the bound is met while reading; an error
    // here is that, or a body that could not be read at all.
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        let mut e = too_large(target, limit);
        e.message.push_str(" (or the body could not be read)");
        e
    })?;
    check_depth(&bytes)?;
    Ok(bytes)
}

/// Refuses a body nested deeper than [`MAX_DEPTH`]: counts the brackets outside
/// strings, in one pass, without parsing.
pub fn check_depth(body: &[u8]) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ApiError::serialization(format!(
                        "The request body nests arrays and objects deeper than {MAX_DEPTH} levels."
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a body already bounded: a JSON object (an empty body is `{}`); the nesting
/// depth is checked again here so that callers outside the HTTP path get the same rule.
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    check_depth(body)?;
    let input: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("Malformed JSON body: {e}")))?;
    if !input.is_object() {
        return Err(ApiError::serialization(
            "The request body must be a JSON object.",
        ));
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_is_counted_outside_strings() {
        assert!(check_depth(nested(MAX_DEPTH).as_bytes()).is_ok());
        let e = check_depth(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        let s = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_depth(s.as_bytes()).is_ok());
        assert!(check_depth(nested(1000).as_bytes()).is_err());
    }

    #[test]
    fn bounds_per_operation() {
        assert_eq!(
            max_body("AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition"),
            65536
        );
        assert_eq!(
            max_body("AmazonEC2ContainerServiceV20141113.ListTasks"),
            32768
        );
        assert_eq!(max_body("Logs_20140328.PutLogEvents"), LOGS_BODY);
        assert_eq!(max_body(""), OTHER_BODY);
    }

    #[test]
    fn parse_wants_an_object() {
        assert!(parse(b"").unwrap().is_object());
        assert_eq!(parse(b"[1]").unwrap_err().kind, "SerializationException");
        assert_eq!(parse(b"{").unwrap_err().kind, "SerializationException");
    }
}
