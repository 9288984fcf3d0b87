//! Crash test: a child process ingests records from several producer threads
//! and prints every completion it gets; the parent kills it with SIGKILL at a
//! random instant, reopens the store and checks that every record whose
//! completion it saw is in the file, once, with its seq and payload, and that
//! the sequence numbers of every new run lie above all earlier ones.
//!
//! The child is this test binary run again with `SITELINK_CRASH_CHILD` set,
//! selecting the `child_ingest` test, which does nothing otherwise.

mod common;
use common::all_records;

use rand::RngExt;
use sitelink::config::Quotas;
use sitelink::store::{Class, NewRecord, Policy, Record, Store, StoreOptions, epoch_of};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the child: the data directory to ingest into.
const CHILD_ENV: &str = "SITELINK_CRASH_CHILD";
/// Set in the child: the run number, part of every record's id.
const RUN_ENV: &str = "SITELINK_CRASH_RUN";
const PRODUCERS: u64 = 4;
/// Kills the default run must reach.
const KILLS: usize = 50;
/// The test gives up adding runs after this long (and then fails if it did
/// not reach `KILLS`).
const BUDGET: Duration = Duration::from_secs(60);
/// A child that is never killed stops on its own after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
/// Marks a completion line; searched anywhere in the line, as the test
/// harness may print its own text in front of the first one.
const MARK: &str = "@done ";

/// A record's identity: which run, which producer, which of its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Id {
    run: u64,
    producer: u64,
    n: u64,
}

fn class_of(id: Id) -> Class {
    match (id.producer * 7 + id.n) % 5 {
        0 => Class::Accounting,
        1 | 2 => Class::Metric,
        _ => Class::Event,
    }
}

fn payload_of(id: Id) -> String {
    let pad = "x".repeat(((id.n * 37 + id.producer * 11) % 120) as usize);
    format!(
        "{{\"run\":{},\"p\":{},\"n\":{},\"pad\":\"{pad}\"}}",
        id.run, id.producer, id.n
    )
}

fn id_from_payload(payload: &str) -> Option<Id> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some(Id {
        run: v.get("run")?.as_u64()?,
        producer: v.get("p")?.as_u64()?,
        n: v.get("n")?.as_u64()?,
    })
}

fn device_of(id: Id) -> String {
    format!("dev-{}", id.producer)
}

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: "crash-agent".into(),
        boot_id: "crash-boot".into(),
        policy: Policy {
            commit_records: 200,
            commit_window: Duration::from_millis(2),
            quota: Quotas {
                event: 10_000_000,
                accounting: 10_000_000,
                metric: 10_000_000,
            },
            min_free_bytes: 0,
            retention: Duration::from_secs(3600),
        },
        channel_capacity: 64,
    }
}

/// The child: ingest until killed (or `CHILD_LIFETIME` passes), printing a
/// line per completion: `@done RUN PRODUCER FIRST_N SEQ SEQ ...`.
#[test]
fn child_ingest() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run: u64 = std::env::var(RUN_ENV)
        .expect("run number")
        .parse()
        .expect("run number");
    let store = Store::open(options(Path::new(&dir))).expect("child opens the store");
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let h = store.handle();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut size = producer as usize;
                while started.elapsed() < CHILD_LIFETIME {
                    size = size % 8 + 1;
                    let ids: Vec<Id> = (n..n + size as u64)
                        .map(|n| Id { run, producer, n })
                        .collect();
                    let records = ids
                        .iter()
                        .map(|&id| {
                            NewRecord::new(class_of(id), device_of(id), "crash", payload_of(id))
                        })
                        .collect();
                    let seqs = match h.append_batch_blocking(records) {
                        Ok(seqs) => seqs,
                        Err(e) => {
                            // Stops the child; the parent sees it was not killed.
                            eprintln!("producer {producer}: append failed: {e}");
                            std::process::exit(2);
                        }
                    };
                    assert_eq!(seqs.len(), ids.len());
                    let mut line = format!("{MARK}{run} {producer} {n}");
                    for s in &seqs {
                        line.push_str(&format!(" {s}"));
                    }
                    line.push('\n');
                    // The '\n' goes out last: a line cut short by the kill has none,
                    // and the parent ignores it.
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("stdout");
                    out.flush().expect("stdout");
                    drop(out);
                    n += size as u64;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
    store.close();
}

/// A completion the parent received: these seqs were handed out for these ids.
fn parse_line(line: &str) -> Option<Vec<(u64, Id)>> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut it = rest.split_ascii_whitespace().map(|w| w.parse::<u64>().ok());
    let run = it.next()??;
    let producer = it.next()??;
    let first = it.next()??;
    let mut out = Vec::new();
    for (i, seq) in it.enumerate() {
        out.push((
            seq?,
            Id {
                run,
                producer,
                n: first + i as u64,
            },
        ));
    }
    (!out.is_empty()).then_some(out)
}

struct Checked {
    max_seq: u64,
    max_epoch: u64,
    records: usize,
}

/// Reopens the store (which recovers the WAL) and checks it against every
/// completion seen so far.
fn check(dir: &Path, acked: &BTreeMap<u64, Id>, run: u64) -> Checked {
    let store =
        Store::open(options(dir)).unwrap_or_else(|e| panic!("run {run}: reopen failed: {e}"));
    let reader = store.reader().expect("reader");
    let records = all_records(&reader);
    let status = reader.status().expect("status");
    store.close();

    let mut by_seq: BTreeMap<u64, &Record> = BTreeMap::new();
    let mut by_id: BTreeMap<Id, u64> = BTreeMap::new();
    for r in &records {
        assert!(
            by_seq.insert(r.seq, r).is_none(),
            "run {run}: seq {} twice",
            r.seq
        );
        let id = id_from_payload(&r.payload).unwrap_or_else(|| {
            panic!(
                "run {run}: record {} has a foreign payload {:?}",
                r.seq, r.payload
            )
        });
        assert_eq!(
            r.payload,
            payload_of(id),
            "run {run}: record {} payload damaged",
            r.seq
        );
        assert_eq!(r.class, class_of(id), "run {run}: record {} class", r.seq);
        assert_eq!(
            r.device,
            device_of(id),
            "run {run}: record {} device",
            r.seq
        );
        if let Some(other) = by_id.insert(id, r.seq) {
            panic!(
                "run {run}: record {id:?} stored twice, as {other} and {}",
                r.seq
            );
        }
    }
    for (seq, id) in acked {
        match by_seq.get(seq) {
            None => panic!(
                "run {run}: record {id:?} was completed as seq {seq} but is not in the file \
                 ({} records there)",
                records.len()
            ),
            Some(r) => assert_eq!(
                id_from_payload(&r.payload),
                Some(*id),
                "run {run}: seq {seq} holds another record"
            ),
        }
    }
    let max_seq = records.last().map_or(0, |r| r.seq);
    assert!(
        status.next_seq > max_seq,
        "run {run}: next_seq {} not above {max_seq}",
        status.next_seq
    );
    Checked {
        max_seq,
        max_epoch: status.epoch,
        records: records.len(),
    }
}

struct ChildRun {
    completions: Vec<(u64, Id)>,
    lines: usize,
}

fn run_child(exe: &Path, dir: &Path, stderr_path: &Path, run: u64) -> ChildRun {
    let stderr = std::fs::File::create(stderr_path).expect("stderr file");
    let mut child = Command::new(exe)
        .args(["child_ingest", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(RUN_ENV, run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut completions = Vec::new();
        let mut lines = 0;
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        let mut told = false;
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line without its '\n' was cut short by the kill: no claim.
            if !line.ends_with('\n') {
                break;
            }
            if let Some(c) = parse_line(&line) {
                completions.extend(c);
                lines += 1;
                if !told {
                    told = true;
                    let _ = tx.send(());
                }
            }
        }
        ChildRun { completions, lines }
    });
    let printing = rx.recv_timeout(Duration::from_secs(30));
    if printing.is_ok() {
        let delay = rand::rng().random_range(5..150);
        std::thread::sleep(Duration::from_millis(delay));
    }
    // Child::kill sends SIGKILL.
    let _ = child.kill();
    let status = child.wait().expect("wait for the child");
    let result = reader.join().expect("stdout reader");
    if status.signal() != Some(libc::SIGKILL) {
        let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
        panic!("run {run}: the child ended before it was killed ({status}); its stderr:\n{err}");
    }
    if printing.is_err() || result.lines == 0 {
        let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
        panic!(
            "run {run}: the child printed no completion within 30 s ({status}); its stderr:\n{err}"
        );
    }
    result
}

#[test]
fn completed_records_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir: PathBuf = tmp.path().join("data");
    let stderr_path = tmp.path().join("child.stderr");
    let exe = std::env::current_exe().expect("own test binary");
    let started = Instant::now();
    let mut acked: BTreeMap<u64, Id> = BTreeMap::new();
    let mut before = Checked {
        max_seq: 0,
        max_epoch: 0,
        records: 0,
    };
    let mut kills = 0usize;
    while kills < KILLS && started.elapsed() < BUDGET {
        let run = kills as u64;
        let child = run_child(&exe, &dir, &stderr_path, run);
        kills += 1;
        let mut epochs: Vec<u64> = child
            .completions
            .iter()
            .map(|(s, _)| epoch_of(*s))
            .collect();
        epochs.dedup();
        assert_eq!(
            epochs.len(),
            1,
            "run {run}: one open, one epoch: {epochs:?}"
        );
        assert!(
            epochs[0] > before.max_epoch,
            "run {run}: epoch {} not above the earlier {}",
            epochs[0],
            before.max_epoch
        );
        for (seq, id) in &child.completions {
            assert!(
                *seq > before.max_seq,
                "run {run}: seq {seq} not above the earlier {}",
                before.max_seq
            );
            if let Some(other) = acked.insert(*seq, *id) {
                panic!("run {run}: seq {seq} completed twice, for {other:?} and {id:?}");
            }
        }
        let after = check(&dir, &acked, run);
        assert!(
            after.records >= before.records,
            "run {run}: records went missing"
        );
        assert!(
            after.max_epoch > epochs[0],
            "run {run}: the check's open has a new epoch"
        );
        before = after;
    }
    eprintln!(
        "{kills} kills in {:.1} s, {} completed records checked, {} records in the file",
        started.elapsed().as_secs_f64(),
        acked.len(),
        before.records
    );
    assert!(
        kills >= KILLS,
        "only {kills} kills fit in {BUDGET:?} (need {KILLS}): the machine is too slow or the store too"
    );
}
