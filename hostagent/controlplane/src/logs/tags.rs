//! Log group tags: TagLogGroup, UntagLogGroup, ListTagsLogGroup (by name) and
//! TagResource, UntagResource, ListTagsForResource (by log group ARN), with the
//! limits CloudWatch Logs documents (50 tags, keys 1-128 and values 0-256
//! characters of letters, digits, spaces and `_.:/=+-@`, no `aws:` keys).

use super::common::{check_group_name, decode, group_not_found, store_err, LogsCtx};
use super::manage::TagOutcome;
use super::store::LogStore;
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most tags on one log group.
pub const MAX_TAGS: usize = 50;

fn tag_chars_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

fn check_key(k: &str) -> Result<(), ApiError> {
    let n = k.chars().count();
    if !(1..=128).contains(&n) || !tag_chars_ok(k) {
        return Err(ApiError::invalid(
            "1 validation error detected: a tag key failed to satisfy constraint: Member must have length between 1 and 128 and satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+)$",
        ));
    }
    if k.starts_with("aws:") {
        return Err(ApiError::invalid(
            "Tag keys starting with aws: are reserved.",
        ));
    }
    Ok(())
}

/// Checks the tags of a create or tag call.
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS}"
        )));
    }
    for (k, v) in tags {
        check_key(k)?;
        if v.chars().count() > 256 || !tag_chars_ok(v) {
            return Err(ApiError::invalid(
                "1 validation error detected: a tag value failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
            ));
        }
    }
    Ok(())
}

/// Applies a tag change to a group of the caller's account.
pub(crate) fn apply(
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    group: &str,
    add: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<(), ApiError> {
    check_tags(add)?;
    for k in remove {
        check_key(k)?;
    }
    match store
        .update_tags(ctx.account, group, add, remove, MAX_TAGS)
        .map_err(store_err)?
    {
        TagOutcome::Done => Ok(()),
        TagOutcome::NoGroup => Err(group_not_found()),
        TagOutcome::TooMany => Err(ApiError::invalid(format!(
            "A log group can have at most {MAX_TAGS} tags."
        ))),
    }
}

fn list(ctx: &LogsCtx<'_>, store: &LogStore, group: &str) -> Result<Value, ApiError> {
    let tags = store
        .tags(ctx.account, group)
        .map_err(store_err)?
        .ok_or_else(group_not_found)?;
    Ok(json!({ "tags": tags }))
}

/// The group name in a log group ARN of the caller's account and region.
fn arn_group(ctx: &LogsCtx<'_>, arn: Option<String>) -> Result<String, ApiError> {
    let arn = arn.ok_or_else(|| ApiError::invalid("resourceArn is required."))?;
    if !arn.starts_with("arn:aws:logs:") {
        return Err(ApiError::invalid("The specified resourceArn is not valid."));
    }
    let p = format!("arn:aws:logs:{}:{}:log-group:", ctx.region, ctx.account);
    let rest = arn.strip_prefix(&p).ok_or_else(group_not_found)?;
    let name = rest.strip_suffix(":*").unwrap_or(rest);
    check_group_name(name).map_err(|_| group_not_found())?;
    Ok(name.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagInput {
    log_group_name: Option<String>,
    resource_arn: Option<String>,
    tags: Option<Value>,
    tag_keys: Option<Vec<String>>,
}

fn tag_map(v: Option<Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let m: BTreeMap<String, String> = decode(v.unwrap_or(Value::Null))?;
    if m.is_empty() {
        return Err(ApiError::invalid("tags must have at least 1 entry."));
    }
    Ok(m)
}

fn tag_list(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let l: Vec<String> = decode(v.unwrap_or(Value::Null))?;
    if l.is_empty() || l.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: the tag key list must have between 1 and {MAX_TAGS} members"
        )));
    }
    Ok(l)
}

pub fn tag_log_group(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    apply(ctx, store, &group, &tag_map(inp.tags)?, &[])?;
    Ok(json!({}))
}

pub fn untag_log_group(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    // UntagLogGroup names the keys in `tags` (a list).
    apply(ctx, store, &group, &BTreeMap::new(), &tag_list(inp.tags)?)?;
    Ok(json!({}))
}

pub fn list_tags_log_group(
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    list(ctx, store, &group)
}

pub fn tag_resource(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = arn_group(ctx, inp.resource_arn)?;
    apply(ctx, store, &group, &tag_map(inp.tags)?, &[])?;
    Ok(json!({}))
}

pub fn untag_resource(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = arn_group(ctx, inp.resource_arn)?;
    let keys = tag_list(inp.tag_keys.map(|k| json!(k)))?;
    apply(ctx, store, &group, &BTreeMap::new(), &keys)?;
    Ok(json!({}))
}

pub fn list_tags_for_resource(
    ctx: &LogsCtx<'_>,
    store: &LogStore,
    v: Value,
) -> Result<Value, ApiError> {
    let inp: TagInput = decode(v)?;
    let group = arn_group(ctx, inp.resource_arn)?;
    list(ctx, store, &group)
}
