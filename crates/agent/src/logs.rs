//! The agent's log: standard error (the journal, or the console by hand) and, when a log folder
//! is known, `agent.log` there, rolled over at 10 MB to `agent.log.<UTC timestamp>` and the
//! rolled files deleted after 30 days (file-rotate does both, so neither is hand-written).

use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate, compression::Compression};
use std::path::Path;
use tracing_subscriber::fmt::writer::MakeWriterExt;

pub const MAX_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_AGE_DAYS: i64 = 30;

/// The rolling file writer for `dir/agent.log` (the folder is created 0700 when missing).
pub fn rolling(
    dir: &Path,
    max_bytes: usize,
    max_age_days: i64,
) -> Result<FileRotate<AppendTimestamp>, String> {
    ad_sync_core::install::fsops::create_dirs(dir, 0o700)
        .map_err(|e| format!("log folder {}: {e}", dir.display()))?;
    let mut open = std::fs::OpenOptions::new();
    open.read(true).create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    Ok(FileRotate::new(
        dir.join("agent.log"),
        AppendTimestamp::default(FileLimit::Age(chrono::Duration::days(max_age_days))),
        ContentLimit::BytesSurpassed(max_bytes.max(1)),
        Compression::None,
        Some(open),
    ))
}

/// Sets up logging for the agent: `AD_SYNC_LOG` (default `info`) to standard error and, with
/// `dir`, to the rolling file. Returns a warning to log when the folder could not be used.
pub fn init(dir: Option<&Path>) -> Option<String> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("AD_SYNC_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let file = dir.map(|d| rolling(d, MAX_BYTES, MAX_AGE_DAYS));
    match file {
        Some(Ok(f)) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr.and(std::sync::Mutex::new(f)))
                .with_ansi(false)
                .init();
            None
        }
        other => {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            other.and_then(Result::err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rolls_over_by_size_and_keeps_the_current_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut w = rolling(dir.path(), 1000, 30).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..50 {
            writeln!(w, "line {i} {}", "x".repeat(60)).unwrap_or_else(|e| panic!("{e}"));
        }
        w.flush().unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "agent.log"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("agent.log.")),
            "{names:?}"
        );
        let current = std::fs::metadata(dir.path().join("agent.log"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(current <= 1100, "{current}");
    }
}
