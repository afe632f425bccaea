//! The reading operations of the CloudWatch Logs API: GetLogEvents (one stream,
//! forward/backward tokens) and FilterLogEvents (a group's streams, filter pattern).

use super::common::{
    bad_token, decode, group_not_found, limit, store_err, stream_not_found, LogsCtx,
};
use super::filter::Pattern;
use super::store::{Event, LogStore, Pos, Streams};
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most bytes of messages one GetLogEvents / FilterLogEvents answer carries.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Most events FilterLogEvents examines per call (it returns a nextToken after).
pub const MAX_FILTER_SCAN: usize = 100_000;

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

pub fn get_log_events(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
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
    let retained_from = store
        .retained_from(ctx.account, &group, ctx.now_ms)
        .map_err(store_err)?
        .ok_or_else(group_not_found)?;
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
    // Events older than the group's retention are not returned (the sweep deletes
    // them later).
    let (start, end) = (
        inp.start_time.unwrap_or(i64::MIN).max(retained_from),
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

pub fn filter_log_events(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
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
    let retained_from = store
        .retained_from(ctx.account, &group, ctx.now_ms)
        .map_err(store_err)?
        .ok_or_else(group_not_found)?;
    // Events older than the group's retention are not returned (the sweep deletes
    // them later).
    let (start, end) = (
        inp.start_time.unwrap_or(i64::MIN).max(retained_from),
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
    }
}
