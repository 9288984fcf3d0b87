//! Ingest benchmarks on a real SQLite file: durable group commit against one
//! commit per record and against a bare rusqlite loop, the outbox drain
//! (read, ack, trim), and the resident memory of an idle daemon.
//!
//! A plain `main` (no criterion): `cargo bench --bench ingest` prints one
//! table. Everything runs in a temporary directory on the disk that holds the
//! target directory (never tmpfs), or under `BENCH_DIR` if set.
//!
//! Knobs (environment variables, defaults in brackets):
//! `BENCH_RECORDS` [1000000] records for row 1 and the bare loop (row 3);
//! `BENCH_MAX_S` [20] row 1 sends nothing new after this many seconds;
//! `BENCH_SINGLE_RECORDS` [5000] and `BENCH_SINGLE_MAX_S` [4]: the same for
//! the closed-loop rows 1b and 2;
//! `BENCH_OUTBOX_RECORDS` [200000] records stored, then drained (rows 4, 4b);
//! `BENCH_PRODUCERS` [32] producer tasks; `BENCH_BATCH` [16] records per
//! send in row 1; `BENCH_DEPTH` [4] sends each producer keeps in flight in row 1;
//! `BENCH_COMMIT_RECORDS` [1000] the group-commit size;
//! `BENCH_RSS_WAIT_MS` [3000] how long the idle daemon runs before its RSS is read;
//! `BENCH_DIR` [TARGET/bench-tmp] where the temporary directories go;
//! `BENCH_BIN` [TARGET/release/sitelink] the binary for row 5.

use rusqlite::{Connection, params};
use sitelink::clock::Stamp;
use sitelink::config::Quotas;
use sitelink::generator::payload;
use sitelink::store::{Class, NewRecord, Policy, Store, StoreHandle, StoreOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

// Each benchmark uses only part of what they share.
#[allow(dead_code)]
mod common;
use common::{Row, bench_root, int, knob, print_table, row, target_dir};

/// Payload bytes of every record.
const RECORD_BYTES: usize = 200;
/// The group-commit window.
const COMMIT_WINDOW: Duration = Duration::from_millis(10);
/// Records per transaction in the bare rusqlite loop.
const BARE_TX: usize = 1000;
/// Records per read in the outbox drain.
const OUTBOX_BATCH: usize = 1000;
/// The goals.
const GOAL_RECORDS_PER_S: f64 = 50_000.0;
const GOAL_RSS_MIB: f64 = 10.0;

/// The file-system type holding `path`, from statfs(2).
fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "?".into();
    };
    // SAFETY: statfs only writes into the struct we pass; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "?".into();
    }
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs (NOT a disk: figures are meaningless)".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x0000_6969 => "nfs".into(),
        other => format!("0x{other:x}"),
    }
}

fn policy(commit_records: usize, retention: Duration) -> Policy {
    let big = 1_000_000_000_000;
    Policy {
        commit_records,
        commit_window: COMMIT_WINDOW,
        quota: Quotas {
            event: big,
            accounting: big,
            metric: big,
        },
        min_free_bytes: 0,
        retention,
    }
}

fn open_store(dir: &Path, policy: Policy) -> Store {
    Store::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: "bench-agent".into(),
        boot_id: "bench-boot".into(),
        policy,
        // What the daemon uses.
        channel_capacity: 4096,
    })
    .expect("the store opens")
}

fn record(device: &str, n: u64) -> NewRecord {
    NewRecord::new(
        Class::Accounting,
        device,
        "meters",
        payload(n, RECORD_BYTES),
    )
}

/// Per-record latency, in microseconds, sorted.
struct Latencies(Vec<u32>);

impl Latencies {
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

struct Ingest {
    records: u64,
    elapsed: Duration,
    latencies: Latencies,
}

impl Ingest {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Clone, Copy)]
struct Load {
    records: usize,
    producers: usize,
    batch: usize,
    depth: usize,
    /// No new sends after this long (what was sent still completes).
    limit: Duration,
}

/// `producers` tasks on a 2-worker runtime, each keeping `depth` sends of
/// `batch` records in flight and waiting for every completion. A record's
/// latency is its send call's: from the hand-over to the commit's answer.
fn ingest(dir: &Path, commit_records: usize, load: Load) -> Ingest {
    let store = open_store(dir, policy(commit_records, Duration::from_secs(3600)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let per_producer = load.records.div_ceil(load.producers);
    let started = Instant::now();
    let (records, mut lat) = rt.block_on(async {
        let mut producers = JoinSet::new();
        for p in 0..load.producers {
            let h = store.handle();
            let n = per_producer.min(load.records.saturating_sub(p * per_producer));
            let stop = started + load.limit;
            producers.spawn(produce(h, p, n, load.batch, load.depth, stop));
        }
        let mut records = 0u64;
        let mut lat = Vec::with_capacity(load.records);
        while let Some(r) = producers.join_next().await {
            let (n, l) = r.expect("producer");
            records += n;
            lat.extend(l);
        }
        (records, lat)
    });
    let elapsed = started.elapsed();
    drop(rt);
    store.close();
    lat.sort_unstable();
    Ingest {
        records,
        elapsed,
        latencies: Latencies(lat),
    }
}

async fn produce(
    h: StoreHandle,
    p: usize,
    n: usize,
    batch: usize,
    depth: usize,
    stop: Instant,
) -> (u64, Vec<u32>) {
    let device: Arc<str> = format!("egm-{p:03}").into();
    let mut in_flight: JoinSet<(usize, Duration)> = JoinSet::new();
    let mut lat = Vec::with_capacity(n);
    let mut done = 0u64;
    let mut collect = |r: Result<(usize, Duration), tokio::task::JoinError>| {
        let (k, d) = r.expect("send task");
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        lat.extend(std::iter::repeat_n(us, k));
        done += k as u64;
    };
    let mut next = 0;
    while next < n && Instant::now() < stop {
        let k = batch.min(n - next);
        let records: Vec<NewRecord> = (next..next + k)
            .map(|i| record(&device, (p * n + i) as u64))
            .collect();
        next += k;
        let h = h.clone();
        let sent = Instant::now();
        in_flight.spawn(async move {
            let seqs = if k == 1 {
                let r = records.into_iter().next().expect("one record");
                vec![h.append(r).await.expect("append commits")]
            } else {
                h.append_batch(records).await.expect("append commits")
            };
            assert_eq!(seqs.len(), k);
            (k, sent.elapsed())
        });
        if in_flight.len() >= depth
            && let Some(r) = in_flight.join_next().await
        {
            collect(r);
        }
    }
    while let Some(r) = in_flight.join_next().await {
        collect(r);
    }
    (done, lat)
}

/// The loop a user would write by hand: one connection, WAL,
/// synchronous=FULL, a prepared INSERT, a transaction per `BARE_TX` records.
fn bare(dir: &Path, records: usize) -> (u64, Duration) {
    let conn = Connection::open(dir.join("bare.db")).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("WAL");
    assert!(mode.eq_ignore_ascii_case("wal"), "journal_mode {mode}");
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE records (
             seq INTEGER PRIMARY KEY,
             class INTEGER NOT NULL,
             device TEXT NOT NULL,
             kind TEXT NOT NULL,
             payload TEXT NOT NULL,
             wall_ms INTEGER NOT NULL,
             mono_ms INTEGER NOT NULL,
             boot INTEGER NOT NULL,
             synced INTEGER NOT NULL,
             agent INTEGER NOT NULL
         );",
    )
    .expect("schema");
    let started = Instant::now();
    let mut seq = 0i64;
    while (seq as usize) < records {
        let tx = conn.unchecked_transaction().expect("begin");
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO records(seq, class, device, kind, payload, wall_ms, mono_ms, boot, synced, agent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .expect("prepare");
            let end = (seq as usize + BARE_TX).min(records) as i64;
            while seq < end {
                let device = format!("egm-{:03}", seq % 32);
                let payload = payload(seq as u64, RECORD_BYTES);
                let stamp = Stamp::now();
                ins.execute(params![
                    seq,
                    Class::Accounting.code(),
                    device,
                    "meters",
                    payload,
                    stamp.wall_ms,
                    stamp.mono_ms,
                    1,
                    stamp.synced,
                    1
                ])
                .expect("insert");
                seq += 1;
            }
        }
        tx.commit().expect("commit");
    }
    (seq as u64, started.elapsed())
}

struct Outbox {
    records: u64,
    elapsed: Duration,
    left: i64,
}

/// How the outbox drain confirms a batch.
#[derive(Clone, Copy, PartialEq)]
enum Confirm {
    /// `ack_blocking(last)`, as `sim::sink` does.
    Ack,
    /// `ack(last)` and `trim()` sent together: a trim makes the writer
    /// commit at once instead of waiting out the commit window.
    AckWithTrim,
}

/// Stores `records` (untimed), then drains them as the uplink would:
/// `read_batch` of `OUTBOX_BATCH`, ack the last, with retention zero so the
/// ack deletes what it covers.
fn outbox(dir: &Path, records: usize, commit_records: usize, confirm: Confirm) -> Outbox {
    let store = open_store(dir, policy(commit_records, Duration::ZERO));
    let h = store.handle();
    let mut n = 0;
    while n < records {
        let k = 5000.min(records - n);
        h.append_batch_blocking((n..n + k).map(|i| record("egm-000", i as u64)).collect())
            .expect("fill");
        n += k;
    }
    // Records stamped in the current millisecond are not yet "older than now".
    std::thread::sleep(Duration::from_millis(5));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reader = store.reader().expect("reader");
    let mut after = reader.acked().expect("acked");
    let mut drained = 0u64;
    let started = Instant::now();
    loop {
        let batch = reader.read_batch(after, OUTBOX_BATCH).expect("read_batch");
        let Some(last) = batch.last() else { break };
        after = last.seq;
        drained += batch.len() as u64;
        match confirm {
            Confirm::Ack => h.ack_blocking(after).expect("ack"),
            Confirm::AckWithTrim => rt.block_on(async {
                let (a, t) = tokio::join!(h.ack(after), h.trim());
                a.expect("ack");
                t.expect("trim");
            }),
        }
    }
    let elapsed = started.elapsed();
    let left: i64 = reader
        .status()
        .expect("status")
        .classes
        .iter()
        .map(|c| c.rows)
        .sum();
    drop(reader);
    store.close();
    Outbox {
        records: drained,
        elapsed,
        left,
    }
}

/// What the idle daemon showed.
struct Idle {
    rss_mib: f64,
    /// Its exit after SIGTERM, and how long that took.
    stop: String,
}

/// The resident memory of `sitelink run` with no devices, or why it could
/// not be measured.
fn idle_rss(root: &Path, bin: &Path) -> Result<Idle, String> {
    if !bin.is_file() {
        return Err(format!(
            "no binary at {}: run `cargo build --release` first (scripts/bench does)",
            bin.display()
        ));
    }
    let tmp = tempfile::tempdir_in(root).map_err(|e| e.to_string())?;
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("sitelink.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = \"{}\"\nlog_level = \"warn\"\n",
            data.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let wait = Duration::from_millis(knob("BENCH_RSS_WAIT_MS", 3000) as u64);
    let started = Instant::now();
    while started.elapsed() < wait {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let why = err
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message");
            let why: String = why.chars().take(110).collect();
            return Err(format!(
                "exited ({status}) after {:.1} s: {why}",
                started.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    let opened = data.join(sitelink::store::DB_FILE).is_file();
    let rss_kb = common::rss_kb(pid);
    // SAFETY: kill(2) on the pid of the child we started and still own.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let asked = Instant::now();
    let mut exit = None;
    while asked.elapsed() < Duration::from_secs(10) {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            exit = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stop = match exit {
        Some(st) => match st.code() {
            Some(c) => format!(
                "SIGTERM: exit {c} in {:.2} s",
                asked.elapsed().as_secs_f64()
            ),
            None => format!("SIGTERM: {st}"),
        },
        None => {
            let _ = child.kill();
            let _ = child.wait();
            "SIGTERM: still running after 10 s, killed".to_string()
        }
    };
    if !opened {
        return Err(format!(
            "ran {:.1} s but no database appeared in its data_dir",
            wait.as_secs_f64()
        ));
    }
    let rss_kb = rss_kb.ok_or("no VmRSS in /proc/PID/status")?;
    Ok(Idle {
        rss_mib: rss_kb as f64 / 1024.0,
        stop,
    })
}

fn latency_row(i: &Ingest) -> Row {
    row(
        "",
        "  send-to-commit latency p50 / p99",
        format!(
            "{:.1} / {:.1}",
            i.latencies.quantile_ms(0.5),
            i.latencies.quantile_ms(0.99)
        ),
        "ms",
        format!(
            "{} records in {:.2} s",
            int(i.records as f64),
            i.elapsed.as_secs_f64()
        ),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or
    // `--all-targets`) runs this binary without it: nothing to test here.
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("ingest: a benchmark; run it with `cargo bench --bench ingest` or scripts/bench");
        return;
    }
    let records = knob("BENCH_RECORDS", 1_000_000);
    let single_records = knob("BENCH_SINGLE_RECORDS", 5000);
    let outbox_records = knob("BENCH_OUTBOX_RECORDS", 200_000);
    let commit_records = knob("BENCH_COMMIT_RECORDS", 1000).max(1);
    let max_s = Duration::from_secs(knob("BENCH_MAX_S", 20) as u64);
    let single_max_s = Duration::from_secs(knob("BENCH_SINGLE_MAX_S", 4) as u64);
    let load = Load {
        records,
        producers: knob("BENCH_PRODUCERS", 32).max(1),
        batch: knob("BENCH_BATCH", 16).max(1),
        depth: knob("BENCH_DEPTH", 4).max(1),
        limit: max_s,
    };
    // Each producer awaits one single-record append before the next.
    let closed_loop = Load {
        records: single_records,
        batch: 1,
        depth: 1,
        limit: single_max_s,
        ..load
    };
    let bin = match std::env::var("BENCH_BIN") {
        Ok(b) => PathBuf::from(b),
        Err(_) => target_dir()
            .map(|t| t.join("release").join("sitelink"))
            .unwrap_or_else(|| PathBuf::from("target/release/sitelink")),
    };
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    let root = root.canonicalize().unwrap_or(root);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("sitelink ingest benchmark");
    println!("  dir:     {} ({})", root.display(), fs_type(&root));
    println!(
        "  machine: {cores} cores; producers on a 2-worker tokio runtime, plus the store's writer thread"
    );
    println!(
        "  records: {RECORD_BYTES}-byte JSON payloads, class accounting, 1 device per producer"
    );
    println!(
        "  policy:  group commit at {commit_records} records or {} ms; row 2: commit_records = 1",
        COMMIT_WINDOW.as_millis()
    );
    println!(
        "  load 1:  {} producer tasks x {} sends in flight x append_batch of {} = {} records in flight",
        load.producers,
        load.depth,
        load.batch,
        load.producers * load.depth * load.batch
    );
    println!(
        "  load 1b, 2: {} producer tasks, each awaiting append() of one record before the next",
        closed_loop.producers
    );
    println!("  daemon:  {}", bin.display());
    println!();

    let mut rows = Vec::new();
    let tmp = || tempfile::tempdir_in(&root).expect("temp dir");

    eprintln!("1/5 durable ingest, group commit ({records} records)...");
    let g = ingest(tmp().path(), commit_records, load);
    let goal = if g.rate() >= GOAL_RECORDS_PER_S {
        "ok"
    } else {
        "MISSED"
    };
    rows.push(row(
        "1",
        format!(
            "durable ingest, group commit, {}x{} append_batch({})",
            load.producers, load.depth, load.batch
        ),
        int(g.rate()),
        "records/s",
        format!("goal >= {}: {goal}", int(GOAL_RECORDS_PER_S)),
    ));
    rows.push(latency_row(&g));

    eprintln!("1b  durable ingest, group commit, closed loop of append() ...");
    let gc = ingest(tmp().path(), commit_records, closed_loop);
    rows.push(row(
        "1b",
        format!(
            "durable ingest, group commit, {}x1 append (closed loop)",
            closed_loop.producers
        ),
        int(gc.rate()),
        "records/s",
        format!(
            "window-bound: <= {} in flight per {} ms",
            closed_loop.producers,
            COMMIT_WINDOW.as_millis()
        ),
    ));
    rows.push(latency_row(&gc));

    eprintln!("2/5 durable ingest, one commit per record ({single_records} records)...");
    let s = ingest(tmp().path(), 1, closed_loop);
    rows.push(row(
        "2",
        format!(
            "durable ingest, commit per record, {}x1 append",
            closed_loop.producers
        ),
        int(s.rate()),
        "records/s",
        format!(
            "1/2 = {:.0}x, 1b/2 = {:.2}x",
            g.rate() / s.rate(),
            gc.rate() / s.rate()
        ),
    ));
    rows.push(latency_row(&s));

    eprintln!("3/5 bare rusqlite loop ({records} records)...");
    let (bn, be) = bare(tmp().path(), records);
    let bare_rate = bn as f64 / be.as_secs_f64();
    rows.push(row(
        "3",
        format!("bare rusqlite: WAL, sync=FULL, tx of {BARE_TX}, prepared"),
        int(bare_rate),
        "records/s",
        format!("ours/bare = {:.2} (row 1 / row 3)", g.rate() / bare_rate),
    ));

    eprintln!("4/5 outbox drain ({outbox_records} records, twice)...");
    for (id, confirm, name) in [
        ("4", Confirm::Ack, "ack_blocking"),
        ("4b", Confirm::AckWithTrim, "ack + trim together"),
    ] {
        let o = outbox(tmp().path(), outbox_records, commit_records, confirm);
        rows.push(row(
            id,
            format!("outbox: read_batch({OUTBOX_BATCH}) + {name}, retention 0"),
            int(o.records as f64 / o.elapsed.as_secs_f64()),
            "records/s",
            format!(
                "{} records in {:.2} s, {} rows left",
                int(o.records as f64),
                o.elapsed.as_secs_f64(),
                o.left
            ),
        ));
    }

    eprintln!("5/5 idle daemon RSS...");
    let name = "idle daemon RSS (sitelink run, no devices)";
    match idle_rss(&root, &bin) {
        Ok(idle) => rows.push(row(
            "5",
            name,
            format!("{:.1}", idle.rss_mib),
            "MiB",
            format!(
                "goal < {GOAL_RSS_MIB}: {}; {}",
                if idle.rss_mib < GOAL_RSS_MIB {
                    "ok"
                } else {
                    "MISSED"
                },
                idle.stop
            ),
        )),
        Err(why) => rows.push(row(
            "5",
            name,
            "n/a".into(),
            "MiB",
            format!("daemon not runnable: {why}"),
        )),
    }

    println!();
    print_table(&rows, "goal / ratio");
}
