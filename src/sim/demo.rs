//! `sitelink demo`: the whole system in one process on a temporary data
//! directory — simulated devices, the agent, a consumer in place of the
//! upstream — ending with what was produced, stored, delivered and lost.

use super::sink::Sink;
use crate::config;
use crate::daemon::Daemon;
use crate::daemon::dispatch::CommandRequest;
use crate::store::CommandStatus;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The demo's site: one device of each class.
const DEMO_CONFIG: &str = r#"# Written by `sitelink demo`.
[agent]
id = "demo"
data_dir = "@DATA_DIR@"
log_level = "warn"

[store]
commit_records = 1000
commit_ms = 10

[[generator]]
name = "egm-1"
class = "accounting"
rate = 200
size = 160

[[generator]]
name = "egm-2"
class = "event"
rate = 50
size = 120

[[generator]]
name = "tv-lobby"
class = "metric"
rate = 1000
size = 200
"#;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot make the demo's data directory: {0}")]
    TempDir(std::io::Error),
    #[error("demo config: {0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One device's line in the demo's table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTotals {
    pub device: String,
    pub class: String,
    pub produced: u64,
    pub stored: u64,
    pub delivered: u64,
    pub repeated: u64,
    pub lost: u64,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub devices: Vec<DeviceTotals>,
    pub commands_ok: bool,
}

impl DemoReport {
    pub fn lost(&self) -> u64 {
        self.devices.iter().map(|d| d.lost).sum()
    }

    pub fn repeated(&self) -> u64 {
        self.devices.iter().map(|d| d.repeated).sum()
    }

    /// Whether the run kept its promise: nothing lost, nothing twice.
    pub fn ok(&self) -> bool {
        self.lost() == 0 && self.repeated() == 0 && self.commands_ok
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<10} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
            "device", "class", "produced", "stored", "delivered", "lost"
        );
        for d in &self.devices {
            s.push_str(&format!(
                "{:<10} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
                d.device, d.class, d.produced, d.stored, d.delivered, d.lost
            ));
        }
        let sum = |f: fn(&DeviceTotals) -> u64| self.devices.iter().map(f).sum::<u64>();
        s.push_str(&format!(
            "{:<10} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
            "total",
            "",
            sum(|d| d.produced),
            sum(|d| d.stored),
            sum(|d| d.delivered),
            sum(|d| d.lost)
        ));
        s.push_str(&format!(
            "produced {}, stored {}, delivered {}, lost {}{}\n",
            sum(|d| d.produced),
            sum(|d| d.stored),
            sum(|d| d.delivered),
            self.lost(),
            if self.repeated() > 0 {
                format!(", delivered twice {}", self.repeated())
            } else {
                String::new()
            }
        ));
        s.push_str(&format!(
            "data directory: {} (kept; look inside with `sitelink status --config {}` or `sitelink records --config {}`)\n",
            self.data_dir.display(),
            self.config_path.display(),
            self.config_path.display()
        ));
        s
    }
}

/// Runs the demo for `duration`, printing progress to `out` once a second.
pub async fn run(
    duration: Duration,
    out: &mut (dyn Write + Send),
) -> Result<DemoReport, DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("sitelink-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?
        .keep();
    let config_path = dir.join("sitelink.toml");
    let text = DEMO_CONFIG.replace("@DATA_DIR@", &dir.to_string_lossy());
    std::fs::write(&config_path, &text).map_err(|source| DemoError::Write {
        path: config_path.clone(),
        source,
    })?;
    let cfg = config::load(&config_path)?;
    let classes: Vec<(String, String)> = cfg
        .generators
        .iter()
        .map(|g| (g.name.clone(), g.class.to_string()))
        .collect();
    let _ = writeln!(
        out,
        "sitelink demo: {} s, {} simulated devices, data in {}",
        duration.as_secs(),
        classes.len(),
        dir.display()
    );
    let mut daemon = Daemon::start(cfg).await?;
    let mut sink = Some(Sink::new(daemon.store_db_path(), daemon.store()));

    // The command path, end to end: through the table to a device and back.
    let reply = daemon
        .dispatcher()
        .run(CommandRequest {
            device: "egm-1".into(),
            action: "ping".into(),
            args: vec![],
            source: "demo".into(),
        })
        .await;
    let commands_ok = reply.status == CommandStatus::Done;
    let _ = writeln!(
        out,
        "command egm-1 ping: {} {}",
        reply.status.as_str(),
        reply.detail
    );

    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_print = 0;
    while started.elapsed() < duration {
        tick.tick().await;
        sink = Some(drain(sink.take()).await?);
        let secs = started.elapsed().as_secs();
        if secs > last_print {
            last_print = secs;
            let produced: u64 = daemon
                .generator_stats()
                .iter()
                .map(|(_, s)| s.produced.load(Ordering::Relaxed))
                .sum();
            let delivered = sink.as_ref().map_or(0, |s| s.delivered.records);
            let _ = writeln!(
                out,
                "  {secs:>3} s: produced {produced}, delivered {delivered}"
            );
        }
    }
    let stats = daemon.generator_stats();
    daemon.stop_devices().await;
    let sink = drain(sink.take()).await?;
    daemon.shutdown().await;

    let devices = classes
        .into_iter()
        .map(|(device, class)| {
            let s = stats
                .iter()
                .find(|(n, _)| *n == device)
                .map(|(_, s)| s.clone());
            let produced = s.as_ref().map_or(0, |s| s.produced.load(Ordering::Relaxed));
            let stored = s.as_ref().map_or(0, |s| s.stored.load(Ordering::Relaxed));
            let c = sink
                .delivered
                .counters
                .get(&device)
                .cloned()
                .unwrap_or_default();
            DeviceTotals {
                device,
                class,
                produced,
                stored,
                delivered: c.distinct,
                repeated: c.repeated,
                lost: produced.saturating_sub(c.distinct),
            }
        })
        .collect();
    Ok(DemoReport {
        data_dir: dir,
        config_path,
        devices,
        commands_ok,
    })
}

async fn drain(sink: Option<Sink>) -> Result<Sink, DemoError> {
    let Some(mut sink) = sink else {
        return Err(DemoError::Store(crate::store::StoreError::Closed));
    };
    let result = tokio::task::spawn_blocking(move || {
        let r = sink.drain();
        (sink, r)
    })
    .await;
    match result {
        Ok((sink, Ok(_))) => Ok(sink),
        Ok((_, Err(e))) => Err(e.into()),
        Err(e) => Err(DemoError::Store(crate::store::StoreError::Invalid(
            e.to_string(),
        ))),
    }
}
