//! What the CloudWatch Logs operations share: the caller's context, input
//! decoding, the `limit` check and the errors they return.

use crate::error::ApiError;
use serde_json::Value;

/// Who is calling.
pub struct LogsCtx<'a> {
    /// Caller's account.
    pub account: &'a str,
    /// The region named in log group ARNs.
    pub region: &'a str,
    /// Now, ms since the Unix epoch.
    pub now_ms: i64,
}

impl LogsCtx<'_> {
    pub(crate) fn group_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{name}",
            self.region, self.account
        )
    }

    /// The group name of a `logGroupName` or `logGroupIdentifier` (name or ARN).
    pub(crate) fn group_name(
        &self,
        name: Option<String>,
        ident: Option<String>,
    ) -> Result<String, ApiError> {
        let v = match (name, ident) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
                ))
            }
            (Some(n), None) => n,
            (None, Some(i)) => match i.strip_prefix("arn:") {
                None => i,
                Some(_) => {
                    let p = format!("arn:aws:logs:{}:{}:log-group:", self.region, self.account);
                    let rest = i.strip_prefix(&p).ok_or_else(group_not_found)?;
                    rest.strip_suffix(":*").unwrap_or(rest).to_string()
                }
            },
            (None, None) => {
                return Err(ApiError::invalid(
                    "Should provide either name or ARN of the log group.",
                ))
            }
        };
        check_group_name(&v)?;
        Ok(v)
    }
}

pub(crate) fn group_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log group does not exist.")
}

pub(crate) fn stream_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log stream does not exist.")
}

pub(crate) fn store_err(e: rusqlite::Error) -> ApiError {
    tracing::error!("log store: {e}");
    ApiError::service_unavailable("The log store is unavailable.")
}

/// Whether `s` is a valid log group name (1-512 of `[.-_/#A-Za-z0-9]`).
pub fn is_valid_group_name(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
}

pub(crate) fn check_group_name(s: &str) -> Result<(), ApiError> {
    if is_valid_group_name(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{s}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

/// Whether `s` is a valid log stream name (1-512 bytes, no `:` or `*`).
pub fn is_valid_stream_name(s: &str) -> bool {
    (1..=512).contains(&s.len()) && !s.contains([':', '*'])
}

pub(crate) fn check_stream_name(s: &str) -> Result<(), ApiError> {
    if is_valid_stream_name(s) {
        Ok(())
    } else {
        let shown: String = s.chars().take(600).collect();
        Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{shown}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]* and have length between 1 and 512"
        )))
    }
}

/// The stream name of an input (required).
pub(crate) fn stream_name(v: Option<String>) -> Result<String, ApiError> {
    let s = v.ok_or_else(|| ApiError::invalid("logStreamName is required."))?;
    check_stream_name(&s)?;
    Ok(s)
}

pub(crate) fn limit(v: Option<i64>, max: i64) -> Result<usize, ApiError> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

pub(crate) fn bad_token() -> ApiError {
    ApiError::invalid("The specified nextToken is invalid.")
}

/// Decodes an operation's input.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::serialization(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        assert!(is_valid_group_name("/ecs/web-app_1#x.y"));
        assert!(!is_valid_group_name("a b") && !is_valid_group_name(""));
        assert!(is_valid_stream_name("app/web/0123 x"));
        assert!(!is_valid_stream_name("a:b") && !is_valid_stream_name("a*"));
        assert!(!is_valid_stream_name("") && !is_valid_stream_name(&"x".repeat(513)));
    }
}
