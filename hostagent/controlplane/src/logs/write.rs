//! The writing operations of the CloudWatch Logs API: CreateLogStream and
//! PutLogEvents, with the batch limits CloudWatch documents. Sequence tokens are
//! accepted and ignored, as CloudWatch does now.

use super::common::{decode, group_not_found, store_err, stream_name, stream_not_found, LogsCtx};
use super::ingest::{MAX_AGE_MS, MAX_FUTURE_MS};
use super::store::{AppendError, Create, LogStore};
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most bytes of one PutLogEvents batch (messages in UTF-8 plus [`EVENT_OVERHEAD`]
/// each).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes counted per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Most events of one PutLogEvents batch.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Widest span of timestamps in one batch (24 hours).
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamInput {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
}

pub fn create_log_stream(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: StreamInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    let stream = stream_name(inp.log_stream_name)?;
    match store
        .create_stream(ctx.account, &group, &stream, ctx.now_ms)
        .map_err(store_err)?
    {
        None => Err(group_not_found()),
        Some(false) => Err(ApiError::resource_already_exists(
            "The specified log stream already exists",
        )),
        Some(true) => Ok(json!({})),
    }
}

#[derive(Deserialize)]
struct InputEvent {
    timestamp: i64,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutInput {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    log_events: Option<Vec<InputEvent>>,
    #[allow(dead_code)]
    sequence_token: Option<String>,
}

/// Checks a batch against the limits that fail the whole call.
fn check_batch(events: &[InputEvent]) -> Result<(), ApiError> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length between 1 and {MAX_BATCH_EVENTS}"
        )));
    }
    if events.iter().any(|e| e.message.is_empty()) {
        return Err(ApiError::invalid(
            "1 validation error detected: Value at 'logEvents.member.message' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD)
        .sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(ApiError::invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(ApiError::invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        if last.timestamp.saturating_sub(first.timestamp) > MAX_BATCH_SPAN_MS {
            return Err(ApiError::invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
    }
    Ok(())
}

/// The accepted range of a sorted batch and the `rejectedLogEventsInfo` for the
/// rest (too old, expired by the group's retention, too new).
fn split(events: &[InputEvent], now: i64, retained_from: i64) -> (usize, usize, Option<Value>) {
    let too_old = events
        .iter()
        .take_while(|e| e.timestamp < now - MAX_AGE_MS)
        .count();
    let expired = events
        .iter()
        .take_while(|e| e.timestamp < retained_from)
        .count();
    let too_new = events
        .iter()
        .position(|e| e.timestamp > now + MAX_FUTURE_MS)
        .unwrap_or(events.len());
    let mut info = serde_json::Map::new();
    if too_old > 0 {
        info.insert("tooOldLogEventEndIndex".into(), json!(too_old));
    }
    if expired > 0 {
        info.insert("expiredLogEventEndIndex".into(), json!(expired));
    }
    if too_new < events.len() {
        info.insert("tooNewLogEventStartIndex".into(), json!(too_new));
    }
    let from = too_old.max(expired).min(too_new);
    (
        from,
        too_new,
        (!info.is_empty()).then_some(Value::Object(info)),
    )
}

pub fn put_log_events(ctx: &LogsCtx<'_>, store: &LogStore, v: Value) -> Result<Value, ApiError> {
    let inp: PutInput = decode(v)?;
    let group = ctx.group_name(inp.log_group_name, None)?;
    let stream = stream_name(inp.log_stream_name)?;
    let events = inp.log_events.unwrap_or_default();
    check_batch(&events)?;
    let retained_from = store
        .retained_from(ctx.account, &group, ctx.now_ms)
        .map_err(store_err)?
        .ok_or_else(group_not_found)?;
    let (from, to, rejected) = split(&events, ctx.now_ms, retained_from);
    let batch: Vec<(i64, String)> = events
        .into_iter()
        .skip(from)
        .take(to - from)
        .map(|e| (e.timestamp, e.message))
        .collect();
    if batch.is_empty() {
        if !store
            .stream_exists(ctx.account, &group, &stream)
            .map_err(store_err)?
        {
            return Err(stream_not_found());
        }
    } else {
        match store.append(
            ctx.account,
            &group,
            &stream,
            &batch,
            Create::Nothing,
            ctx.now_ms,
        ) {
            Ok(_) => {}
            Err(AppendError::NoGroup) => return Err(group_not_found()),
            Err(AppendError::NoStream) => return Err(stream_not_found()),
            Err(AppendError::Store(e)) => return Err(store_err(e)),
        }
    }
    let mut out = json!({});
    if let Some(r) = rejected {
        out["rejectedLogEventsInfo"] = r;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: &[i64]) -> Vec<InputEvent> {
        ts.iter()
            .map(|t| InputEvent {
                timestamp: *t,
                message: "m".into(),
            })
            .collect()
    }

    #[test]
    fn batch_limits() {
        assert!(check_batch(&ev(&[])).is_err());
        assert!(check_batch(&ev(&[2, 1])).is_err(), "out of order");
        assert!(check_batch(&ev(&[0, MAX_BATCH_SPAN_MS + 1])).is_err());
        assert!(check_batch(&ev(&[0, MAX_BATCH_SPAN_MS])).is_ok());
        assert!(check_batch(&ev(&vec![5; MAX_BATCH_EVENTS + 1])).is_err());
        let per = MAX_BATCH_BYTES / 2 - EVENT_OVERHEAD;
        let big = |n: usize| {
            vec![
                InputEvent {
                    timestamp: 0,
                    message: "x".repeat(per),
                },
                InputEvent {
                    timestamp: 0,
                    message: "x".repeat(n),
                },
            ]
        };
        assert!(check_batch(&big(per)).is_ok(), "exactly the limit");
        assert!(check_batch(&big(per + 1)).is_err(), "one byte over");
    }

    #[test]
    fn split_reports_rejected_ranges() {
        let now = 100 * MAX_AGE_MS;
        let e = ev(&[now - MAX_AGE_MS - 1, now - 10, now, now + MAX_FUTURE_MS + 1]);
        let (from, to, info) = split(&e, now, i64::MIN);
        assert_eq!((from, to), (1, 3));
        assert_eq!(
            info.unwrap(),
            json!({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 3})
        );
        let (from, to, info) = split(&e, now, now - 5);
        assert_eq!((from, to), (2, 3));
        assert_eq!(info.unwrap()["expiredLogEventEndIndex"], 2);
        let (from, to, info) = split(&ev(&[now]), now, i64::MIN);
        assert_eq!((from, to, info), (0, 1, None));
    }
}
