//! The CloudWatch Logs operations (JSON 1.1, `X-Amz-Target: Logs_20140328.<Op>`):
//! the operation table (group, stream, event, retention and tag operations; see
//! [`OPERATIONS`]) and the group/stream listing operations. Every call sees only
//! the caller's account's groups.

use super::common::{
    bad_token, check_group_name, decode, group_not_found, limit, store_err, LogsCtx,
};
use super::store::LogStore;
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// A CloudWatch Logs operation: the caller, its cell's log store and the JSON input
/// give the JSON output.
type Handler = fn(&LogsCtx<'_>, &LogStore, Value) -> Result<Value, ApiError>;

/// The operations implemented, by name. It drives both [`dispatch`] and [`is_known`].
const OPERATIONS: &[(&str, Handler)] = &[
    ("CreateLogGroup", create_log_group),
    ("DescribeLogGroups", describe_log_groups),
    ("DescribeLogStreams", describe_log_streams),
    ("GetLogEvents", super::read::get_log_events),
    ("FilterLogEvents", super::read::filter_log_events),
    ("CreateLogStream", super::write::create_log_stream),
    ("PutLogEvents", super::write::put_log_events),
    ("DeleteLogGroup", super::admin::delete_log_group),
    ("DeleteLogStream", super::admin::delete_log_stream),
    ("PutRetentionPolicy", super::admin::put_retention_policy),
    (
        "DeleteRetentionPolicy",
        super::admin::delete_retention_policy,
    ),
    ("TagLogGroup", super::tags::tag_log_group),
    ("UntagLogGroup", super::tags::untag_log_group),
    ("ListTagsLogGroup", super::tags::list_tags_log_group),
    ("TagResource", super::tags::tag_resource),
    ("UntagResource", super::tags::untag_resource),
    ("ListTagsForResource", super::tags::list_tags_for_resource),
];

fn handler(op: &str) -> Option<Handler> {
    OPERATIONS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, h)| *h)
}

/// Whether `op` is an implemented operation.
pub fn is_known(op: &str) -> bool {
    handler(op).is_some()
}

/// The error for an operation not served here, naming it (cut to 100 printable
/// ASCII characters: it comes from a header).
pub fn unknown(op: &str) -> ApiError {
    let name: String = op
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect();
    ApiError::unknown_operation(format!(
        "Unknown operation {name}: this control plane does not serve it."
    ))
}

/// Runs one operation by name.
pub fn dispatch(
    op: &str,
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    input: Value,
) -> Result<Value, ApiError> {
    match handler(op) {
        Some(h) => h(ctx, store, input),
        None => Err(unknown(op)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    log_group_name: Option<String>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

fn create_log_group(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: CreateInput = decode(v)?;
    let name = inp
        .log_group_name
        .ok_or_else(|| ApiError::invalid("logGroupName is required."))?;
    check_group_name(&name)?;
    let tags = inp.tags.unwrap_or_default();
    super::tags::check_tags(&tags)?;
    if !store
        .create_group(ctx.account, &name, ctx.now_ms)
        .map_err(store_err)?
    {
        return Err(ApiError::resource_already_exists(
            "The specified log group already exists",
        ));
    }
    if !tags.is_empty() {
        super::tags::apply(ctx, store, &name, &tags, &[])?;
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
                   "logGroupClass": "STANDARD", "retentionInDays": g.retention_days})
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
