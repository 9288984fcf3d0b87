//! The SAS poller end to end, with the real binaries: the daemon
//! (`sitelink run`) polls the EGM simulator (`sitelink sim egm`) over a PTY
//! and over TCP loopback, and what it stored must match the simulator's
//! journal: every exception the simulator let go (`acked`) is stored exactly
//! once and in the order it went, nothing is invented, every meter reading is
//! the simulator's meters at some moment (and the readings move forward in
//! time), with or without lost and corrupted replies; after an unplug the
//! polling comes back by itself and the outage is on record.
//!
//! Every run stops the daemon first and the simulators after, so that what
//! the daemon acknowledged is final in the journal when it is read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use sitelink::sas::proto::{MeterCode, MeterPoll};
use sitelink::sim::egm::{Entry, FaultKind, Meters, journal};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(codes: &[u8]) -> String {
    codes
        .iter()
        .map(|c| format!("{c:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A child process, killed and reaped on drop, so a failing test leaves
/// nothing running.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill with the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {}", self.what);
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 15 s of SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where a simulator serves its line.
enum Wire {
    /// A PTY linked at this path.
    Pty(PathBuf),
    /// TCP on 127.0.0.1, a port the simulator picks.
    Tcp,
}

/// One simulated line (`sitelink sim egm`) with its journal.
struct Sim {
    proc: Proc,
    journal: PathBuf,
    /// The line's `port` for the daemon's config.
    port: String,
}

impl Sim {
    fn start(dir: &Path, name: &str, wire: Wire, addresses: &[u8], extra: &[&str]) -> Sim {
        let journal = dir.join(format!("{name}.journal.jsonl"));
        let mut cmd = Command::new(BIN);
        cmd.args(["sim", "egm"]);
        match &wire {
            Wire::Pty(link) => cmd.arg("--pty").arg(link),
            Wire::Tcp => cmd.args(["--tcp", "127.0.0.1:0"]),
        };
        for a in addresses {
            cmd.arg("--address").arg(a.to_string());
        }
        cmd.args(extra)
            .arg("--journal")
            .arg(&journal)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn sitelink sim egm");
        let stdout = child.stdout.take().expect("stdout");
        let proc = Proc {
            child,
            what: "the simulator",
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the simulator prints its ready line");
        let words: Vec<&str> = ready.split_whitespace().collect();
        let port = match (&wire, words.as_slice()) {
            (Wire::Pty(link), ["ready", "pty", at, _slave]) => {
                assert_eq!(Path::new(at), link, "{ready:?}");
                at.to_string()
            }
            (Wire::Tcp, ["ready", "tcp", addr]) => {
                assert!(addr.starts_with("127.0.0.1:"), "{ready:?}");
                format!("tcp://{addr}")
            }
            _ => panic!("unexpected ready line {ready:?}"),
        };
        Sim {
            proc,
            journal,
            port,
        }
    }

    /// SIGTERM, a clean exit, and the journal.
    fn stop(mut self) -> Vec<Entry> {
        let status = self.proc.stop();
        assert!(status.success(), "simulator exit {status}");
        journal::read(&self.journal).expect("the journal reads back")
    }
}

/// One EGM as the daemon's config names it.
#[derive(Clone, Debug)]
struct Egm {
    name: String,
    /// Index of its line (and simulator).
    line: usize,
    address: u8,
}

/// How long the daemon waits for a reply. Above the default 50 ms: with the
/// tests of this file, the simulators and the build sharing two cores, a
/// simulator is sometimes not scheduled for that long, and a fault-free run
/// must not see lost replies. Late replies are injected well past it.
const REPLY_TIMEOUT_MS: u64 = 150;

/// The daemon's config: one `[[sas]]` per line, polled as fast as the
/// document allows (40 ms) with meters every second.
fn config(dir: &Path, ports: &[String], egms: &[Egm]) -> String {
    let mut s = format!(
        "[agent]\nid = \"sas-test\"\ndata_dir = \"{}\"\nlog_level = \"info\"\n\n[store]\ncommit_ms = 5\n",
        dir.join("data").display()
    );
    for (i, port) in ports.iter().enumerate() {
        s.push_str(&format!(
            "\n[[sas]]\nname = \"line-{}\"\nport = \"{port}\"\npoll_interval_ms = 40\nreply_timeout_ms = {REPLY_TIMEOUT_MS}\nmeters_s = 1\n",
            i + 1
        ));
        for e in egms.iter().filter(|e| e.line == i) {
            s.push_str(&format!(
                "[[sas.egm]]\naddress = {}\nname = \"{}\"\n",
                e.address, e.name
            ));
        }
    }
    s
}

/// `sitelink run`, its log gathered by a thread.
struct Daemon {
    proc: Proc,
    config: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the daemon");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let d = Daemon {
            proc: Proc {
                child,
                what: "the daemon",
            },
            config: config.to_path_buf(),
            log,
        };
        d.wait_until("the daemon starts", Duration::from_secs(20), || {
            d.log_has("sitelink started")
        });
        d
    }

    fn log_has(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }

    /// The daemon's warnings and errors, for a failure message.
    fn troubles(&self) -> String {
        let log = self.log.lock().expect("log");
        let bad: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let skip = bad.len().saturating_sub(30);
        bad.into_iter()
            .skip(skip)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `done` every 100 ms; panics after `within`.
    fn wait_until(&self, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; daemon warnings:\n{}",
                self.troubles()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        cli(&self.config, args)
    }

    /// `command DEVICE ACTION`; with `tries` > 1 a failure (exit 1: the EGM
    /// did not answer) is tried again. Returns the successful output.
    fn command(&self, device: &str, action: &str, tries: u32) -> Output {
        for attempt in 1..=tries {
            let out = self.cli(&["command", device, action, "--timeout", "20"]);
            match out.status.code() {
                Some(0) => return out,
                Some(1) if attempt < tries => {}
                _ => panic!(
                    "command {device} {action} (try {attempt} of {tries}): {:?}\n{}{}",
                    out.status.code(),
                    text(&out.stdout),
                    text(&out.stderr)
                ),
            }
        }
        unreachable!("the last try returns or panics")
    }

    fn stop(mut self) {
        let status = self.proc.stop();
        assert!(status.success(), "daemon exit {status}");
    }
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run sitelink")
}

/// Every record in the store, oldest first (`records --json`).
fn records(config: &Path, kind: Option<&str>) -> Vec<Value> {
    let mut args = vec!["records", "--json", "--limit", "100000000"];
    if let Some(k) = kind {
        args.extend(["--kind", k]);
    }
    let out = cli(config, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert!(
        all.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "records in sequence order"
    );
    all
}

fn is(r: &Value, device: &str, kind: &str) -> bool {
    r["device"] == device && r["kind"] == kind
}

/// The exception codes stored for a device, in store order.
fn stored_exceptions(all: &[Value], device: &str) -> Vec<u8> {
    all.iter()
        .filter(|r| is(r, device, "exception"))
        .map(|r| {
            assert_eq!(r["class"], "event", "{r}");
            let code = r["payload"]["code"].as_u64().expect("exception code");
            assert!(
                r["payload"]["name"].as_str().is_some_and(|n| !n.is_empty()),
                "exception without a name: {r}"
            );
            u8::try_from(code).expect("a one-byte code")
        })
        .collect()
}

/// One stored meter reading: the long poll and its (code, value) pairs.
type Reading = (String, Vec<(u8, u64)>);

fn stored_meters(all: &[Value], device: &str) -> Vec<Reading> {
    all.iter()
        .filter(|r| is(r, device, "meters"))
        .map(|r| {
            assert_eq!(r["class"], "accounting", "{r}");
            let p = &r["payload"];
            let meters = p["meters"]
                .as_array()
                .expect("meters")
                .iter()
                .map(|m| {
                    let code = u8::try_from(m["code"].as_u64().expect("code")).expect("u8 code");
                    (code, m["value"].as_u64().expect("value"))
                })
                .collect();
            (p["poll"].as_str().expect("poll").to_string(), meters)
        })
        .collect()
}

/// What the journal says of one EGM.
#[derive(Default)]
struct Journaled {
    /// Every exception raised: seq → code.
    raised: BTreeMap<u64, u8>,
    /// Exceptions the host's implied ACK removed, in the order removed:
    /// (seq, code, intact).
    acked: Vec<(u64, u8, bool)>,
    dropped: BTreeSet<u64>,
    /// The meters at start and after each game, in time order.
    states: Vec<Meters>,
    commands: Vec<String>,
    no_reply: u64,
    corrupt: u64,
}

impl Journaled {
    fn of(journal: &[Entry], address: u8) -> Journaled {
        let mut j = Journaled {
            states: vec![Meters::default()],
            ..Journaled::default()
        };
        for e in journal {
            match e {
                Entry::Exception {
                    address: a,
                    seq,
                    code,
                    ..
                } if *a == address => {
                    j.raised.insert(*seq, *code);
                }
                Entry::Acked {
                    address: a,
                    seq,
                    intact,
                    ..
                } if *a == address => {
                    let code = *j.raised.get(seq).expect("acked after raised");
                    j.acked.push((*seq, code, *intact));
                }
                Entry::Dropped {
                    address: a, seq, ..
                } if *a == address => {
                    j.dropped.insert(*seq);
                }
                Entry::Game {
                    address: a, meters, ..
                } if *a == address => j.states.push(*meters),
                Entry::Command {
                    address: a,
                    command,
                    ..
                } if *a == address => j.commands.push(command.clone()),
                Entry::Fault {
                    address: a, fault, ..
                } if *a == address => match fault {
                    FaultKind::NoReply => j.no_reply += 1,
                    FaultKind::Corrupt => j.corrupt += 1,
                    _ => {}
                },
                _ => {}
            }
        }
        j
    }

    fn acked_codes(&self) -> Vec<u8> {
        self.acked.iter().map(|a| a.1).collect()
    }

    /// Raised, neither acknowledged nor dropped: still queued at the end.
    fn still_queued(&self) -> BTreeSet<u8> {
        let acked: BTreeSet<u64> = self.acked.iter().map(|a| a.0).collect();
        self.raised
            .iter()
            .filter(|(s, _)| !acked.contains(s) && !self.dropped.contains(s))
            .map(|(_, c)| *c)
            .collect()
    }
}

/// The stored exceptions of one EGM against its journal. They must be the
/// acknowledged ones, in the order the EGM let them go, each once, and
/// then at most one more: the reply to the daemon's last general poll to
/// this EGM, which no later poll acknowledged because the daemon stopped —
/// an exception still queued in the simulator. Nothing else: no duplicate,
/// nothing the EGM did not raise, nothing out of order.
///
/// An exception acknowledged with `intact: false` went out last late or
/// with a bad CRC, so the host may rightly not have it: it may be stored
/// (once) or not. (A one-byte general-poll reply has no CRC and the runs
/// here inject no slow replies, so with this module's faults every
/// acknowledged exception is intact, and all are required.)
///
/// `resent` allows that many stored exceptions to repeat the one stored just
/// before: after a loop break (5 s without polls) an EGM treats its last
/// unacknowledged reply as NACKed and sends it again (§5, MON), which a host
/// cannot tell from a new exception with the same code. Returns how many
/// were repeated.
fn check_exceptions(name: &str, j: &Journaled, stored: &[u8], resent: usize) -> usize {
    let want = j.acked_codes();
    let queued = j.still_queued();
    let (a, n) = (j.acked.len(), stored.len());
    // reach[k][i][r]: the first k acknowledged and the first i stored
    // exceptions match, with r stored ones repeated.
    let mut reach = vec![vec![vec![false; resent + 1]; n + 1]; a + 1];
    reach[0][0][0] = true;
    for k in 0..=a {
        for i in 0..=n {
            for r in 0..=resent {
                if !reach[k][i][r] {
                    continue;
                }
                if let Some(&(_, code, intact)) = j.acked.get(k) {
                    if stored.get(i) == Some(&code) {
                        reach[k + 1][i + 1][r] = true;
                    }
                    if !intact {
                        reach[k + 1][i][r] = true;
                    }
                }
                if i > 0 && i < n && stored[i] == stored[i - 1] && r < resent {
                    reach[k][i + 1][r + 1] = true;
                }
            }
        }
    }
    let tail_ok = |i: usize| n - i <= 1 && stored[i..].iter().all(|c| queued.contains(c));
    let best = (0..=n)
        .flat_map(|i| (0..=resent).map(move |r| (i, r)))
        .filter(|&(i, r)| reach[a][i][r] && tail_ok(i))
        .map(|(_, r)| r)
        .min();
    if let Some(repeats) = best {
        return repeats;
    }
    // Where the match breaks, for the message.
    let (k, i) = (0..=a)
        .flat_map(|k| (0..=n).map(move |i| (k, i)))
        .filter(|&(k, i)| reach[k][i].iter().any(|&b| b))
        .max()
        .unwrap_or((0, 0));
    let at = match j.acked.get(k) {
        Some((seq, code, _)) => format!(
            "the EGM let go #{k} (seq {seq}, {code:02X}); the store has {} there",
            stored
                .get(i)
                .map_or("nothing".to_string(), |c| format!("{c:02X}"))
        ),
        None => format!(
            "after the last acknowledged exception the store has {} (still queued in \
             the simulator: {})",
            hex(&stored[i..]),
            hex(&queued.iter().copied().collect::<Vec<_>>())
        ),
    };
    panic!(
        "{name}: stored exceptions are not the acknowledged ones once each in order \
         (missing, duplicated, invented or out of order): {at}\n  acked  ({a}): {}\n  \
         stored ({n}): {}",
        hex(&want),
        hex(stored)
    );
}

/// Whether a reading equals the simulator's meters in one state.
fn reading_is(state: &Meters, meters: &[(u8, u64)]) -> bool {
    meters
        .iter()
        .all(|&(code, value)| state.get(MeterCode(code)) == Some(value))
}

/// The meter readings of one EGM against the simulator's meters.
///
/// The simulator's meters change only inside a game (bill in, bet, win,
/// cash-out), and each `game` entry holds the meters after it; between two
/// games they stand still, and a long poll is answered at one instant. So
/// every reading must equal the meters at start or after some game, and as
/// the daemon reads in time order, the states the readings match must not go
/// back in time: each reading is matched to the earliest state at or after
/// the previous reading's. (Counters like coin-in grow with every game, so a
/// basic-meters reading pins its state.) Returns the index of the state the
/// last reading matched.
fn check_meters(name: &str, j: &Journaled, readings: &[Reading]) -> usize {
    let mut at = 0;
    for (n, (poll, meters)) in readings.iter().enumerate() {
        match (at..j.states.len()).find(|&s| reading_is(&j.states[s], meters)) {
            Some(s) => at = s,
            None => panic!(
                "{name}: meter reading #{n} (LP {poll}) {meters:?} is not the simulator's \
                 meters at or after state #{at} of {} (last: {:?})",
                j.states.len(),
                j.states.last()
            ),
        }
    }
    at
}

/// Each EGM's records and journal, checked for exactly-once exceptions and
/// faithful meters. With `locked`, play was locked before the last meter
/// round, so the last reading of each poll must be the final meters.
fn check_run(all: &[Value], journals: &[Vec<Entry>], egms: &[Egm], locked: bool) {
    // The poller's meter round, as the records name the polls.
    let round: Vec<String> = [
        MeterPoll::Basic,
        MeterPoll::GamesWon,
        MeterPoll::CurrentCredits,
    ]
    .iter()
    .map(|m| format!("{:02X}", m.command()))
    .collect();
    for e in egms {
        let j = Journaled::of(&journals[e.line], e.address);
        let stored = stored_exceptions(all, &e.name);
        check_exceptions(&e.name, &j, &stored, 0);
        // Not a vacuous run: games' exceptions went through (fewer with
        // faults: each lost reply costs a reply window and a quiet wait).
        assert!(
            j.acked.len() >= 8,
            "{}: only {} exceptions acknowledged",
            e.name,
            j.acked.len()
        );
        let readings = stored_meters(all, &e.name);
        eprintln!(
            "{}: {} exceptions acked, {} stored, {} still queued, {} games, {} meter readings, \
             {} lost polls and {} corrupt replies injected",
            e.name,
            j.acked.len(),
            stored.len(),
            j.still_queued().len(),
            j.states.len() - 1,
            readings.len(),
            j.no_reply,
            j.corrupt
        );
        for poll in &round {
            assert!(
                readings.iter().any(|(p, _)| p == poll),
                "{}: no LP {poll} meters stored",
                e.name
            );
        }
        let last = check_meters(&e.name, &j, &readings);
        if locked {
            let fin = j.states.last().expect("states");
            assert!(
                j.states.len() > 5,
                "{}: only {} games played",
                e.name,
                j.states.len() - 1
            );
            assert_eq!(last, j.states.len() - 1, "{}: the last reading", e.name);
            for poll in &round {
                let (_, m) = readings
                    .iter()
                    .rev()
                    .find(|(p, _)| p == poll)
                    .expect("a reading");
                assert!(
                    reading_is(fin, m),
                    "{}: the last LP {poll} reading {m:?} after the lock is not the final \
                     meters {fin:?}",
                    e.name
                );
            }
        }
        // Deltas: each counter's delta is the difference to its previous reading.
        let records: Vec<&Value> = all.iter().filter(|r| is(r, &e.name, "meters")).collect();
        let mut prev: BTreeMap<u64, u64> = BTreeMap::new();
        for r in records {
            for m in r["payload"]["meters"].as_array().expect("meters") {
                let code = m["code"].as_u64().expect("code");
                let value = m["value"].as_u64().expect("value");
                if code != 0x0C
                    && let Some(p) = prev.get(&code)
                {
                    assert_eq!(
                        m["delta"].as_u64(),
                        Some(value - p),
                        "{}: delta of meter {code:02X} in {r}",
                        e.name
                    );
                }
                prev.insert(code, value);
            }
        }
    }
}

/// Writes the config for these lines and machines, starts the daemon and
/// waits until every machine's link is up. Returns it and its config file.
fn start_daemon(dir: &Path, ports: &[String], egms: &[Egm]) -> (Daemon, PathBuf) {
    let cfg = dir.join("sitelink.toml");
    std::fs::write(&cfg, config(dir, ports, egms)).expect("write config");
    let d = Daemon::start(&cfg);
    wait_all_up(&d, egms);
    (d, cfg)
}

/// Waits until every EGM has a `link.up` record.
fn wait_all_up(d: &Daemon, egms: &[Egm]) {
    d.wait_until("every EGM's link up", Duration::from_secs(20), || {
        let ups = records(&d.config, Some("link.up"));
        egms.iter()
            .all(|e| ups.iter().any(|r| r["device"] == e.name.as_str()))
    });
}

/// What a run left: the records, the simulators' journals (by line), the
/// EGMs, and each device's state as `status --json` showed it before the stop.
struct Run {
    all: Vec<Value>,
    journals: Vec<Vec<Entry>>,
    egms: Vec<Egm>,
    states: BTreeMap<String, Value>,
}

/// Line 1: a PTY with EGMs 1–4 (egm-1 … egm-4); line 2: TCP with EGMs 1–2
/// (egm-5, egm-6; the same addresses on another line). Runs the daemon on
/// both for a few seconds, locks every EGM and reads its meters, stops the
/// daemon, then the simulators.
fn two_line_run(faults: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let game = ["--game-rate", "3", "--seed", "7"];
    let args: Vec<&str> = game.iter().chain(faults).copied().collect();
    let pty = Sim::start(
        dir.path(),
        "line-1",
        Wire::Pty(dir.path().join("line-1")),
        &[1, 2, 3, 4],
        &args,
    );
    let tcp = Sim::start(dir.path(), "line-2", Wire::Tcp, &[1, 2], &args);
    let egms: Vec<Egm> = (1..=4)
        .map(|a| (0, a))
        .chain((1..=2).map(|a| (1, a)))
        .enumerate()
        .map(|(i, (line, address))| Egm {
            name: format!("egm-{}", i + 1),
            line,
            address,
        })
        .collect();
    let (d, cfg) = start_daemon(dir.path(), &[pty.port.clone(), tcp.port.clone()], &egms);
    std::thread::sleep(Duration::from_secs(6));

    // Lock play and read the meters once more: the last readings are then
    // the final meters. With faults a command may fail (both tries of a
    // long poll lost) and is sent again; without, it must not fail.
    let tries = if faults.is_empty() { 1 } else { 5 };
    std::thread::scope(|s| {
        for e in &egms {
            let d = &d;
            s.spawn(move || {
                let out = d.command(&e.name, "lock", tries);
                assert!(
                    text(&out.stdout).contains("acknowledged"),
                    "{}",
                    text(&out.stdout)
                );
                let out = d.command(&e.name, "meters", tries);
                assert!(
                    text(&out.stdout).contains("games played"),
                    "{}",
                    text(&out.stdout)
                );
            });
        }
    });
    // A command the EGMs do not have is bad input.
    let out = d.cli(&["command", "egm-1", "nonsense"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("lock, unlock"),
        "{}",
        text(&out.stderr)
    );

    // The device state is written with every meter reading (and at least
    // every 5 s), so the one after the meters command carries the counters
    // of the run; the counters are read, not timed.
    std::thread::sleep(Duration::from_millis(300));
    let out = d.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let states: BTreeMap<String, Value> = status["store"]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap_or_default().to_string(),
                d["state"].clone(),
            )
        })
        .collect();

    d.stop();
    let journals = vec![pty.stop(), tcp.stop()];
    let all = records(&cfg, None);
    for e in &egms {
        let j = Journaled::of(&journals[e.line], e.address);
        // Once, unless a try the daemon counted as failed reached the EGM
        // (a late reply), and then it was tried again.
        let locks = j.commands.iter().filter(|c| *c == "lock").count();
        assert!(
            locks == 1 || (locks > 1 && !faults.is_empty()),
            "{}: the simulator obeyed {locks} locks: {:?}",
            e.name,
            j.commands
        );
        assert!(
            all.iter().any(|r| is(r, &e.name, "link.up")),
            "{}: link.up",
            e.name
        );
    }
    Run {
        all,
        journals,
        egms,
        states,
    }
}

#[test]
fn two_lines_six_egms_every_exception_once_in_order_and_the_meters_match() {
    let Run {
        all,
        journals,
        egms,
        states,
    } = two_line_run(&[]);
    check_run(&all, &journals, &egms, true);
    for e in &egms {
        let s = &states[&e.name];
        assert_eq!(s["link"], "up", "{}: {s}", e.name);
        assert!(s["polls"].as_u64() > Some(100), "{}: {s}", e.name);
        // Without faults, nothing went wrong that the simulator did not do.
        assert!(
            !all.iter()
                .any(|r| r["device"] == e.name.as_str() && r["kind"] == "link.reply_lost"),
            "{}: a reply was lost",
            e.name
        );
    }
}

#[test]
fn with_lost_late_and_corrupt_replies_every_exception_is_still_stored_once_in_order() {
    let Run {
        all,
        journals,
        egms,
        states,
    } = two_line_run(&[
        "--no-reply",
        "10",
        "--corrupt",
        "5",
        "--slow",
        "5",
        "--slow-ms",
        "250",
    ]);
    check_run(&all, &journals, &egms, true);
    let mut bad_replies = 0;
    let mut corrupt = 0;
    for e in &egms {
        let j = Journaled::of(&journals[e.line], e.address);
        assert!(j.no_reply > 0, "{}: no lost poll injected", e.name);
        let s = &states[&e.name];
        for key in ["no_reply", "retries"] {
            assert!(s[key].as_u64() > Some(0), "{}: {key} in {s}", e.name);
        }
        bad_replies += s["bad_replies"].as_u64().expect("bad_replies");
        corrupt += j.corrupt;
    }
    // Only replies with a CRC (long polls: a few per second per EGM) can be
    // corrupted, so a single EGM may see none in a short run; the six do.
    assert!(corrupt > 0, "no corrupt reply injected");
    assert!(bad_replies > 0, "no bad reply counted ({corrupt} injected)");
}

#[test]
fn unplugged_for_5_s_polling_resumes_by_itself_and_the_gap_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let game = ["--game-rate", "3", "--seed", "11"];
    // Line 1 loses its device (the PTY goes away, as a USB adapter pulled
    // out); line 2 stays connected but its EGMs fall silent (a cable pulled).
    let device: Vec<&str> = game
        .iter()
        .chain(&["--unplug-mode", "device"])
        .copied()
        .collect();
    let pty = Sim::start(
        dir.path(),
        "line-1",
        Wire::Pty(dir.path().join("line-1")),
        &[1, 2],
        &device,
    );
    let tcp = Sim::start(dir.path(), "line-2", Wire::Tcp, &[3, 4], &game);
    let egms: Vec<Egm> = [(0, 1), (0, 2), (1, 3), (1, 4)]
        .into_iter()
        .map(|(line, address)| Egm {
            name: format!("egm-{address}"),
            line,
            address,
        })
        .collect();
    let (d, cfg) = start_daemon(dir.path(), &[pty.port.clone(), tcp.port.clone()], &egms);
    std::thread::sleep(Duration::from_secs(2));

    pty.proc.signal(libc::SIGUSR1);
    tcp.proc.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_secs(5));
    pty.proc.signal(libc::SIGUSR1);
    tcp.proc.signal(libc::SIGUSR1);

    // Polling resumes by itself: for every EGM a link.down, a link.up after
    // it, and exceptions stored after that.
    let resumed = |all: &[Value]| {
        egms.iter().all(|e| {
            let mine: Vec<&Value> = all
                .iter()
                .filter(|r| r["device"] == e.name.as_str())
                .collect();
            let Some(down) = mine.iter().rposition(|r| r["kind"] == "link.down") else {
                return false;
            };
            let Some(up) = mine.iter().skip(down).position(|r| r["kind"] == "link.up") else {
                return false;
            };
            mine.iter()
                .skip(down + up)
                .filter(|r| r["kind"] == "exception")
                .count()
                >= 3
        })
    };
    // The PTY comes back within the line's reconnect backoff (up to 8 s
    // after a 5 s outage), then the link syncs again.
    d.wait_until("polling resumes", Duration::from_secs(25), || {
        resumed(&records(&cfg, None))
    });
    d.stop();
    let journals = [pty.stop(), tcp.stop()];
    let all = records(&cfg, None);

    for e in &egms {
        let mine: Vec<&Value> = all
            .iter()
            .filter(|r| r["device"] == e.name.as_str())
            .collect();
        let downs: Vec<&&Value> = mine.iter().filter(|r| r["kind"] == "link.down").collect();
        assert!(!downs.is_empty(), "{}: no link.down", e.name);
        for r in &downs {
            let reason = r["payload"]["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("no reply") || reason.contains("without a readable reply"),
                "{}: link.down reason {r}",
                e.name
            );
        }
        // The gap: the down is on record before the up that ends it, and
        // both carry a time.
        let down = mine
            .iter()
            .position(|r| r["kind"] == "link.down")
            .expect("down");
        let up = mine
            .iter()
            .skip(down)
            .find(|r| r["kind"] == "link.up")
            .expect("an up after the down");
        assert!(
            mine[down]["time"].as_i64() <= up["time"].as_i64(),
            "{}: {} then {up}",
            e.name,
            mine[down]
        );
        // Nothing acknowledged is missing, nothing invented, in order; an
        // exception in flight when the line went quiet may come twice.
        let j = Journaled::of(&journals[e.line], e.address);
        let stored = stored_exceptions(&all, &e.name);
        let repeated = check_exceptions(&e.name, &j, &stored, 1);
        eprintln!(
            "{}: {} exceptions acked, {} stored ({repeated} sent again after the loop break), \
             {} link.down",
            e.name,
            j.acked.len(),
            stored.len(),
            downs.len()
        );
        assert!(j.acked.len() >= 5, "{}: {} acked", e.name, j.acked.len());
        check_meters(&e.name, &j, &stored_meters(&all, &e.name));
    }
    // The device unplug is on record for line 1, as the port going and
    // coming back; line 2's connection stayed.
    let line = |n: &str, kind: &str| all.iter().filter(|r| is(r, n, kind)).count();
    assert!(line("line-1", "port.down") >= 1, "line-1 port.down");
    let first_down = all
        .iter()
        .position(|r| is(r, "line-1", "port.down"))
        .expect("down");
    assert!(
        all.iter()
            .skip(first_down)
            .any(|r| is(r, "line-1", "port.up")),
        "line-1 port.up after port.down"
    );
    assert_eq!(line("line-2", "port.down"), 0, "line-2 stayed connected");
    for j in &journals {
        let unplugs: Vec<bool> = j
            .iter()
            .filter_map(|e| match e {
                Entry::Unplug { unplugged, .. } => Some(*unplugged),
                _ => None,
            })
            .collect();
        assert_eq!(unplugs, [true, false]);
    }
}

/// The checks above fail on what they are for: a missing, a duplicated, an
/// invented or a reordered exception, and a meter reading from no moment of
/// the simulator's or one going back in time.
#[test]
fn the_checks_catch_missing_duplicated_invented_and_reordered() {
    let j = Journaled {
        raised: [(1, 0x7E), (2, 0x7F), (3, 0x7E), (4, 0x11)].into(),
        acked: vec![(1, 0x7E, true), (2, 0x7F, true), (3, 0x7E, true)],
        ..Journaled::default()
    };
    let fails = |stored: &[u8], resent: usize| {
        std::panic::catch_unwind(|| check_exceptions("t", &j, stored, resent)).is_err()
    };
    assert!(!fails(&[0x7E, 0x7F, 0x7E], 0));
    // The one in flight when the daemon stopped (still queued) may follow.
    assert!(!fails(&[0x7E, 0x7F, 0x7E, 0x11], 0));
    assert!(fails(&[0x7E, 0x7E], 0), "missing");
    assert!(fails(&[0x7E, 0x7F, 0x7F, 0x7E], 0), "duplicated");
    assert!(
        !fails(&[0x7E, 0x7F, 0x7F, 0x7E], 1),
        "resent after a loop break"
    );
    assert!(fails(&[0x7E, 0x7F, 0x7E, 0x12], 0), "invented");
    assert!(fails(&[0x7F, 0x7E, 0x7E], 0), "reordered");
    // An exception that went out last corrupted or late may be missing.
    let loose = Journaled {
        acked: vec![(1, 0x7E, true), (2, 0x7F, false), (3, 0x7E, true)],
        ..Journaled::default()
    };
    assert_eq!(check_exceptions("t", &loose, &[0x7E, 0x7E], 0), 0);
    assert_eq!(check_exceptions("t", &loose, &[0x7E, 0x7F, 0x7E], 0), 0);

    let at = |coin_in, games| Meters {
        coin_in,
        games_played: games,
        ..Meters::default()
    };
    let m = Journaled {
        states: vec![Meters::default(), at(5, 1), at(9, 2)],
        ..Journaled::default()
    };
    let read = |coin_in, games| ("0F".to_string(), vec![(0x00, coin_in), (0x05, games)]);
    assert_eq!(
        check_meters("t", &m, &[read(0, 0), read(5, 1), read(9, 2)]),
        2
    );
    let fails = |readings: &[Reading]| {
        std::panic::catch_unwind(|| check_meters("t", &m, readings)).is_err()
    };
    assert!(fails(&[read(5, 2)]), "no such moment");
    assert!(fails(&[read(9, 2), read(5, 1)]), "back in time");
}

/// Exception 51 makes the poller read LP 1B, and each handpay the simulator
/// locked up on is stored as a `handpay` event with its amount. An EGM whose
/// LP A0 does not allow 40 ms polling is polled every 200 ms although the
/// line asks for 40, and the log says why.
#[test]
fn handpays_are_read_with_1b_and_a0_decides_the_polling_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Sim::start(
        dir.path(),
        "line-1",
        Wire::Pty(dir.path().join("line-1")),
        &[1],
        &["--game-rate", "5", "--seed", "5", "--jackpot-chance", "0.5"],
    );
    let slow = Sim::start(
        dir.path(),
        "line-2",
        Wire::Tcp,
        &[2],
        &["--game-rate", "1", "--slow-polling"],
    );
    let egms = [
        Egm {
            name: "egm-1".into(),
            line: 0,
            address: 1,
        },
        Egm {
            name: "egm-2".into(),
            line: 1,
            address: 2,
        },
    ];
    let (d, cfg) = start_daemon(dir.path(), &[pty.port.clone(), slow.port.clone()], &egms);
    d.wait_until("a handpay is stored", Duration::from_secs(30), || {
        !records(&cfg, Some("handpay")).is_empty()
    });
    d.wait_until(
        "egm-2 is polled every 200 ms",
        Duration::from_secs(10),
        || {
            let out = d.cli(&["status"]);
            text(&out.stdout).contains("address 2: link up, polled every 200 ms")
        },
    );
    let status = text(&d.cli(&["status"]).stdout);
    assert!(
        status.contains("address 1: link up, polled every 40 ms"),
        "{status}"
    );
    assert!(
        d.log_has("does not allow 40 ms polling"),
        "{}",
        d.troubles()
    );
    d.stop();
    let journal = pty.stop();
    slow.stop();
    let handpays = records(&cfg, Some("handpay"));
    let j = Journaled::of(&journal, 1);
    let wins: Vec<u64> = journal
        .iter()
        .filter_map(|e| match e {
            Entry::Game {
                handpay: true, win, ..
            } => Some(*win),
            _ => None,
        })
        .collect();
    // One 1B read per 51 the daemon received, each during its lockup.
    let received_51 = j.acked_codes().iter().filter(|&&c| c == 0x51).count();
    assert_eq!(handpays.len(), received_51, "{handpays:?}");
    for (h, win) in handpays.iter().zip(&wins) {
        let p = &h["payload"];
        assert_eq!(h["class"], "event");
        assert_eq!(p["amount"].as_u64(), Some(*win), "{p}");
        assert_eq!(p["kind"], "non-progressive win", "{p}");
        assert_eq!(p["unit"], "credits", "{p}");
    }
}
