//! The CloudWatch Logs operations (JSON 1.1, `X-Amz-Target: Logs_20140328.<Op>`):
//! CreateLogGroup, DescribeLogGroups, DescribeLogStreams, GetLogEvents,
//! FilterLogEvents. Every call sees only the caller's account's groups.

use super::filter::Pattern;
use super::store::{Event, LogStore, Pos, Streams};
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

/// Most bytes of messages one GetLogEvents / FilterLogEvents answer carries.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Most events FilterLogEvents examines per call (it returns a nextToken after).
pub const MAX_FILTER_SCAN: usize = 100_000;

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
    fn group_name(&self, name: Option<String>, ident: Option<String>) -> Result<String, ApiError> {
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

fn group_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log group does not exist.")
}

fn stream_not_found() -> ApiError {
    ApiError::resource_not_found("The specified log stream does not exist.")
}

fn store_err(e: rusqlite::Error) -> ApiError {
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

fn limit(v: Option<i64>, max: i64) -> Result<usize, ApiError> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

fn bad_token() -> ApiError {
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
        "GetLogEvents" => get_log_events(ctx, store, input),
        "FilterLogEvents" => filter_log_events(ctx, store, input),
        _ => Err(ApiError::unknown_operation()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetEventsInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

/// `f/<ts>/<id>` or `b/<ts>/<id>`: (forward, position).
fn parse_stream_token(t: &str) -> Option<(bool, Pos)> {
    let (fwd, rest) = match t.split_at_checked(2)? {
        ("f/", r) => (true, r),
        ("b/", r) => (false, r),
        _ => return None,
    };
    let (ts, id) = rest.split_once('/')?;
    Some((fwd, (ts.parse().ok()?, id.parse().ok()?)))
}

fn stream_token(forward: bool, p: Pos) -> String {
    format!("{}/{}/{}", if forward { "f" } else { "b" }, p.0, p.1)
}

/// Keeps the events that fit in [`MAX_RESPONSE_BYTES`] (from the front when
/// `forward`, else from the back).
fn cap_bytes(mut events: Vec<Event>, forward: bool) -> Vec<Event> {
    let mut total = 0usize;
    let keep = |e: &Event, total: &mut usize| {
        *total += e.message.len() + 26;
        *total <= MAX_RESPONSE_BYTES
    };
    if forward {
        let n = events.iter().take_while(|e| keep(e, &mut total)).count();
        events.truncate(n.max(1).min(events.len()));
    } else {
        let n = events
            .iter()
            .rev()
            .take_while(|e| keep(e, &mut total))
            .count();
        let n = n.max(1).min(events.len());
        events.drain(..events.len() - n);
    }
    events
}

fn get_log_events(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: GetEventsInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, inp.log_group_identifier)?;
    let stream = inp
        .log_stream_name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("logStreamName is required."))?;
    let n = limit(inp.limit, 10_000)?;
    let token = match inp.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(parse_stream_token(t).ok_or_else(bad_token)?),
    };
    if !store.group_exists(ctx.account, &group).map_err(store_err)? {
        return Err(group_not_found());
    }
    if !store
        .stream_exists(ctx.account, &group, &stream)
        .map_err(store_err)?
    {
        return Err(stream_not_found());
    }
    let (forward, pos) = token.unwrap_or(if inp.start_from_head.unwrap_or(false) {
        (true, (i64::MIN, i64::MIN))
    } else {
        (false, (i64::MAX, i64::MAX))
    });
    let (start, end) = (
        inp.start_time.unwrap_or(i64::MIN),
        inp.end_time.unwrap_or(i64::MAX),
    );
    let events = store
        .stream_events(ctx.account, &group, &stream, start, end, pos, forward, n)
        .map_err(store_err)?;
    let events = cap_bytes(events, forward);
    let (fwd, back) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (
            stream_token(true, last.pos()),
            stream_token(false, first.pos()),
        ),
        // Nothing (more) in this direction: the same position again, so a reader
        // polling with nextForwardToken sees the events that arrive later.
        _ => (stream_token(true, pos), stream_token(false, pos)),
    };
    let out: Vec<Value> = events
        .iter()
        .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}))
        .collect();
    Ok(json!({"events": out, "nextForwardToken": fwd, "nextBackwardToken": back}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

fn filter_log_events(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: FilterInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, inp.log_group_identifier)?;
    let n = limit(inp.limit, 10_000)?;
    let names = inp.log_stream_names.unwrap_or_default();
    let prefix = inp.log_stream_name_prefix.unwrap_or_default();
    if !names.is_empty() && !prefix.is_empty() {
        return Err(ApiError::invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if names.len() > 100 {
        return Err(ApiError::invalid("At most 100 logStreamNames."));
    }
    let streams = if !names.is_empty() {
        Streams::Names(&names)
    } else if !prefix.is_empty() {
        Streams::Prefix(&prefix)
    } else {
        Streams::All
    };
    let pattern = Pattern::parse(inp.filter_pattern.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid(format!("Invalid filter pattern: {e}")))?;
    let mut pos: Pos = match inp.next_token.as_deref() {
        None | Some("") => (i64::MIN, i64::MIN),
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (a, b) = s.split_once('/')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .ok_or_else(bad_token)?,
    };
    if !store.group_exists(ctx.account, &group).map_err(store_err)? {
        return Err(group_not_found());
    }
    let (start, end) = (
        inp.start_time.unwrap_or(i64::MIN),
        inp.end_time.unwrap_or(i64::MAX),
    );
    let (mut out, mut bytes, mut scanned) = (Vec::new(), 0usize, 0usize);
    let mut more = false;
    'scan: loop {
        const PAGE: usize = 1000;
        let rows = store
            .group_events(ctx.account, &group, &streams, start, end, pos, PAGE)
            .map_err(store_err)?;
        let last_page = rows.len() < PAGE;
        for e in rows {
            if out.len() == n || bytes >= MAX_RESPONSE_BYTES || scanned == MAX_FILTER_SCAN {
                more = true;
                break 'scan;
            }
            scanned += 1;
            pos = e.pos();
            if pattern.matches(&e.message) {
                bytes += e.message.len() + 64;
                out.push(json!({"logStreamName": e.stream, "timestamp": e.timestamp,
                    "message": e.message, "ingestionTime": e.ingestion_time,
                    "eventId": format!("{:020}", e.id)}));
            }
        }
        if last_page {
            break;
        }
    }
    let token = more.then(|| hex::encode(format!("{}/{}", pos.0, pos.1)));
    Ok(json!({"events": out, "nextToken": token}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        let t = stream_token(true, (1700000000000, 42));
        assert_eq!(parse_stream_token(&t), Some((true, (1700000000000, 42))));
        let t = stream_token(false, (i64::MIN, i64::MIN));
        assert_eq!(parse_stream_token(&t), Some((false, (i64::MIN, i64::MIN))));
        assert_eq!(parse_stream_token("x/1/2"), None);
        assert_eq!(parse_stream_token("f/1"), None);
        assert_eq!(parse_stream_token("é"), None);
        assert!(is_valid_group_name("/ecs/web-app_1#x.y"));
        assert!(!is_valid_group_name("a b") && !is_valid_group_name(""));
    }
}
