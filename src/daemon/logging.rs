//! Logs: to journald when systemd started us (`JOURNAL_STREAM` is set), to
//! stderr otherwise. Fields such as `device`, `port` and `address` become
//! journal fields (`DEVICE=`, `PORT=`, `ADDRESS=`) that `journalctl` filters on.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log level of the running process (on reload).
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    pub fn set_level(&self, level: &str) {
        match EnvFilter::try_new(level) {
            Ok(f) => {
                if let Err(e) = self.handle.reload(f) {
                    tracing::warn!(error = %e, "log level not changed");
                }
            }
            Err(e) => tracing::warn!(level, error = %e, "log level not changed"),
        }
    }
}

/// Installs the global subscriber. `level` is a tracing filter (`info`,
/// `sitelink::store=debug`); `RUST_LOG` overrides it for debugging.
pub fn init(level: &str) -> LogControl {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = if std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match journald {
        Some(j) => registry
            // No `F_` prefix: `journalctl -u sitelink DEVICE=egm-1` as documented.
            .with(
                j.with_syslog_identifier("sitelink".into())
                    .with_field_prefix(None),
            )
            .try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
    };
    // A second init (tests, the demo inside one process) keeps the first.
    let _ = installed;
    LogControl { handle }
}
