//! The store on a real, small file system that fills up: a tmpfs of a few MB
//! mounted for the test. Events must all be kept and never fail; metrics
//! make the room, and every one of them is either still there or counted as
//! dropped.
//!
//! Mounting needs root. Without it the test runs itself again inside
//! `unshare --user --map-root-user --mount`; if neither works it fails and
//! says so (it never passes without having run).

mod common;
use common::all_records;

use sitelink::config::Quotas;
use sitelink::store::{
    Class, DB_FILE, NewRecord, Policy, Record, RecordFilter, Store, StoreOptions, StoreStatus,
};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the re-executed test binary: the mount point to use.
const CHILD_ENV: &str = "SITELINK_DISK_FULL_CHILD";
/// Set in the re-executed test binary: which scenario to run.
const SCENARIO_ENV: &str = "SITELINK_DISK_FULL_SCENARIO";
/// Printed by the re-executed binary once its mount worked.
const MOUNTED: &str = "@mounted";
/// Room for the database, its WAL (about 5 MB at most), the reserve the
/// store keeps for a full disk (about as much) and the floor.
const FS_SIZE: &str = "size=16m";
const MIN_FREE: u64 = 1 << 20;
const PAYLOAD: usize = 200;
/// Rounds of ingest: each is one batch of events and one of metrics, some
/// 34 KB; 400 of them are about three times what the file system holds.
const ROUNDS: u64 = 400;
const EVENTS_PER_ROUND: u64 = 10;
const METRICS_PER_ROUND: u64 = 100;
/// An ingest must be over by then, or the store is taken to hang.
const INGEST_LIMIT: Duration = Duration::from_secs(20);

/// A tmpfs mounted on a directory; unmounted (lazily, so even while busy) on drop.
struct Mount(PathBuf);

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn mount_tmpfs(dir: &Path) -> io::Result<Mount> {
    let source = CString::new("tmpfs").unwrap();
    let target = c_path(dir);
    let data = CString::new(FS_SIZE).unwrap();
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Mount(dir.to_path_buf()))
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = c_path(&self.0);
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!(
                "cannot unmount {}: {}",
                self.0.display(),
                io::Error::last_os_error()
            );
        }
    }
}

fn options(dir: &Path, min_free_bytes: u64) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: "disk-agent".into(),
        boot_id: "disk-boot".into(),
        policy: Policy {
            commit_records: 200,
            commit_window: Duration::from_millis(2),
            quota: Quotas {
                event: 10_000_000,
                accounting: 10_000_000,
                metric: 10_000_000,
            },
            min_free_bytes,
            retention: Duration::from_secs(3600),
        },
        channel_capacity: 64,
    }
}

fn record(class: Class, device: &str, id: u64) -> NewRecord {
    let head = format!("{{\"id\":{id},\"pad\":\"");
    let pad = "p".repeat(PAYLOAD - head.len() - 2);
    NewRecord::new(class, device, "load", format!("{head}{pad}\"}}"))
}

fn id_of(r: &Record) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&r.payload).expect("json payload");
    v["id"].as_u64().expect("id")
}

/// What the producers saw: seq -> id of every completed record, and the
/// errors they got.
#[derive(Default)]
struct Produced {
    done: BTreeMap<u64, u64>,
    errors: Vec<String>,
}

impl Produced {
    fn extend(&mut self, other: Produced) {
        self.done.extend(other.done);
        self.errors.extend(other.errors);
    }
}

fn produce(
    store: &Store,
    class: Class,
    per_round: u64,
    rounds: Range<u64>,
) -> mpsc::Receiver<Produced> {
    let h = store.handle();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut p = Produced::default();
        let device = format!("{class}-dev");
        for round in rounds {
            let ids: Vec<u64> = (round * per_round..(round + 1) * per_round).collect();
            let batch = ids.iter().map(|&id| record(class, &device, id)).collect();
            match h.append_batch_blocking(batch) {
                Ok(seqs) => {
                    assert_eq!(seqs.len(), ids.len());
                    p.done.extend(seqs.into_iter().zip(ids));
                }
                Err(e) => p.errors.push(format!("round {round}: {e}")),
            }
        }
        let _ = tx.send(p);
    });
    rx
}

/// Events and metrics, both so far.
#[derive(Default)]
struct Ingested {
    events: Produced,
    metrics: Produced,
}

/// Ingests `rounds` from an event and a metric producer at once. A store that
/// does not finish in time is left running (closing it would wait for it
/// forever) and the test fails.
fn ingest(store: Store, rounds: Range<u64>, into: &mut Ingested) -> Store {
    let deadline = Instant::now() + INGEST_LIMIT;
    let events = produce(&store, Class::Event, EVENTS_PER_ROUND, rounds.clone());
    let metrics = produce(&store, Class::Metric, METRICS_PER_ROUND, rounds);
    for (rx, what) in [(events, "event"), (metrics, "metric")] {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(p) if what == "event" => into.events.extend(p),
            Ok(p) => into.metrics.extend(p),
            Err(_) => {
                let health = store.health();
                std::mem::forget(store);
                panic!(
                    "the {what} producer did not finish within {INGEST_LIMIT:?}: the store hangs \
                     on the full file system (writer disk_full={}, silent for {} ms)",
                    health.disk_full(),
                    health.silent_for_ms()
                );
            }
        }
    }
    store
}

fn class_status(st: &StoreStatus, c: Class) -> &sitelink::store::ClassStatus {
    st.classes
        .iter()
        .find(|s| s.class == c)
        .expect("class in status")
}

/// Appends `n` events at once; they must be taken.
fn late_events(store: &Store, from: u64, n: u64, into: &mut Ingested) {
    let late: Vec<NewRecord> = (from..from + n)
        .map(|i| record(Class::Event, "event-dev", i))
        .collect();
    let seqs = store
        .handle()
        .append_batch_blocking(late)
        .expect("the store still takes events on the full disk");
    into.events.done.extend(seqs.into_iter().zip(from..));
}

/// What must hold after any amount of ingest on the full file system.
fn check(store: &Store, dir: &Path, got: &Ingested, started: Instant) {
    let ev = &got.events;
    let me = &got.metrics;
    assert!(
        ev.errors.is_empty(),
        "events failed on a full disk: {:?}",
        ev.errors
    );
    assert!(
        me.errors.is_empty(),
        "metrics failed on a full disk: {:?}",
        me.errors
    );

    let reader = store.reader().expect("reader");
    let records = all_records(&reader);
    let st = reader.status().expect("status");
    let by_seq: BTreeMap<u64, &Record> = records.iter().map(|r| (r.seq, r)).collect();

    // Every event completed is there, as it was given.
    for (seq, id) in &ev.done {
        let r = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("event {id} (seq {seq}) was completed but is gone"));
        assert_eq!((r.class, id_of(r)), (Class::Event, *id), "seq {seq}");
    }

    // Metrics made the room, and every one is accounted for.
    let metric = class_status(&st, Class::Metric);
    let present: Vec<&Record> = records
        .iter()
        .filter(|r| r.class == Class::Metric)
        .collect();
    for r in &present {
        assert_eq!(
            me.done.get(&r.seq),
            Some(&id_of(r)),
            "metric seq {} is one we appended",
            r.seq
        );
    }
    assert!(
        metric.dropped > 0,
        "no metric was dropped: the file system never filled up"
    );
    assert_eq!(
        metric.rows,
        present.len() as i64,
        "class_stats rows for metrics"
    );
    let disk_drops: i64 = st
        .drops
        .iter()
        .filter(|d| d.class == Class::Metric && d.reason == "disk")
        .map(|d| d.count)
        .sum();
    assert!(
        disk_drops > 0,
        "no drop with reason \"disk\": {:?}",
        st.drops
    );
    assert_eq!(
        disk_drops, metric.dropped,
        "every metric drop here is for disk: {:?}",
        st.drops
    );
    assert_eq!(
        present.len() as i64 + metric.dropped,
        me.done.len() as i64,
        "metrics kept + dropped must equal metrics appended (nothing lost silently)"
    );
    let gaps = reader
        .records(&RecordFilter {
            kind: Some("gap".into()),
            limit: 1_000_000,
            ..Default::default()
        })
        .expect("gap records");
    assert!(
        !gaps.is_empty(),
        "metrics were dropped but no gap record says so"
    );
    let gap_count: u64 = gaps
        .iter()
        .map(|g| {
            let v: serde_json::Value = serde_json::from_str(&g.payload).expect("gap payload");
            assert_eq!(v["reason"], "disk", "gap {}", g.payload);
            v["count"].as_u64().expect("gap count")
        })
        .sum();
    assert_eq!(
        gap_count as i64, metric.dropped,
        "gap records count every dropped metric"
    );
    let event = class_status(&st, Class::Event);
    assert_eq!(
        event.rows as usize,
        ev.done.len() + gaps.len() + alarms(&records),
        "events kept: ours, the gap records and the store's alarms"
    );
    eprintln!(
        "{:.1} s: {} events, {} metrics appended; {} metrics kept, {} dropped in {} gaps; \
         db {} bytes; {} bytes free on the tmpfs",
        started.elapsed().as_secs_f64(),
        ev.done.len(),
        me.done.len(),
        present.len(),
        metric.dropped,
        gaps.len(),
        st.db_bytes,
        available(dir),
    );
}

/// Steady ingest far past what the file system holds: the free-space floor
/// drops the oldest metrics and events go on. The store's own growth never
/// takes the last byte, so its reserve for a full disk stays untouched.
fn steady_ingest(dir: &Path, min_free: u64) {
    let started = Instant::now();
    let data = dir.join("data");
    let store = Store::open(options(&data, min_free)).expect("store opens on the tmpfs");
    let mut got = Ingested::default();
    let store = ingest(store, 0..ROUNDS, &mut got);
    late_events(&store, 1_000_000, 20, &mut got);
    check(&store, dir, &got, started);
    assert!(
        data.join(format!("{DB_FILE}.reserve")).exists(),
        "the store filled the file system by itself (it had to use its reserve)"
    );
    store.close();
}

/// Another program takes every byte left while the database is still
/// growing: commits fail with SQLITE_FULL, and the store must still make
/// room by dropping metrics, never failing or losing an event.
fn filled_by_another_program(dir: &Path) {
    let started = Instant::now();
    let data = dir.join("data");
    let reserve = data.join(format!("{DB_FILE}.reserve"));
    let store = Store::open(options(&data, MIN_FREE)).expect("store opens on the tmpfs");
    assert!(reserve.exists(), "the store sets space aside at open");
    let mut got = Ingested::default();
    let store = ingest(store, 0..10, &mut got);

    let filler = dir.join("filler");
    let written = fill(&filler);
    assert_eq!(
        available(dir),
        0,
        "the filler took every byte ({written} bytes)"
    );
    let store = ingest(store, 10..ROUNDS, &mut got);
    late_events(&store, 1_000_000, 20, &mut got);
    assert!(
        !reserve.exists(),
        "the file system was full, yet the store did not use its reserve"
    );
    check(&store, dir, &got, started);

    // Space comes back: the store sets its reserve aside again.
    std::fs::remove_file(&filler).expect("remove the filler");
    let until = Instant::now() + Duration::from_secs(10);
    let mut n = 2_000_000;
    while !reserve.exists() && Instant::now() < until {
        late_events(&store, n, 1, &mut got);
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        reserve.exists(),
        "the reserve is not made again once there is room"
    );
    check(&store, dir, &got, started);
    store.close();
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5au8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filler: {e}"),
        }
    }
    // The last few bytes of a page.
    while let Ok(k) = f.write(&[0x5a]) {
        if k == 0 {
            break;
        }
        n += 1;
    }
    f.sync_all().ok();
    n
}

fn alarms(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| r.device == sitelink::store::STORE_DEVICE)
        .count()
}

fn available(dir: &Path) -> u64 {
    let c = c_path(dir);
    // SAFETY: statvfs writes only into the struct passed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A scenario's name (passed to the re-executed binary) and body.
type Scenario = (&'static str, fn(&Path));

const SCENARIOS: [Scenario; 3] = [
    ("steady", |dir| steady_ingest(dir, MIN_FREE)),
    ("no-floor", |dir| steady_ingest(dir, 0)),
    ("filled", filled_by_another_program),
];

/// Runs inside `unshare --user --map-root-user --mount` when the test itself
/// may not mount.
#[test]
fn in_namespace() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let name = std::env::var(SCENARIO_ENV).expect("scenario");
    let (_, scenario) = SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known scenario");
    let mount = match mount_tmpfs(&dir) {
        Ok(m) => m,
        Err(e) => panic!("mount of a tmpfs in a user namespace failed: {e}"),
    };
    println!("{MOUNTED}");
    scenario(&dir);
    drop(mount);
}

/// Runs the scenario on a fresh tmpfs: mounted here if allowed, else in a
/// user namespace.
fn on_tmpfs(name: &str) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let (_, scenario) = SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known scenario");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).expect("mount point");
    match mount_tmpfs(&dir) {
        Ok(mount) => {
            scenario(&dir);
            drop(mount);
        }
        Err(mount_err) => in_user_namespace(&dir, name, &mount_err),
    }
}

#[test]
fn a_full_file_system_drops_metrics_and_keeps_every_event() {
    on_tmpfs("steady");
}

#[test]
fn without_a_floor_the_store_still_never_fills_the_disk_itself() {
    on_tmpfs("no-floor");
}

#[test]
fn a_disk_filled_by_another_program_still_takes_every_event() {
    on_tmpfs("filled");
}

fn in_user_namespace(dir: &Path, scenario: &str, mount_err: &io::Error) {
    let needs = |why: String| -> ! {
        panic!(
            "this test needs root (to mount a tmpfs) or user namespaces \
             (`unshare --user --map-root-user --mount`): mount failed: {mount_err}; {why}"
        )
    };
    let exe = std::env::current_exe().expect("own test binary");
    let mut child = match Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .arg(&exe)
        .args(["in_namespace", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(SCENARIO_ENV, scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => needs(format!("unshare cannot be run: {e}")),
    };
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_tx = tx.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut stdout, &mut s);
        let _ = out_tx.send((0, s));
    });
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut stderr, &mut s);
        let _ = tx.send((1, s));
    });
    // Both outputs end when the child does; a hung child is killed.
    let deadline = Instant::now() + 3 * INGEST_LIMIT;
    let mut outputs = [String::new(), String::new()];
    for _ in 0..2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((i, s)) => outputs[i] = s,
            Err(_) => {
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("wait for unshare");
    let [out, err] = outputs;
    if !out.contains(MOUNTED) {
        needs(format!("in a user namespace ({status}):\n{out}\n{err}"));
    }
    assert!(
        status.success(),
        "the disk-full scenario failed in a user namespace ({status}):\n{out}\n{err}"
    );
    eprint!("{err}");
}
