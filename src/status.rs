//! `sitelink status`: what a technician needs to know, read from the store
//! without touching it, plus whether the daemon answers.

use crate::clock::{self, format_ms};
use crate::config::Config;
use crate::control::{self, Request, Response};
use crate::store::{DB_FILE, Reader, StoreError, StoreStatus};
use crate::uplink::UplinkStatus;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct DaemonState {
    pub running: bool,
    pub pid: Option<u32>,
    pub version: Option<String>,
    /// Why it is not reachable.
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClockState {
    pub synced: bool,
    pub now_ms: i64,
    /// Records taken while the clock was not synchronised (their wall time is doubtful).
    pub unsynced_records: i64,
}

#[derive(Debug, Serialize)]
pub struct UplinkReport {
    pub url: String,
    /// What the running daemon says; `None` when it does not answer.
    pub live: Option<UplinkStatus>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: String,
    pub agent: String,
    pub config: PathBuf,
    pub daemon: DaemonState,
    pub clock: ClockState,
    pub store: StoreStatus,
    /// `None`: no `[upstream]` configured.
    pub uplink: Option<UplinkReport>,
    /// Files named `*.corrupt-*` in the data directory.
    pub quarantined_files: Vec<PathBuf>,
    pub update: UpdateReport,
}

/// Over-the-air update: what runs and the last outcome.
#[derive(Debug, Serialize)]
pub struct UpdateReport {
    /// The OTA version the launcher runs; `None`: the package's binary.
    pub current: Option<crate::ota::Slot>,
    pub previous: Option<String>,
    pub max_attempts: u32,
    /// The newest `update.*` event record.
    pub last: Option<LastUpdate>,
}

#[derive(Debug, Serialize)]
pub struct LastUpdate {
    pub kind: String,
    pub wall_ms: i64,
    pub payload: serde_json::Value,
}

/// Gathers the report; fails only if the database cannot be read at all.
pub async fn gather(config: &Config) -> Result<StatusReport, StoreError> {
    let daemon = match control::call(
        &config.agent.data_dir,
        &Request::Ping,
        Duration::from_secs(2),
    )
    .await
    {
        Ok(Response::Pong { pid, version }) => DaemonState {
            running: true,
            pid: Some(pid),
            version: Some(version),
            detail: None,
        },
        Ok(other) => DaemonState {
            running: false,
            pid: None,
            version: None,
            detail: Some(format!("unexpected answer: {other:?}")),
        },
        Err(e) => DaemonState {
            running: false,
            pid: None,
            version: None,
            detail: Some(e.to_string()),
        },
    };
    let uplink = match &config.upstream {
        None => None,
        Some(u) => {
            let live = if daemon.running {
                match control::call(
                    &config.agent.data_dir,
                    &Request::Uplink,
                    Duration::from_secs(2),
                )
                .await
                {
                    Ok(Response::Uplink { status }) => status,
                    _ => None,
                }
            } else {
                None
            };
            Some(UplinkReport {
                url: u.url.clone(),
                live,
            })
        }
    };
    let db = config.agent.data_dir.join(DB_FILE);
    let (store, unsynced, last) = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let r = Reader::open(&db)?;
            let last = r
                .records(&crate::store::RecordFilter {
                    device: Some("update".into()),
                    class: None,
                    kind: None,
                    limit: 1,
                })?
                .pop()
                .map(|rec| LastUpdate {
                    payload: serde_json::from_str(&rec.payload)
                        .unwrap_or(serde_json::Value::String(rec.payload)),
                    kind: rec.kind,
                    wall_ms: rec.wall_ms,
                });
            Ok((r.status()?, r.unsynced_count()?, last))
        })
        .await
        .map_err(|e| StoreError::Invalid(e.to_string()))??
    };
    Ok(StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        agent: config.agent.id.clone(),
        config: config.source.clone(),
        daemon,
        clock: ClockState {
            synced: clock::wall_clock_synced(),
            now_ms: clock::wall_ms(),
            unsynced_records: unsynced,
        },
        store,
        uplink,
        quarantined_files: quarantined_files(&config.agent.data_dir),
        update: {
            let ota = crate::ota::summary(&config.agent.data_dir);
            UpdateReport {
                current: ota.as_ref().and_then(|s| s.current.clone()),
                previous: ota.and_then(|s| s.previous),
                max_attempts: config.update.max_attempts,
                last,
            }
        },
    })
}

fn quarantined_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.contains(".corrupt-") && !n.ends_with("-wal") && !n.ends_with("-shm")
            })
        })
        .collect();
    found.sort();
    found
}

/// One line of what a device last reported: a SAS link's health, or any
/// other device's state as it stands.
fn device_state(state: &serde_json::Value) -> Option<String> {
    let n = |k: &str| {
        state
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    if let Some(link) = state.get("link").and_then(serde_json::Value::as_str) {
        let mut line = format!(
            "SAS {} address {}: link {link}, polled every {} ms, {} polls, {} without reply, {} unreadable, {} retries",
            state
                .get("port")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?"),
            n("address"),
            n("poll_interval_ms"),
            n("polls"),
            n("no_reply"),
            n("bad_replies"),
            n("retries"),
        );
        if let Some(reason) = state.get("reason").and_then(serde_json::Value::as_str) {
            line.push_str(&format!(" — {reason}"));
        }
        return Some(line);
    }
    if let Some(tv) = state.get("tv").and_then(serde_json::Value::as_str) {
        return Some(tv_state(state, tv));
    }
    let text = state.to_string();
    (text != "null").then(|| text.chars().take(120).collect())
}

/// `TV 10.0.0.5:5555: connected, BRAVIA (Android 11), screen on, app ..., volume 5/15`.
fn tv_state(state: &serde_json::Value, tv: &str) -> String {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let mut line = format!(
        "TV {}:{}: {tv}",
        state["host"].as_str().unwrap_or("?"),
        state["port"].as_u64().unwrap_or(0)
    );
    let id = &state["identity"];
    if let Some(model) = s(&id["model"]) {
        line.push_str(&format!(", {model}"));
        if let Some(v) = s(&id["android"]) {
            line.push_str(&format!(" (Android {v})"));
        }
    }
    let last = &state["last"];
    if tv == "connected" && last.is_object() {
        if let Some(on) = last["power"]["screen_on"].as_bool() {
            line.push_str(if on { ", screen on" } else { ", screen off" });
        }
        if let Some(app) = s(&last["app"]) {
            line.push_str(&format!(", app {app}"));
        }
        if let Some(input) = s(&last["input"]) {
            line.push_str(&format!(", input {input}"));
        }
        let v = &last["volume"];
        if let Some(level) = v["level"].as_u64() {
            line.push_str(&format!(", volume {level}"));
            if let Some(max) = v["max"].as_u64() {
                line.push_str(&format!("/{max}"));
            }
            if v["muted"].as_bool() == Some(true) {
                line.push_str(" (muted)");
            }
        }
    }
    if let Some(reason) = s(&state["reason"]) {
        line.push_str(&format!(" — {reason}"));
    }
    if let Some(e) = s(&state["relay"]["error"]) {
        line.push_str(&format!("; relay: {e}"));
    }
    line
}

fn ago(now: i64, then: i64) -> String {
    let s = (now - then) / 1000;
    match s {
        i64::MIN..=-1 => format!("{} s in the future: check the clock", -s),
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn when(now: i64, ms: i64) -> String {
    format!("{} ({})", format_ms(ms), ago(now, ms))
}

impl StatusReport {
    /// The uplink's lines: connection, drain, what was set aside.
    fn render_uplink(&self, now: i64) -> String {
        let backlog: i64 = self.store.classes.iter().map(|c| c.backlog).sum();
        let Some(u) = &self.uplink else {
            return "uplink:    none ([upstream] is not configured): records stay on this machine\n"
                .to_string();
        };
        let Some(live) = &u.live else {
            return format!(
                "uplink:    {} (state unknown: the daemon does not answer), backlog {backlog} records\n",
                u.url
            );
        };
        let mut out = match live.state.as_str() {
            "connected" => format!(
                "uplink:    connected to {} since {}{}\n",
                u.url,
                when(now, live.since_ms),
                live.upstream
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ),
            "waiting" => format!(
                "uplink:    NOT CONNECTED to {}: retrying in {} ms\n",
                u.url,
                live.retry_in_ms.unwrap_or(0)
            ),
            other => format!("uplink:    {other} {}\n", u.url),
        };
        out.push_str(&format!(
            "           backlog {backlog} records, draining {:.0} records/s, {} delivered since start, last sync {}\n",
            live.drain_per_s,
            live.delivered,
            live.last_sync_ms
                .map_or("never (this run)".to_string(), |ms| when(now, ms))
        ));
        if let Some(offset) = live.clock_offset_ms
            && offset.abs() >= 2000
        {
            out.push_str(&format!(
                "           the upstream's clock is {:.1} s {} ours\n",
                offset.abs() as f64 / 1000.0,
                if offset > 0 { "ahead of" } else { "behind" }
            ));
        }
        if live.set_aside_batches > 0 {
            out.push_str(&format!(
                "SET ASIDE: {} batches ({} records) the upstream rejected as malformed (kept here, see `sitelink records --device uplink`)\n",
                live.set_aside_batches, live.set_aside_records
            ));
        }
        if let Some(e) = &live.last_error {
            out.push_str(&format!("           last error: {e}\n"));
        }
        out
    }

    /// The OTA lines: the version that runs, the last outcome.
    fn render_update(&self, now: i64) -> String {
        let u = &self.update;
        let mut out = match &u.current {
            None => {
                "update:    the package's version runs (no OTA version installed)\n".to_string()
            }
            Some(c) if c.trial => format!(
                "update:    {} IN TRIAL (start {} of at most {}), falls back to {}\n",
                c.version,
                c.attempts,
                u.max_attempts,
                u.previous.as_deref().unwrap_or("the package's version")
            ),
            Some(c) => format!(
                "update:    {} (committed), falls back to {}\n",
                c.version,
                u.previous.as_deref().unwrap_or("the package's version")
            ),
        };
        if let Some(l) = &u.last {
            let version = l.payload["version"].as_str().unwrap_or("?");
            let reason = l.payload["reason"]
                .as_str()
                .map_or(String::new(), |r| format!(": {r}"));
            out.push_str(&format!(
                "           last: {} {version} {}{reason}\n",
                l.kind,
                when(now, l.wall_ms)
            ));
        }
        out
    }

    /// The human form.
    pub fn render(&self) -> String {
        let now = self.clock.now_ms;
        let s = &self.store;
        let mut out = format!("sitelink {} — agent {}\n", self.version, self.agent);
        out.push_str(&format!("config:    {}\n", self.config.display()));
        out.push_str(&match (&self.daemon.running, &self.daemon.detail) {
            (true, _) => format!(
                "daemon:    running (pid {}, version {})\n",
                self.daemon.pid.unwrap_or(0),
                self.daemon.version.as_deref().unwrap_or("?")
            ),
            (false, Some(d)) => format!("daemon:    NOT RUNNING: {d}\n"),
            (false, None) => "daemon:    NOT RUNNING\n".to_string(),
        });
        out.push_str(&if self.clock.synced {
            format!("clock:     synchronised, {}\n", format_ms(now))
        } else {
            format!(
                "clock:     NOT synchronised ({}): times of new records may be wrong until NTP syncs (check `timedatectl`)\n",
                format_ms(now)
            )
        });
        if self.clock.unsynced_records > 0 {
            out.push_str(&format!(
                "           {} stored records were taken with an unsynchronised clock (marked as such)\n",
                self.clock.unsynced_records
            ));
        }
        out.push_str(&format!(
            "store:     {} ({:.1} MB, epoch {})\n",
            s.db_path.display(),
            s.db_bytes as f64 / 1e6,
            s.epoch
        ));
        out.push_str(&format!(
            "  {:<11} {:>10} {:>10} {:>10}\n",
            "class", "rows", "backlog", "dropped"
        ));
        for c in &s.classes {
            out.push_str(&format!(
                "  {:<11} {:>10} {:>10} {:>10}\n",
                c.class.as_str(),
                c.rows,
                c.backlog,
                c.dropped
            ));
        }
        out.push_str(&match &s.oldest_undelivered {
            Some(r) => format!(
                "oldest undelivered: seq {} from {} at {}\n",
                r.seq,
                r.device,
                when(now, r.wall_ms)
            ),
            None => "oldest undelivered: none, everything is delivered\n".to_string(),
        });
        out.push_str(&match s.last_ack_ms {
            Some(ms) => format!(
                "last sync: {} (acknowledged up to seq {})\n",
                when(now, ms),
                s.acked_seq
            ),
            None => "last sync: never\n".to_string(),
        });
        out.push_str(&self.render_uplink(now));
        out.push_str(&self.render_update(now));
        for d in &s.drops {
            out.push_str(&format!(
                "DROPPED:   {} {} records of {} ({}), seq {}..{}, last {}\n",
                d.count,
                d.class.as_str(),
                d.device,
                d.reason,
                d.first_seq,
                d.last_seq,
                when(now, d.last_ms)
            ));
        }
        let mut listed: Vec<&Path> = Vec::new();
        for q in &s.quarantined {
            out.push_str(&format!(
                "QUARANTINED: {} at {}: {}\n",
                q.path,
                format_ms(q.at_ms),
                q.reason
            ));
            listed.push(Path::new(&q.path));
        }
        for f in &self.quarantined_files {
            if !listed.contains(&f.as_path()) {
                out.push_str(&format!("QUARANTINED: {}\n", f.display()));
            }
        }
        if s.devices.is_empty() {
            out.push_str("devices:   none has reported yet\n");
        } else {
            out.push_str("devices:\n");
            for d in &s.devices {
                out.push_str(&format!(
                    "  {:<16} last seen {}\n",
                    d.device,
                    when(now, d.last_seen_ms)
                ));
                if let Some(state) = d.state.as_ref().and_then(device_state) {
                    out.push_str(&format!("  {:<16} {state}\n", ""));
                }
            }
        }
        out
    }
}
