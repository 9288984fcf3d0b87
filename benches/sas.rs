//! SAS benchmarks: polls per second and CPU per poll on one simulated line
//! with no delays, and the time from an exception raised in the simulator to
//! its commit in the store.
//!
//! A plain `main` (no criterion): `cargo bench --bench sas` prints one table.
//!
//! - Rows 1a/1b, the protocol core: `sas::proto::Link` (the host's state
//!   machine, one per EGM, scheduled as the poller does) against the EGM
//!   model (`sim::egm::model::Line`) in one thread, bytes handed over in
//!   memory, on a virtual clock (no sleeping: each wait jumps to the next
//!   deadline). Polls/s is wall-clock throughput; CPU is the thread's.
//! - Rows 2a/2b, the agent over a PTY: `Daemon::start` with one `[[sas]]`
//!   line at the minimum `poll_interval_ms` the config allows (40 ms), the
//!   simulator in-process (`sim::egm::serve::spawn`, its own thread, its
//!   journal in the row's temporary directory) on the PTY, no faults. Polls
//!   are those the simulated EGMs heard (`Served::polls`); CPU is getrusage
//!   of the whole process over the window, and the same minus the simulator's
//!   and the measuring reader's threads (their on-CPU time from
//!   /proc/self/task/*/schedstat).
//! - Latency, rows 2a/2b: every exception's raise time is the simulator's
//!   journal `t_ms` on its line start `Instant` (whole ms, floored: up to 1 ms
//!   early, so the latency is overstated by < 1 ms). Its commit time is when a
//!   reader thread polling the store every `BENCH_SAS_READER_US` saw its
//!   record (committed data only: SQLite WAL), stamped with `Instant::now()`
//!   — the same process clock. Journal and store are matched per EGM in
//!   order (the journal's acknowledgements against the store's records).
//!
//! Knobs (environment variables, defaults in brackets):
//! `BENCH_SAS_CORE_POLLS` [300000] polls per core row;
//! `BENCH_SAS_S` [12] seconds measured per PTY row (after `BENCH_SAS_WARMUP_MS`
//! [1000] of link-up); `BENCH_SAS_GAME_RATE` [4] games per second per EGM;
//! `BENCH_SAS_READER_US` [500] the reader's polling period;
//! `BENCH_SAS_DUMP` [unset] a path: rows 2a/2b write the simulator's journal
//! and the reader's sightings to PATH.1 and PATH.4;
//! `BENCH_DIR` [TARGET/bench-tmp] where the temporary directories go.

use sitelink::sas::proto::{Link, LinkConfig, LinkEvent};
use sitelink::sim::egm::serve::{self, ServeConfig, Transport, UnplugMode, UnplugPlan};
use sitelink::sim::egm::{EgmConfig, Entry, FaultPlan, Line, journal};
use sitelink::store::Reader;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// Each benchmark uses only part of what they share.
#[allow(dead_code)]
mod common;
use common::{Lat, bench_root, int, knob, print_table, row};

/// The smallest `poll_interval_ms` the config accepts.
const POLL_INTERVAL: Duration = Duration::from_millis(40);
/// The goal for the p99 from raise to commit: 50 ms plus the poll interval.
const GOAL_P99: Duration = Duration::from_millis(50 + 40);

/// What the simulated EGMs do during a row.
#[derive(Clone, Copy)]
enum Load {
    /// Games per second per EGM; each raises 2 or more exceptions at once.
    Games(f64),
    /// Slot-door openings per second per EGM, no games: every exception
    /// (door open, door closed 3 s later) comes alone.
    Doors(f64),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Games(r) => write!(f, "{r} games/s"),
            Load::Doors(r) => write!(f, "{r} door openings/s, no games"),
        }
    }
}

fn egms(n: u8, load: Load) -> Vec<EgmConfig> {
    let (game_rate, door_rate) = match load {
        Load::Games(r) => (r, 0.0),
        Load::Doors(r) => (0.0, r),
    };
    (1..=n)
        .map(|a| EgmConfig {
            game_rate,
            door_rate,
            ..EgmConfig::new(a)
        })
        .collect()
}

struct Core {
    polls: u64,
    wall: Duration,
    cpu: Duration,
    exceptions: u64,
    virtual_s: f64,
}

/// The host's links against the EGM model, in memory, on a virtual clock.
fn core(n: u8, polls: u64, game_rate: f64) -> Core {
    let t0 = Instant::now();
    let mut now = t0;
    let config = LinkConfig {
        poll_interval: POLL_INTERVAL,
        ..LinkConfig::default()
    };
    let mut line = Line::new(
        egms(n, Load::Games(game_rate)),
        FaultPlan::default(),
        7,
        now,
    )
    .expect("EGMs");
    let mut links: Vec<Link> = (1..=n)
        .map(|a| Link::new(a, config.clone(), now).expect("address"))
        .collect();
    let mut sent = 0u64;
    let mut exceptions = 0u64;
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    while sent < polls {
        let _chirps = line.tick(now);
        drop(line.take_journal());
        // As the poller: a pending retry first, else whoever is due first.
        let i = links
            .iter()
            .position(Link::retry_pending)
            .or_else(|| (0..links.len()).min_by_key(|&i| links[i].poll_timeout()))
            .unwrap_or(0);
        let due = links[i].poll_timeout();
        if due > now {
            now = due;
            continue;
        }
        let Some(tx) = links[i].poll_transmit(now) else {
            now += Duration::from_millis(1);
            continue;
        };
        sent += 1;
        for (j, l) in links.iter_mut().enumerate() {
            if j != i {
                l.note_foreign_poll(now);
            }
        }
        // A new frame: the line was quiet since the last reply.
        line.idle();
        let replies = line.receive(now, &tx.bytes);
        let wire = sitelink::sas::proto::link::BYTE_TIME * tx.bytes.len() as u32;
        for r in replies {
            let at = now + wire + sitelink::sas::proto::link::BYTE_TIME * r.bytes.len() as u32;
            links[i].handle_bytes(at, &r.bytes);
        }
        if links[i].awaiting_reply() {
            now = now.max(links[i].poll_timeout());
            links[i].handle_timeout(now);
        } else {
            now += wire;
        }
        while let Some(ev) = links[i].poll_event() {
            if matches!(ev, LinkEvent::Exception(_)) {
                exceptions += 1;
            }
        }
    }
    Core {
        polls: sent,
        wall: wall0.elapsed(),
        cpu: thread_cpu().saturating_sub(cpu0),
        exceptions,
        virtual_s: now.duration_since(t0).as_secs_f64(),
    }
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) of the whole process.
fn process_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// On-CPU time of this process's threads named `name`, from schedstat.
fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// An exception record as the reader first saw it committed.
struct Seen {
    device: String,
    code: u8,
    at: Instant,
}

/// Polls the store for committed records until `stop`.
fn watch_store(db: PathBuf, stop: Arc<AtomicBool>, period: Duration) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut reader = None;
    let mut cursor = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if reader.is_none() {
            reader = Reader::open(&db).ok();
        }
        if let Some(r) = &reader
            && let Ok(batch) = r.read_batch(cursor, 1000)
        {
            let at = Instant::now();
            for rec in &batch {
                cursor = rec.seq;
                if rec.kind != "exception" {
                    continue;
                }
                let code = serde_json::from_str::<serde_json::Value>(&rec.payload)
                    .ok()
                    .and_then(|v| v.get("code")?.as_u64())
                    .and_then(|c| u8::try_from(c).ok());
                if let Some(code) = code {
                    seen.push(Seen {
                        device: rec.device.clone(),
                        code,
                        at,
                    });
                }
            }
            if batch.len() == 1000 {
                continue;
            }
        }
        std::thread::sleep(period);
    }
    seen
}

struct OverPty {
    polls: u64,
    window: Duration,
    cpu: Duration,
    sim_cpu: Duration,
    reader_cpu: Duration,
    /// Raise to commit seen by the reader.
    commit: Lat,
    /// Raise to the implied ACK (simulator clock).
    acked: Lat,
    /// From the moment the exception reached the head of its EGM's queue
    /// (its raise, or the ACK of the one before) to its commit.
    head: Lat,
    exceptions: u64,
    /// ACK order against store order: a different code.
    mismatched: u64,
    /// The last exception read before the stop: stored, not yet ACKed.
    stored_not_acked: u64,
    /// ACKed by the EGM but never seen in the store (lost).
    acked_not_stored: u64,
}

fn over_pty(root: &Path, n: u8, load: Load, window: Duration, warmup: Duration) -> OverPty {
    let tmp = tempfile::tempdir_in(root).expect("temp dir");
    let dir = tmp.path();
    let link = dir.join("line.pty");
    let journal_path = dir.join("journal.jsonl");
    let sim = serve::spawn(ServeConfig {
        transport: Transport::Pty(link.clone()),
        egms: egms(n, load),
        faults: FaultPlan::default(),
        seed: 11,
        journal: Some(journal_path.clone()),
        unplug: UnplugPlan {
            every: None,
            lasting: Duration::ZERO,
            mode: UnplugMode::Silent,
        },
    })
    .expect("simulator");
    let start = sim.start();
    let mut text = format!(
        "[agent]\nid = \"bench\"\ndata_dir = \"{}\"\nlog_level = \"warn\"\n\n\
         [[sas]]\nname = \"line\"\nport = \"{}\"\npoll_interval_ms = {}\n",
        dir.join("data").display(),
        link.display(),
        POLL_INTERVAL.as_millis()
    );
    for a in 1..=n {
        let _ = write!(text, "[[sas.egm]]\naddress = {a}\nname = \"egm-{a}\"\n");
    }
    let cfg_path = dir.join("sitelink.toml");
    std::fs::write(&cfg_path, text).expect("config");
    let cfg = sitelink::config::load(&cfg_path).expect("config loads");
    // As the binary runs it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut daemon = rt
        .block_on(sitelink::daemon::Daemon::start(cfg))
        .expect("daemon");
    let stop = Arc::new(AtomicBool::new(false));
    let db = daemon.store_db_path();
    let period = Duration::from_micros(knob("BENCH_SAS_READER_US", 500) as u64);
    let reader = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("bench-reader".into())
            .spawn(move || watch_store(db, stop, period))
            .expect("reader thread")
    };
    std::thread::sleep(warmup);
    let polls0 = sim.polls();
    let (cpu0, sim0, reader0) = (
        process_cpu(),
        threads_cpu("sim-egm"),
        threads_cpu("bench-reader"),
    );
    let w0 = Instant::now();
    std::thread::sleep(window);
    let polls1 = sim.polls();
    let (cpu1, sim1, reader1) = (
        process_cpu(),
        threads_cpu("sim-egm"),
        threads_cpu("bench-reader"),
    );
    let elapsed = w0.elapsed();
    let window_start = w0.duration_since(start);
    let window_end = window_start + elapsed;
    rt.block_on(daemon.stop_devices());
    sim.stop().expect("simulator stops");
    let entries = journal::read(&journal_path).expect("simulator journal");
    // Let the reader see the last commit.
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader");
    rt.block_on(daemon.shutdown());

    if let Ok(path) = std::env::var("BENCH_SAS_DUMP") {
        let mut out = String::new();
        for e in &entries {
            let _ = writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default());
        }
        for s in &seen {
            let _ = writeln!(
                out,
                "seen {} {} {}",
                s.device,
                s.code,
                s.at.duration_since(start).as_micros()
            );
        }
        let _ = std::fs::write(format!("{path}.{n}"), out);
    }
    // Per EGM: raise time and code of each exception, ACK order.
    let mut raised: BTreeMap<(u8, u64), (u64, u8)> = BTreeMap::new();
    let mut acks: BTreeMap<u8, Vec<(u64, u64)>> = BTreeMap::new();
    for e in &entries {
        match *e {
            Entry::Exception {
                address,
                seq,
                t_ms,
                code,
                ..
            } => {
                raised.insert((address, seq), (t_ms, code));
            }
            Entry::Acked {
                address, seq, t_ms, ..
            } => acks.entry(address).or_default().push((seq, t_ms)),
            _ => {}
        }
    }
    let mut r = OverPty {
        polls: polls1 - polls0,
        window: elapsed,
        cpu: cpu1.saturating_sub(cpu0),
        sim_cpu: sim1.saturating_sub(sim0),
        reader_cpu: reader1.saturating_sub(reader0),
        commit: Lat::default(),
        acked: Lat::default(),
        head: Lat::default(),
        exceptions: 0,
        mismatched: 0,
        stored_not_acked: 0,
        acked_not_stored: 0,
    };
    for a in 1..=n {
        let device = format!("egm-{a}");
        let stored: Vec<&Seen> = seen.iter().filter(|s| s.device == device).collect();
        let acked = acks.get(&a).map_or(&[][..], Vec::as_slice);
        r.stored_not_acked += stored.len().saturating_sub(acked.len()) as u64;
        r.acked_not_stored += acked.len().saturating_sub(stored.len()) as u64;
        let mut prev_ack_ms = 0u64;
        for (&(seq, ack_ms), s) in acked.iter().zip(&stored) {
            let Some(&(t_ms, code)) = raised.get(&(a, seq)) else {
                r.mismatched += 1;
                continue;
            };
            let head_ms = t_ms.max(prev_ack_ms);
            prev_ack_ms = ack_ms;
            if code != s.code {
                r.mismatched += 1;
                continue;
            }
            let raised_at = start + Duration::from_millis(t_ms);
            let t = Duration::from_millis(t_ms);
            if t < window_start || t > window_end {
                continue;
            }
            r.exceptions += 1;
            let us = |from: Instant| s.at.saturating_duration_since(from).as_micros() as u64;
            r.commit.0.push(us(raised_at));
            r.head.0.push(us(start + Duration::from_millis(head_ms)));
            r.acked.0.push(ack_ms.saturating_sub(t_ms) * 1000);
        }
    }
    r.commit.sort();
    r.acked.sort();
    r.head.sort();
    r
}

fn us_per(d: Duration, n: u64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or
    // `--all-targets`) runs this binary without it: nothing to test here.
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("sas: a benchmark; run it with `cargo bench --bench sas` or scripts/bench");
        return;
    }
    let core_polls = knob("BENCH_SAS_CORE_POLLS", 300_000) as u64;
    let window = Duration::from_secs(knob("BENCH_SAS_S", 12) as u64);
    let warmup = Duration::from_millis(knob("BENCH_SAS_WARMUP_MS", 1000) as u64);
    let game_rate = knob("BENCH_SAS_GAME_RATE", 4) as f64;
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("sitelink SAS benchmark");
    println!(
        "  machine: {cores} cores; the agent on a 2-worker tokio runtime, as the binary runs it"
    );
    println!(
        "  line:    simulated EGMs (sim::egm model, no faults, {game_rate} games/s each in 1a-2b, 0.25 in 2c, 2+ exceptions per game;
           2d: door openings only, each exception alone),"
    );
    println!(
        "           poll_interval_ms = {} (the config's minimum), other [[sas]] and [store] keys at their defaults",
        POLL_INTERVAL.as_millis()
    );
    println!(
        "  latency: raise = simulator journal t_ms on its own start Instant; commit = first seen by a reader"
    );
    println!(
        "           polling the store every {} us (same process clock); matched per EGM in ACK order",
        knob("BENCH_SAS_READER_US", 500)
    );
    println!("  dir:     {}", root.display());
    println!();

    let mut rows = Vec::new();
    for (id, n) in [("1a", 1u8), ("1b", 4)] {
        eprintln!("{id}  protocol core in-process, {n} EGM(s), {core_polls} polls...");
        let c = core(n, core_polls, game_rate);
        rows.push(row(
            id,
            format!("protocol core in-process, {n} EGM(s): Link + EGM model, virtual clock"),
            int(c.polls as f64 / c.wall.as_secs_f64()),
            "polls/s",
            format!(
                "{} polls, {} exceptions, {:.0} s of virtual line time",
                int(c.polls as f64),
                int(c.exceptions as f64),
                c.virtual_s
            ),
        ));
        rows.push(row(
            "",
            "  CPU per poll (the one thread)",
            format!("{:.2}", us_per(c.cpu, c.polls)),
            "us",
            "host link + EGM model together, no I/O, no store".into(),
        ));
    }
    // 2a, 2b: the heavy load above; 2c: a floor's pace, a game every 4 s per
    // machine; 2d: lone exceptions, where nothing waits behind another in
    // the EGM's queue (SAS hands over one exception per poll).
    for (id, n, load) in [
        ("2a", 1u8, Load::Games(game_rate)),
        ("2b", 4, Load::Games(game_rate)),
        ("2c", 8, Load::Games(0.25)),
        ("2d", 8, Load::Doors(0.5)),
    ] {
        eprintln!(
            "{id}  agent over a PTY, {n} EGM(s), {load} each, {} s...",
            window.as_secs()
        );
        let p = over_pty(&root, n, load, window, warmup);
        let ceiling = f64::from(n) * 1000.0 / POLL_INTERVAL.as_millis() as f64;
        let rate = p.polls as f64 / p.window.as_secs_f64();
        rows.push(row(
            id,
            format!(
                "agent over a PTY, {n} EGM(s), {load}, poll_interval_ms {}",
                POLL_INTERVAL.as_millis()
            ),
            format!("{rate:.1}"),
            "polls/s",
            format!(
                "schedule ceiling {ceiling:.0}/s ({:.0} %); {} polls in {:.1} s",
                100.0 * rate / ceiling,
                p.polls,
                p.window.as_secs_f64()
            ),
        ));
        rows.push(row(
            "",
            "  CPU per poll, agent (process minus simulator and reader)",
            format!(
                "{:.0}",
                us_per(p.cpu.saturating_sub(p.sim_cpu + p.reader_cpu), p.polls)
            ),
            "us",
            format!(
                "whole process {:.0} us = agent + simulator {:.0} us + store reader {:.0} us",
                us_per(p.cpu, p.polls),
                us_per(p.sim_cpu, p.polls),
                us_per(p.reader_cpu, p.polls)
            ),
        ));
        let verdict = |p99: f64| {
            if p99 < GOAL_P99.as_secs_f64() * 1000.0 {
                "ok"
            } else {
                "MISSED"
            }
        };
        let p99 = p.commit.q(0.99);
        let ok = verdict(p99);
        rows.push(row(
            "",
            "  exception raised -> committed, p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1}",
                p.commit.q(0.5),
                p99,
                p.commit.max()
            ),
            "ms",
            format!(
                "goal p99 < {} ms: {ok}; {} exceptions{}",
                GOAL_P99.as_millis(),
                p.exceptions,
                [
                    (p.mismatched, "out of order or wrong code"),
                    (p.acked_not_stored, "ACKed but never stored (LOST)"),
                    (p.stored_not_acked, "stored, not yet ACKed at the stop"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!(", {n} {what}"))
                .collect::<String>()
            ),
        ));
        rows.push(row(
            "",
            "  head of the EGM's queue -> committed, p50 / p99",
            format!("{:.1} / {:.1}", p.head.q(0.5), p.head.q(0.99)),
            "ms",
            format!(
                "goal p99 < {} ms: {}; from its raise or the ACK of the one before it (the wait behind others left out)",
                GOAL_P99.as_millis(),
                verdict(p.head.q(0.99))
            ),
        ));
        rows.push(row(
            "",
            "  exception raised -> ACKed by the next poll, p50 / p99",
            format!("{:.0} / {:.0}", p.acked.q(0.5), p.acked.q(0.99)),
            "ms",
            "simulator clock only, whole ms; the poller commits before that poll".into(),
        ));
    }
    println!();
    print_table(&rows, "goal / note");
}
