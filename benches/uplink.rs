//! Uplink benchmarks: the agent's uplink client and the hub in one process,
//! over mutual TLS on loopback, with real SQLite files on both sides.
//!
//! Row 1: a backlog of records is stored first, then drained to the hub;
//! records per second from the first connection to the last acknowledgement.
//! Row 2: a steady load of 1 000 records per second; the time from the
//! agent's store commit to the hub's commit of each record (p50, p99, max).
//!
//! A plain `main`: `cargo bench --bench uplink` prints one table. Knobs
//! (environment variables, defaults in brackets):
//! `BENCH_UPLINK_RECORDS` [1000000] the backlog of row 1;
//! `BENCH_UPLINK_BATCH` [2000] records per batch; `BENCH_UPLINK_WINDOW` [8]
//! batches in flight; `BENCH_UPLINK_STEADY_S` [10] seconds of row 2;
//! `BENCH_UPLINK_RATE` [1000] its records per second; `BENCH_UPLINK_BATCH_MS`
//! [5] how long row 2's records may wait for a batch;
//! `BENCH_DIR` [TARGET/bench-tmp] where the temporary directories go.

use sitelink::config::{Quotas, UpstreamConfig};
use sitelink::daemon::dispatch::Dispatcher;
use sitelink::daemon::task::Heartbeat;
use sitelink::generator::payload;
use sitelink::hub::store::{HubFilter, SqliteHub};
use sitelink::hub::{Hub, HubOptions};
use sitelink::store::{Class, NewRecord, Policy, Reader, Store, StoreOptions};
use sitelink::uplink::UplinkState;
use sitelink::uplink::client::{self, UplinkContext};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

// Each benchmark uses only part of what they share.
#[allow(dead_code)]
mod common;
use common::{Lat, bench_root, int, knob, print_table, row};

const AGENT: &str = "bench-agent";
const RECORD_BYTES: usize = 200;
const GOAL_RECORDS_PER_S: f64 = 50_000.0;

fn open_store(dir: &Path) -> Store {
    let big = 1_000_000_000_000;
    Store::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: AGENT.into(),
        boot_id: "bench-boot".into(),
        policy: Policy {
            commit_records: 1000,
            commit_window: Duration::from_millis(10),
            quota: Quotas {
                event: big,
                accounting: big,
                metric: big,
            },
            min_free_bytes: 0,
            retention: Duration::from_secs(3600),
        },
        channel_capacity: 4096,
    })
    .expect("the store opens")
}

fn upstream(
    pki: &Path,
    addr: std::net::SocketAddr,
    batch: usize,
    window: usize,
    wait: Duration,
) -> UpstreamConfig {
    UpstreamConfig {
        url: format!("wss://{addr}"),
        host: addr.ip().to_string(),
        port: addr.port(),
        path: "/".into(),
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("agent-{AGENT}.pem")),
        key: pki.join(format!("agent-{AGENT}.key")),
        batch_records: batch,
        batch_wait: wait,
        window,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        ping_every: Duration::from_secs(5),
        dead_after: Duration::from_secs(30),
    }
}

struct Uplink {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_uplink(store: &Store, cfg: UpstreamConfig) -> Uplink {
    let (config_tx, config) = watch::channel(cfg);
    let (stop, shutdown) = watch::channel(false);
    let ctx = UplinkContext {
        agent: AGENT.into(),
        store: store.handle(),
        db_path: store.db_path().to_path_buf(),
        dispatcher: Dispatcher::start(store.handle()),
        config_path: "/nonexistent/sitelink.toml".into(),
        reloads: None,
        updates: None,
        config,
        shutdown,
        state: UplinkState::default(),
        heartbeat: Heartbeat::new("uplink"),
    };
    let task = tokio::spawn(async move {
        let _keep = config_tx;
        client::run(ctx).await
    });
    Uplink { stop, task }
}

impl Uplink {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn make_pki(dir: &Path) {
    sitelink::pki::init(dir, false).expect("CA");
    sitelink::pki::issue_agent(dir, AGENT, false).expect("agent certificate");
    sitelink::pki::issue_hub(dir, &["127.0.0.1".into()], false).expect("hub certificate");
}

async fn start_hub(dir: &Path) -> Hub {
    Hub::start(HubOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        pki: dir.join("pki"),
        data: dir.join("hub"),
    })
    .await
    .expect("hub")
}

async fn acked(db: &Path) -> (u64, u64) {
    let db = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let r = Reader::open(&db).expect("reader");
        (r.acked().expect("acked"), r.highest_seq().expect("highest"))
    })
    .await
    .expect("read")
}

struct Drain {
    records: usize,
    elapsed: Duration,
    held: i64,
}

async fn drain(dir: &Path, records: usize, batch: usize, window: usize) -> Drain {
    let store = open_store(&dir.join("agent"));
    let h = store.handle();
    let mut n = 0;
    while n < records {
        let k = 5000.min(records - n);
        let batch: Vec<NewRecord> = (n..n + k)
            .map(|i| {
                NewRecord::new(
                    Class::Accounting,
                    "egm-001",
                    "meters",
                    payload(i as u64, RECORD_BYTES),
                )
            })
            .collect();
        h.append_batch(batch).await.expect("append");
        n += k;
    }
    let hub = start_hub(dir).await;
    let started = Instant::now();
    let up = start_uplink(
        &store,
        upstream(
            &dir.join("pki"),
            hub.addr,
            batch,
            window,
            Duration::from_millis(10),
        ),
    );
    let db = store.db_path().to_path_buf();
    loop {
        let (a, highest) = acked(&db).await;
        if a >= highest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    up.stop().await;
    hub.stop().await;
    let hub_dir = dir.join("hub");
    let held = tokio::task::spawn_blocking(move || {
        SqliteHub::open_read(&hub_dir)
            .expect("hub")
            .count(AGENT)
            .expect("count")
    })
    .await
    .expect("count");
    drop(store);
    Drain {
        records,
        elapsed,
        held,
    }
}

struct Steady {
    records: usize,
    /// Store commit to hub commit, sorted.
    latencies: Lat,
}

async fn steady(dir: &Path, rate: usize, secs: u64, batch_wait: Duration) -> Steady {
    let store = open_store(&dir.join("agent"));
    let hub = start_hub(dir).await;
    let up = start_uplink(
        &store,
        upstream(&dir.join("pki"), hub.addr, 1000, 8, batch_wait),
    );
    let h = store.handle();
    // Ten records every 10 ms; each one's commit time as the agent saw it.
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut committed: HashMap<u64, i64> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        let batch: Vec<NewRecord> = (0..per_tick)
            .map(|_| {
                n += 1;
                NewRecord::new(Class::Event, "egm-001", "door", payload(n, RECORD_BYTES))
            })
            .collect();
        let seqs = h.append_batch(batch).await.expect("append");
        let at = sitelink::clock::wall_ms();
        committed.extend(seqs.into_iter().map(|s| (s, at)));
    }
    let db = store.db_path().to_path_buf();
    loop {
        let (a, highest) = acked(&db).await;
        if a >= highest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    up.stop().await;
    hub.stop().await;
    let hub_dir = dir.join("hub");
    let held = tokio::task::spawn_blocking(move || {
        SqliteHub::open_read(&hub_dir)
            .expect("hub")
            .records(&HubFilter::default())
            .expect("records")
    })
    .await
    .expect("read hub");
    // Whole milliseconds on both clocks; Lat holds microseconds.
    let mut latencies = Lat(held
        .iter()
        .filter_map(|r| {
            let ms = r.received_ms - committed.get(&r.seq)?;
            Some(u64::try_from(ms.max(0)).ok()? * 1000)
        })
        .collect());
    latencies.sort();
    drop(store);
    Steady {
        records: committed.len(),
        latencies,
    }
}

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("uplink: a benchmark; run it with `cargo bench --bench uplink` or scripts/bench");
        return;
    }
    let records = knob("BENCH_UPLINK_RECORDS", 1_000_000).max(1);
    let batch = knob("BENCH_UPLINK_BATCH", 2000).clamp(1, 10_000);
    let window = knob("BENCH_UPLINK_WINDOW", 8).clamp(1, 64);
    let steady_s = knob("BENCH_UPLINK_STEADY_S", 10).max(1) as u64;
    let rate = knob("BENCH_UPLINK_RATE", 1000).max(100);
    let batch_ms = knob("BENCH_UPLINK_BATCH_MS", 5).max(1) as u64;
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    println!("sitelink uplink benchmark (agent and hub in one process, mutual TLS on loopback)");
    println!("  dir: {}", root.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();

    let dir = tempfile::tempdir_in(&root).expect("temp dir");
    make_pki(&dir.path().join("pki"));
    let d = rt.block_on(drain(dir.path(), records, batch, window));
    let per_s = d.records as f64 / d.elapsed.as_secs_f64();
    rows.push(row(
        "1",
        format!(
            "drain a backlog of {} records to a local hub",
            int(d.records as f64)
        ),
        int(per_s),
        "records/s",
        format!(
            "goal ≥ {}: {}; {:.1} s; batches of {batch}, window {window}; the hub holds {}",
            int(GOAL_RECORDS_PER_S),
            if per_s >= GOAL_RECORDS_PER_S {
                "met"
            } else {
                "MISSED"
            },
            d.elapsed.as_secs_f64(),
            int(d.held as f64)
        ),
    ));

    let dir = tempfile::tempdir_in(&root).expect("temp dir");
    make_pki(&dir.path().join("pki"));
    let s = rt.block_on(steady(
        dir.path(),
        rate,
        steady_s,
        Duration::from_millis(batch_ms),
    ));
    let note = format!(
        "{} records at {rate}/s for {steady_s} s, batch_ms {batch_ms}; agent commit to the hub's stamp in the transaction it commits",
        int(s.records as f64)
    );
    for (id, name, q) in [("2", "p50", 0.5), ("2b", "p99", 0.99), ("2c", "max", 1.0)] {
        rows.push(row(
            id,
            format!("store commit → hub commit, {name}"),
            format!("{:.0}", s.latencies.q(q)),
            "ms",
            note.clone(),
        ));
    }
    print_table(&rows, "notes");
}
