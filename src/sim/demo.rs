//! `sitelink demo`: the whole system in one process on a temporary data
//! directory — simulated devices, the agent, and a real hub over mutual TLS
//! on loopback with certificates made for the run — ending with what was
//! produced, stored, delivered (stored by the hub) and lost.
//!
//! The devices are the generators, one simulated SAS line (a few EGMs,
//! [`crate::sim::egm::model`], on a PTY, served in-process by
//! [`serve::spawn`] and polled by the agent's own SAS poller) and a few
//! simulated Android TVs ([`crate::sim::tv`], real ADB on loopback). An
//! EGM's "produced" comes from the simulator's journal file (the exceptions
//! the host's implied ACK took), its "stored" from the agent's store and
//! "delivered" from the hub's. A TV's records are made by the agent
//! (telemetry, events): "produced" is what its store holds.

use super::egm::serve::{self, ServeConfig, ServeError, Transport, UnplugMode, UnplugPlan};
use super::egm::{EgmConfig, Entry, FaultPlan, journal};
use crate::config;
use crate::daemon::Daemon;
use crate::daemon::dispatch::CommandRequest;
use crate::hub::store::{HubFilter, HubRecord, SqliteHub};
use crate::hub::{Hub, HubOptions};
use crate::store::{CommandStatus, Reader, RecordFilter};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The simulated EGMs: SAS address and device name.
const DEMO_EGMS: [(u8, &str); 3] = [(1, "slot-1"), (2, "slot-2"), (3, "slot-3")];
/// Games per second on each simulated EGM (each raises 2 or more exceptions).
const DEMO_GAME_RATE: f64 = 4.0;
/// The simulated TVs' device names.
const DEMO_TVS: [&str; 3] = ["tv-lobby", "tv-bar", "tv-entrance"];

/// The demo's site: one device of each class, and a SAS line of EGMs.
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
name = "sensor-1"
class = "metric"
rate = 1000
size = 200

# The hub, in the same process, over mutual TLS on loopback.
[upstream]
url = "wss://@HUB_ADDR@"
ca = "@PKI@/ca.pem"
cert = "@PKI@/agent-demo.pem"
key = "@PKI@/agent-demo.key"
batch_ms = 50
backoff_min_ms = 50
backoff_max_s = 1

# The simulated EGMs, polled as fast as the config allows.
[[sas]]
name = "sas-line"
port = "@SAS_PORT@"
poll_interval_ms = 40
meters_s = 2
@SAS_EGMS@
# The simulated Android TVs, over ADB on loopback.
@TVS@"#;

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
    #[error("simulated SAS line: {0}")]
    Serve(#[from] ServeError),
    #[error("simulated TVs: {0}")]
    Tv(#[from] super::tv::SimTvError),
    #[error("simulator journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Sim(String),
    #[error("certificates: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("hub: {0}")]
    Hub(#[from] crate::hub::HubError),
    #[error("hub: {0}")]
    HubStore(#[from] crate::hub::store::HubStoreError),
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
    /// Lines printed under the table (how the EGM rows count, meters).
    pub notes: Vec<String>,
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
            "{:<12} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
            "device", "class", "produced", "stored", "delivered", "lost"
        );
        for d in &self.devices {
            s.push_str(&format!(
                "{:<12} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
                d.device, d.class, d.produced, d.stored, d.delivered, d.lost
            ));
        }
        let sum = |f: fn(&DeviceTotals) -> u64| self.devices.iter().map(f).sum::<u64>();
        s.push_str(&format!(
            "{:<12} {:<11} {:>9} {:>9} {:>9} {:>6}\n",
            "total",
            "",
            sum(|d| d.produced),
            sum(|d| d.stored),
            sum(|d| d.delivered),
            sum(|d| d.lost)
        ));
        for n in &self.notes {
            s.push_str(&format!("  {n}\n"));
        }
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
    // The simulator first: the line must be there when the poller opens it.
    let sas_link = dir.join("sas-line.pty");
    let journal = dir.join("egm-journal.jsonl");
    let seed = crate::clock::wall_ms().unsigned_abs();
    let egms = DEMO_EGMS
        .iter()
        .map(|&(address, _)| EgmConfig {
            game_rate: DEMO_GAME_RATE,
            ..EgmConfig::new(address)
        })
        .collect();
    let sim = serve::spawn(ServeConfig {
        transport: Transport::Pty(sas_link.clone()),
        egms,
        faults: FaultPlan::default(),
        seed,
        journal: Some(journal.clone()),
        unplug: UnplugPlan {
            every: None,
            lasting: Duration::ZERO,
            mode: UnplugMode::Silent,
        },
    })?;
    // The agent's ADB key, made now and installed in the TVs' adb_keys, as
    // a site pre-authorises it (`sitelink adb pubkey`).
    let (key, _) = crate::adb::key::load_or_generate(
        &dir.join(crate::adb::key::PRIVATE_KEY_FILE),
        "sitelink@demo",
    )
    .map_err(|e| DemoError::Sim(e.to_string()))?;
    let mut tv_cfg = super::tv::TvSimConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        DEMO_TVS.len(),
    );
    for tv in &mut tv_cfg.tvs {
        tv.trusted = vec![key.public_key().clone()];
    }
    let tvs = super::tv::spawn(tv_cfg)?;
    let tv_tables: String = DEMO_TVS
        .iter()
        .zip(tvs.addrs())
        .map(|(name, addr)| {
            format!(
                "[[tv]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntelemetry_s = 5\n",
                addr.port()
            )
        })
        .collect();
    let pki_dir = dir.join("pki");
    crate::pki::init(&pki_dir, false)?;
    crate::pki::issue_agent(&pki_dir, "demo", false)?;
    crate::pki::issue_hub(&pki_dir, &["127.0.0.1".into(), "localhost".into()], false)?;
    let hub_dir = dir.join("hub");
    let hub = Hub::start(HubOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        pki: pki_dir.clone(),
        data: hub_dir.clone(),
    })
    .await?;
    let config_path = dir.join("sitelink.toml");
    let egm_tables: String = DEMO_EGMS
        .iter()
        .map(|(address, name)| format!("[[sas.egm]]\naddress = {address}\nname = \"{name}\"\n"))
        .collect();
    let text = DEMO_CONFIG
        .replace("@DATA_DIR@", &dir.to_string_lossy())
        .replace("@SAS_PORT@", &sas_link.to_string_lossy())
        .replace("@SAS_EGMS@", &egm_tables)
        .replace("@TVS@", &tv_tables)
        .replace("@HUB_ADDR@", &hub.addr.to_string())
        .replace("@PKI@", &pki_dir.to_string_lossy());
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
        "sitelink demo: {} s, {} simulated devices, {} simulated EGMs on a SAS line ({}), \
         {} simulated Android TVs over ADB, a hub at wss://{} (mutual TLS), data in {}",
        duration.as_secs(),
        classes.len(),
        DEMO_EGMS.len(),
        sas_link.display(),
        DEMO_TVS.len(),
        hub.addr,
        dir.display()
    );
    let mut daemon = Daemon::start(cfg).await?;

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
    let mut commands_ok = reply.status == CommandStatus::Done;
    let _ = writeln!(
        out,
        "command egm-1 ping: {} {}",
        reply.status.as_str(),
        reply.detail
    );
    // And to a TV, once it is connected: the volume, through ADB.
    let tv = DEMO_TVS[0];
    let connected = tv_connected(&daemon.store_db_path(), tv, Duration::from_secs(10)).await;
    let reply = daemon
        .dispatcher()
        .run(CommandRequest {
            device: tv.into(),
            action: "volume".into(),
            args: vec!["7".into()],
            source: "demo".into(),
        })
        .await;
    commands_ok &= connected && reply.status == CommandStatus::Done;
    let _ = writeln!(
        out,
        "command {tv} volume 7: {} {}",
        reply.status.as_str(),
        reply.detail
    );

    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_print = 0;
    while started.elapsed() < duration {
        tick.tick().await;
        let secs = started.elapsed().as_secs();
        if secs > last_print {
            last_print = secs;
            let produced: u64 = daemon
                .generator_stats()
                .iter()
                .map(|(_, s)| s.produced.load(Ordering::Relaxed))
                .sum();
            let delivered = hub_count(&hub_dir).await;
            // Whole lines only (one write each): safe to read while written.
            let acked = journal::read(&journal).map_or(0, |entries| {
                entries
                    .iter()
                    .filter(|e| matches!(e, Entry::Acked { .. }))
                    .count()
            });
            let _ = writeln!(
                out,
                "  {secs:>3} s: produced {produced}, delivered {delivered}, EGM exceptions acknowledged {acked}"
            );
        }
    }
    let stats = daemon.generator_stats();
    // The poller first: it commits what it read, and what the EGMs have
    // seen acknowledged by then is final once the simulator stops.
    daemon.stop_devices().await;
    let polls = sim.polls();
    sim.stop()?;
    tvs.stop();
    let entries = journal::read(&journal).map_err(|source| DemoError::Journal {
        path: journal.clone(),
        source,
    })?;
    let db = daemon.store_db_path();
    // What the devices stored last is still on its way to the hub.
    let drain_started = tokio::time::Instant::now();
    while !drained(&db).await && drain_started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.shutdown().await;
    hub.stop().await;
    let held = {
        let hub_dir = hub_dir.clone();
        tokio::task::spawn_blocking(move || {
            SqliteHub::open_read(&hub_dir)?.records(&HubFilter {
                agent: Some("demo".into()),
                ..Default::default()
            })
        })
        .await
        .map_err(|e| DemoError::Sim(format!("reading the hub: {e}")))??
    };
    let delivered = Delivered::from_hub(&held);
    let outbox = EgmOutbox::from_hub(&held);

    let mut devices: Vec<DeviceTotals> = classes
        .into_iter()
        .map(|(device, class)| {
            let s = stats
                .iter()
                .find(|(n, _)| *n == device)
                .map(|(_, s)| s.clone());
            let produced = s.as_ref().map_or(0, |s| s.produced.load(Ordering::Relaxed));
            let stored = s.as_ref().map_or(0, |s| s.stored.load(Ordering::Relaxed));
            let c = delivered.counters.get(&device).cloned().unwrap_or_default();
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
    let tv_db = db.clone();
    let tv_stored = tokio::task::spawn_blocking(move || stored_by_tv(&tv_db))
        .await
        .map_err(|e| DemoError::Sim(format!("reading the store: {e}")))??;
    let stored = tokio::task::spawn_blocking(move || stored_by_egm(&db))
        .await
        .map_err(|e| DemoError::Sim(format!("reading the store: {e}")))??;
    let (egm_rows, mut notes) = egm_totals(&entries, polls, &stored, &outbox, &journal);
    notes.push(format!(
        "hub: {} records of agent demo stored (by agent and sequence, once each); see `sitelink hub records --data {}`",
        held.len(),
        hub_dir.display()
    ));
    devices.extend(egm_rows);
    for (name, stored) in tv_stored {
        let mut seqs: Vec<u64> = held
            .iter()
            .filter(|r| r.device == name)
            .map(|r| r.seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let delivered = seqs.len() as u64;
        devices.push(DeviceTotals {
            device: name,
            class: "tv (adb)".into(),
            produced: stored,
            stored,
            delivered,
            repeated: 0,
            lost: stored.saturating_sub(delivered),
        });
    }
    Ok(DemoReport {
        data_dir: dir,
        config_path,
        devices,
        notes,
        commands_ok,
    })
}

/// What the store holds of one EGM at the end.
#[derive(Debug, Default)]
struct StoredEgm {
    /// Exception codes, in store order.
    exceptions: Vec<u8>,
    meters: u64,
    link_events: u64,
}

/// Exception codes of an `exception` record's payload.
fn exception_code(payload: &str) -> Option<u8> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    u8::try_from(v.get("code")?.as_u64()?).ok()
}

fn stored_by_egm(db: &Path) -> Result<BTreeMap<String, StoredEgm>, DemoError> {
    let reader = Reader::open(db)?;
    let mut out = BTreeMap::new();
    for (_, name) in DEMO_EGMS {
        let records = reader.records(&RecordFilter {
            device: Some(name.to_string()),
            limit: 10_000_000,
            ..Default::default()
        })?;
        let mut s = StoredEgm::default();
        for r in records {
            match r.kind.as_str() {
                "exception" => s.exceptions.extend(exception_code(&r.payload)),
                "meters" => s.meters += 1,
                k if k.starts_with("link.") => s.link_events += 1,
                _ => {}
            }
        }
        out.insert(name.to_string(), s);
    }
    Ok(out)
}

/// The EGMs' records as the hub holds them, in sequence order.
struct EgmOutbox {
    /// Exception codes delivered, per device, in order.
    exceptions: BTreeMap<String, Vec<u8>>,
    meters: u64,
}

impl EgmOutbox {
    fn from_hub(held: &[HubRecord]) -> EgmOutbox {
        let mut sorted: Vec<&HubRecord> = held
            .iter()
            .filter(|r| DEMO_EGMS.iter().any(|(_, n)| *n == r.device))
            .collect();
        sorted.sort_by_key(|r| r.seq);
        let mut out = EgmOutbox {
            exceptions: BTreeMap::new(),
            meters: 0,
        };
        for r in sorted {
            match r.kind.as_str() {
                "exception" => out
                    .exceptions
                    .entry(r.device.clone())
                    .or_default()
                    .extend(exception_code(&r.payload)),
                "meters" => out.meters += 1,
                _ => {}
            }
        }
        out
    }
}

/// What the hub holds of the generators.
#[derive(Debug, Default, Clone)]
struct Delivered {
    /// Per generator device: the counters seen.
    counters: BTreeMap<String, Counters>,
}

impl Delivered {
    fn from_hub(held: &[HubRecord]) -> Delivered {
        let mut ticks: Vec<&HubRecord> = held
            .iter()
            .filter(|r| r.kind == crate::generator::KIND)
            .collect();
        ticks.sort_by_key(|r| r.seq);
        let mut d = Delivered::default();
        for r in ticks {
            if let Ok(t) = serde_json::from_str::<crate::generator::Tick>(&r.payload) {
                d.counters.entry(r.device.clone()).or_default().see(t.n);
            }
        }
        d
    }
}

/// The run of counters one generator delivered.
#[derive(Debug, Default, Clone, PartialEq)]
struct Counters {
    first: Option<u64>,
    last: Option<u64>,
    /// Distinct counters delivered.
    distinct: u64,
    /// Counters delivered more than once (must stay 0).
    repeated: u64,
    /// Counters skipped between `first` and `last`.
    missing: u64,
}

impl Counters {
    fn see(&mut self, n: u64) {
        match self.last {
            None => {
                self.first = Some(n);
                self.distinct = 1;
            }
            Some(last) if n > last => {
                self.missing += n - last - 1;
                self.distinct += 1;
            }
            Some(_) => self.repeated += 1,
        }
        self.last = Some(self.last.map_or(n, |l| l.max(n)));
    }
}

/// How long the demo waits at the end for the agent to deliver the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Records the store holds per simulated TV.
fn stored_by_tv(db: &Path) -> Result<BTreeMap<String, u64>, DemoError> {
    let reader = Reader::open(db)?;
    let mut out = BTreeMap::new();
    for name in DEMO_TVS {
        let n = reader
            .records(&RecordFilter {
                device: Some(name.to_string()),
                limit: 10_000_000,
                ..Default::default()
            })?
            .len();
        out.insert(name.to_string(), n as u64);
    }
    Ok(out)
}

/// Waits (bounded) until the TV's state says `connected`.
async fn tv_connected(db: &Path, tv: &str, within: Duration) -> bool {
    let started = tokio::time::Instant::now();
    while started.elapsed() < within {
        let (db, tv) = (db.to_path_buf(), tv.to_string());
        let up = tokio::task::spawn_blocking(move || {
            Reader::open(&db)
                .and_then(|r| r.devices())
                .map(|ds| {
                    ds.iter().any(|d| {
                        d.device == tv && d.state.as_ref().is_some_and(|s| s["tv"] == "connected")
                    })
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Whether the agent's store is all acknowledged by the hub.
async fn drained(db: &Path) -> bool {
    let db = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let r = Reader::open(&db)?;
        Ok::<_, crate::store::StoreError>(r.acked()? >= r.highest_seq()?)
    })
    .await
    .is_ok_and(|r| r.unwrap_or(false))
}

/// Records the hub holds of the demo agent (0 until its file exists).
async fn hub_count(dir: &Path) -> u64 {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || SqliteHub::open_read(&dir)?.count("demo"))
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(0, |n| n.max(0) as u64)
}

/// Length of the longest common subsequence: how many of `a` appear in `b`
/// in order.
fn matched(a: &[u8], b: &[u8]) -> u64 {
    let mut row = vec![0u64; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// The EGM rows and the notes that say how they count.
fn egm_totals(
    entries: &[Entry],
    polls: u64,
    stored: &BTreeMap<String, StoredEgm>,
    outbox: &EgmOutbox,
    journal: &Path,
) -> (Vec<DeviceTotals>, Vec<String>) {
    let mut rows = Vec::new();
    let (mut raised_all, mut queued_all, mut in_flight_all, mut dropped_all) = (0, 0, 0, 0);
    for &(address, name) in &DEMO_EGMS {
        let mut codes = BTreeMap::new();
        let mut acked = Vec::new();
        let mut dropped = 0u64;
        for e in entries {
            match *e {
                Entry::Exception {
                    address: a,
                    seq,
                    code,
                    ..
                } if a == address => {
                    codes.insert(seq, code);
                }
                Entry::Acked {
                    address: a, seq, ..
                } if a == address => acked.push(seq),
                Entry::Dropped {
                    address: a, seq, ..
                } if a == address => {
                    codes.remove(&seq);
                    dropped += 1;
                }
                _ => {}
            }
        }
        let raised = codes.len() as u64 + dropped;
        let produced: Vec<u8> = acked.iter().filter_map(|s| codes.get(s).copied()).collect();
        for s in &acked {
            codes.remove(s);
        }
        let queued: Vec<u8> = codes.values().copied().collect();
        let delivered = outbox.exceptions.get(name).map_or(&[][..], Vec::as_slice);
        let mut hit = matched(&produced, delivered);
        let mut produced_n = produced.len() as u64;
        // The last exception read before the poller stopped was stored, but
        // no later poll acknowledged it: the EGM still holds it. It counts as
        // produced (the EGM sent it and the host has it), once.
        if let Some((last, before)) = delivered.split_last()
            && queued.contains(last)
            && matched(&produced, before) == hit
        {
            produced_n += 1;
            hit += 1;
            in_flight_all += 1;
        }
        raised_all += raised;
        queued_all += queued.len() as u64;
        dropped_all += dropped;
        rows.push(DeviceTotals {
            device: name.to_string(),
            class: "exception".to_string(),
            produced: produced_n,
            stored: stored.get(name).map_or(0, |s| s.exceptions.len() as u64),
            delivered: hit,
            repeated: delivered.len() as u64 - hit,
            lost: produced_n - hit,
        });
    }
    let meters_stored: u64 = stored.values().map(|s| s.meters).sum();
    let link_events: u64 = stored.values().map(|s| s.link_events).sum();
    let notes = vec![
        format!(
            "slot-N: simulated SAS EGMs on a PTY. produced = exceptions the EGM let go on the host's implied ACK (journal: {}),",
            journal.display()
        ),
        format!(
            "        plus {in_flight_all} the host had stored but not yet acknowledged when it stopped; delivered = stored by the hub, in order, once"
        ),
        format!(
            "SAS line: {raised_all} exceptions raised, {queued_all} still queued in the EGMs at the stop, {dropped_all} dropped (EGM queue full); \
             {polls} polls answered; meters records {meters_stored} stored, {} delivered; link events {link_events} stored",
            outbox.meters
        ),
    ];
    (rows, notes)
}

#[cfg(test)]
mod tests {
    use super::Counters;

    #[test]
    fn counters_find_missing_and_repeated_numbers() {
        let mut c = Counters::default();
        for n in [5, 6, 7, 9, 9, 12] {
            c.see(n);
        }
        assert_eq!(c.first, Some(5));
        assert_eq!(c.last, Some(12));
        assert_eq!(c.distinct, 5);
        assert_eq!(c.repeated, 1);
        assert_eq!(c.missing, 3);
    }
}
