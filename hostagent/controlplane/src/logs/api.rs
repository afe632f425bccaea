//! The CloudWatch Logs operations (JSON 1.1, `X-Amz-Target: Logs_20140328.<Op>`):
//! CreateLogGroup, DescribeLogGroups, DescribeLogStreams, GetLogEvents,
//! FilterLogEvents. Every call sees only the caller's account's groups.

use super::store::LogStore;
use crate::frontend::errors::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// The operations implemented.
pub const OPERATIONS: &[&str] = &[
    "CreateLogGroup",
    "DescribeLogGroups",
    "DescribeLogStreams",
    "GetLogEvents",
    "FilterLogEvents",
];

/// Who is calling.
pub struct LogsCtx<'a> {
    /// Caller's account.
    pub account: &'a str,
    /// Region.
    pub region: &'a str,
    /// Now, ms since the Unix epoch.
    pub now_ms: i64,
}

impl LogsCtx<'_> {
    fn group_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{name}",
            self.region, self.account
        )
    }

    /// The group name of a `logGroupName` or `logGroupIdentifier` (name or ARN).
    pub(super) fn group_name(
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

pub(super) fn group_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log group does not exist.")
}

pub(super) fn stream_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log stream does not exist.")
}

pub(super) fn store_err(e: rusqlite::Error) -> ApiError {
    tracing::error!("log store: {e}");
    ApiError::service_unavailable("The log store is unavailable.")
}

/// Whether `s` is a valid log group name (1-512 of `[.-_/#A-Za-z0-9]`).
pub fn is_valid_group_name(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
}

fn check_group_name(s: &str) -> Result<(), ApiError> {
    if is_valid_group_name(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{s}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

pub(super) fn limit(v: Option<i64>, max: i64) -> Result<usize, ApiError> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

pub(super) fn bad_token() -> ApiError {
    ApiError::invalid("The specified nextToken is invalid.")
}

/// Runs one operation by name.
pub fn dispatch(
    op: &str,
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    input: Value,
) -> Result<Value, ApiError> {
    match op {
        "CreateLogGroup" => create_log_group(ctx, store, input),
        "DescribeLogGroups" => describe_log_groups(ctx, store, input),
        "DescribeLogStreams" => describe_log_streams(ctx, store, input),
        "GetLogEvents" => super::read::get_log_events(ctx, store, input),
        "FilterLogEvents" => super::read::filter_log_events(ctx, store, input),
        _ => Err(ApiError::unknown_operation()),
    }
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::serialization(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    log_group_name: Option<String>,
}

fn create_log_group(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: CreateInput = decode(v)?;
    let name = inp
        .log_group_name
        .ok_or_else(|| ApiError::invalid("logGroupName is required."))?;
    check_group_name(&name)?;
    if !store
        .create_group(ctx.account, &name, ctx.now_ms)
        .map_err(store_err)?
    {
        return Err(ApiError::resource_already_exists(
            "The specified log group already exists",
        ));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeGroupsInput {
    log_group_name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

fn describe_log_groups(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeGroupsInput = decode(v)?;
    let n = limit(inp.limit, 50)?;
    let after = match inp.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad_token)?,
        ),
    };
    let prefix = inp.log_group_name_prefix.unwrap_or_default();
    let mut groups = store
        .groups(ctx.account, &prefix, after.as_deref(), n + 1)
        .map_err(store_err)?;
    let more = groups.len() > n;
    groups.truncate(n);
    let token = more
        .then(|| groups.last().map(|g| hex::encode(&g.name)))
        .flatten();
    let out: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({"logGroupName": g.name, "creationTime": g.created,
                   "metricFilterCount": 0, "storedBytes": g.stored_bytes,
                   "arn": format!("{}:*", ctx.group_arn(&g.name)),
                   "logGroupArn": ctx.group_arn(&g.name),
                   "logGroupClass": "STANDARD"})
        })
        .collect();
    Ok(json!({"logGroups": out, "nextToken": token}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeStreamsInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    next_token: Option<String>,
    limit: Option<i64>,
}

fn describe_log_streams(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: DescribeStreamsInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, inp.log_group_identifier)?;
    let n = limit(inp.limit, 50)?;
    let by_last = match inp.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "Invalid orderBy '{o}': LogStreamName or LastEventTime."
            )))
        }
    };
    let prefix = inp.log_stream_name_prefix.unwrap_or_default();
    if by_last && !prefix.is_empty() {
        return Err(ApiError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let offset = match inp.next_token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("o")
            .and_then(|o| o.parse::<usize>().ok())
            .ok_or_else(bad_token)?,
    };
    if !store.group_exists(ctx.account, &group).map_err(store_err)? {
        return Err(group_not_found());
    }
    let mut streams = store
        .streams(
            ctx.account,
            &group,
            &prefix,
            by_last,
            inp.descending.unwrap_or(false),
            offset,
            n + 1,
        )
        .map_err(store_err)?;
    let more = streams.len() > n;
    streams.truncate(n);
    let arn = ctx.group_arn(&group);
    let out: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({"logStreamName": s.name, "creationTime": s.created,
                   "firstEventTimestamp": s.first_ts, "lastEventTimestamp": s.last_ts,
                   "lastIngestionTime": s.last_ingest, "storedBytes": s.stored_bytes,
                   "arn": format!("{arn}:log-stream:{}", s.name)})
        })
        .collect();
    let token = more.then(|| format!("o{}", offset + n));
    Ok(json!({"logStreams": out, "nextToken": token}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        assert!(is_valid_group_name("/ecs/web-app_1#x.y"));
        assert!(!is_valid_group_name("a b") && !is_valid_group_name(""));
    }
}
