//! The agent's log: standard error (the journal, or the console by hand) and, when a log folder
//! is known, `agent.log` there, rolled over at 10 MB to `agent.log.<UTC timestamp>` and the
//! rolled files deleted after 30 days (file-rotate does both, so neither is hand-written).

use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate, compression::Compression};
use std::path::Path;

pub const MAX_BYTES: usize = 10 * 1024 * 1024;

/// The Application event log's ids, one per condition an administrator watches for (a log
/// line carries its id as the field `event`); any other warning is 100, any other error 200.
/// docs/agent.md lists this table (a test compares them).
pub const EVENTS: &[(u32, &str)] = &[
    (1, "the agent started"),
    (2, "the agent stopped"),
    (100, "a warning"),
    (110, "disconnections are held by the deletion threshold"),
    (120, "the cloud did not answer the heartbeat"),
    (130, "a state of another enrollment was set aside"),
    (140, "the cloud refused a user sent from AD"),
    (200, "an error"),
    (210, "a sync run stopped before its end"),
    (
        220,
        "sending AD's changes to the cloud stopped before its end",
    ),
];

pub mod event {
    pub const STARTED: u32 = 1;
    pub const STOPPED: u32 = 2;
    pub const HELD: u32 = 110;
    pub const CLOUD_UNREACHABLE: u32 = 120;
    pub const SET_ASIDE: u32 = 130;
    pub const EXPORT_REFUSED: u32 = 140;
    pub const RUN_FAILED: u32 = 210;
    pub const EXPORT_FAILED: u32 = 220;
}
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
/// `dir`, to the rolling file; on Windows, warnings and errors also to the Application event log
/// (source `ad-sync-agent`, registered by the installer). Returns a warning to log when the
/// folder could not be used.
pub fn init(dir: Option<&Path>) -> Option<String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AD_SYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let file = dir.map(|d| rolling(d, MAX_BYTES, MAX_AGE_DAYS));
    let (to_file, warning) = match file {
        Some(Ok(f)) => (Some(std::sync::Mutex::new(f)), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let file_layer = to_file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(f)
            .with_ansi(false)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer);
    #[cfg(windows)]
    let registry = registry.with(event_log::Layer::open());
    registry.init();
    warning
}

/// The Application event log (Windows): warnings and errors, each as one event whose text is
/// the log line's message and fields.
#[cfg(windows)]
mod event_log {
    use tracing::field::{Field, Visit};
    use windows_sys::Win32::System::EventLog::{
        DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE,
        EVENTLOG_WARNING_TYPE, RegisterEventSourceW, ReportEventW,
    };

    /// The event ids: EventCreate.exe, the source's message file, shows ids 1 to 1000 as the
    /// text given.
    const WARNING_ID: u32 = 100;
    const ERROR_ID: u32 = 200;

    pub struct Layer {
        handle: windows_sys::Win32::Foundation::HANDLE,
    }

    // SAFETY: an event source handle may be used from any thread (ReportEvent is thread safe).
    unsafe impl Send for Layer {}
    // SAFETY: as above.
    unsafe impl Sync for Layer {}

    impl Layer {
        /// `None` when the source cannot be opened (then only the other logs are written).
        pub fn open() -> Option<Layer> {
            let name: Vec<u16> = "ad-sync-agent\0".encode_utf16().collect();
            // SAFETY: a NUL-terminated wide string; a null server name is the local machine.
            let handle = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
            (!handle.is_null()).then_some(Layer { handle })
        }
    }

    impl Drop for Layer {
        fn drop(&mut self) {
            // SAFETY: the handle came from RegisterEventSourceW and is closed once.
            unsafe {
                DeregisterEventSource(self.handle);
            }
        }
    }

    #[derive(Default)]
    struct Text(String, Option<u32>);

    impl Visit for Text {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "event" {
                self.1 = u32::try_from(value).ok();
            } else {
                self.record_debug(field, &value);
            }
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "event" {
                self.1 = u32::try_from(value).ok();
            } else {
                self.record_debug(field, &value);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            use std::fmt::Write;
            if field.name() == "event" {
            } else if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let level = *event.metadata().level();
            let mut text = Text::default();
            event.record(&mut text);
            let (kind, id) = if level == tracing::Level::ERROR {
                (EVENTLOG_ERROR_TYPE, text.1.unwrap_or(ERROR_ID))
            } else if level == tracing::Level::WARN {
                (EVENTLOG_WARNING_TYPE, text.1.unwrap_or(WARNING_ID))
            } else if let Some(id) = text.1 {
                // An information event the administrator watches for (started, stopped).
                (EVENTLOG_INFORMATION_TYPE, id)
            } else {
                return;
            };
            // An event's string is at most 31,839 characters.
            let wide: Vec<u16> = text
                .0
                .chars()
                .take(31_000)
                .collect::<String>()
                .encode_utf16()
                .chain(std::iter::once(0))
                .collect();
            let strings = [wide.as_ptr()];
            // SAFETY: one NUL-terminated wide string, no SID, no raw data.
            unsafe {
                ReportEventW(
                    self.handle,
                    kind,
                    0,
                    id,
                    std::ptr::null_mut(),
                    1,
                    0,
                    strings.as_ptr(),
                    std::ptr::null(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// docs/agent.md lists every event id, with its meaning.
    #[test]
    fn the_doc_lists_every_event_id() {
        let doc = include_str!("../../../docs/agent.md");
        for (id, when) in EVENTS {
            assert!(
                doc.lines()
                    .any(|l| l.starts_with(&format!("| {id} |"))
                        && l.ends_with(&format!("| {when} |"))),
                "docs/agent.md lacks event {id} ({when})"
            );
        }
    }
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
