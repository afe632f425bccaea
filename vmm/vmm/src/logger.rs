//! Logging through tracing: level and destination set by flags or `PUT /logger`.

use crate::sync::lock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

static LEVEL: AtomicU8 = AtomicU8::new(2);
static TARGET: Mutex<Option<File>> = Mutex::new(None);

/// Errors configuring the logger.
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    /// The level name is not known.
    #[error("invalid log level {0:?} (expected Error, Warning, Info, Debug, Trace or Off)")]
    Level(String),
    /// The log file cannot be opened.
    #[error("cannot open log file {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Parses a Firecracker level name (case-insensitive; `Warn` and `Warning` both accepted).
pub fn parse_level(s: &str) -> Result<u8, LoggerError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "off" => 0,
        "error" => 1,
        "warn" | "warning" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        _ => return Err(LoggerError::Level(s.to_string())),
    })
}

fn level_filter(l: u8) -> LevelFilter {
    match l {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Sets the level.
pub fn set_level(l: u8) {
    LEVEL.store(l, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// Sends logs to `path` (file or named pipe, appended) instead of stderr.
pub fn set_path(path: &Path) -> Result<(), LoggerError> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| LoggerError::Open {
            path: path.display().to_string(),
            source,
        })?;
    *lock(&TARGET) = Some(f);
    Ok(())
}

/// Writes either to the configured file or to stderr.
struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let budget = &crate::output_limit::LOG;
        match lock(&TARGET).as_mut() {
            Some(f) => budget.write(f, buf),
            None => budget.write(&mut std::io::stderr(), buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match lock(&TARGET).as_mut() {
            Some(f) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

struct MakeSink;
impl<'a> MakeWriter<'a> for MakeSink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        Sink
    }
}

/// Installs the global subscriber (once per process; later calls are no-ops).
pub fn init(level: u8, path: Option<&Path>) -> Result<(), LoggerError> {
    if let Some(p) = path {
        set_path(p)?;
    }
    LEVEL.store(level, Ordering::Relaxed);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(MakeSink)
        .with_ansi(false)
        .with_thread_names(true)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            *m.level() <= level_filter(LEVEL.load(Ordering::Relaxed))
        }));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("Warning").unwrap(), 2);
        assert_eq!(parse_level("warn").unwrap(), 2);
        assert_eq!(parse_level("TRACE").unwrap(), 5);
        assert!(matches!(parse_level("loud"), Err(LoggerError::Level(_))));
    }

    #[test]
    fn writes_to_file() {
        let p = std::env::temp_dir().join(format!("vmm-log-{}", std::process::id()));
        init(3, Some(&p)).unwrap();
        tracing::info!("hello from the logger test");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(text.contains("hello from the logger test"), "{text}");
    }
}
