//! The managing operations of the CloudWatch Logs API: DeleteLogGroup,
//! DeleteLogStream, PutRetentionPolicy and DeleteRetentionPolicy.

use super::common::{decode, group_not_found, store_err, stream_name, stream_not_found, LogsCtx};
use super::store::LogStore;
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// The retention periods (days) CloudWatch Logs accepts.
pub const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupInput {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    retention_in_days: Option<i64>,
}

pub fn delete_log_group(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: GroupInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    if !store.delete_group(ctx.account, &group).map_err(store_err)? {
        return Err(group_not_found());
    }
    Ok(json!({}))
}

pub fn delete_log_stream(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: GroupInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    let stream = stream_name(inp.log_stream_name)?;
    if !store.group_exists(ctx.account, &group).map_err(store_err)? {
        return Err(group_not_found());
    }
    if !store
        .delete_stream(ctx.account, &group, &stream)
        .map_err(store_err)?
    {
        return Err(stream_not_found());
    }
    Ok(json!({}))
}

pub fn put_retention_policy(
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: GroupInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    let days = inp
        .retention_in_days
        .ok_or_else(|| ApiError::invalid("retentionInDays is required."))?;
    if !RETENTION_DAYS.contains(&days) {
        let allowed: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        )));
    }
    if !store
        .set_retention(ctx.account, &group, Some(days))
        .map_err(store_err)?
    {
        return Err(group_not_found());
    }
    Ok(json!({}))
}

pub fn delete_retention_policy(
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: GroupInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    if !store
        .set_retention(ctx.account, &group, None)
        .map_err(store_err)?
    {
        return Err(group_not_found());
    }
    Ok(json!({}))
}
