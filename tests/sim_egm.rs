//! `sitelink sim egm` end to end: a small host loop in the test, built on
//! `sas::proto::Link` (the host's own link state machine), polls the real
//! binary over a PTY and over TCP loopback; what it read must match the
//! simulator's journal: every exception the EGM let go as delivered intact,
//! once and in order, nothing invented, and the meters after the last game.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sitelink::sas::proto::{
    Link, LinkConfig, LinkEvent, LinkState, LinkStats, LongPoll, MeterCode, MeterPoll, Poll, Reply,
    Response,
};
use sitelink::sim::egm::journal;
use sitelink::sim::egm::{Entry, FaultKind};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");

/// The simulator process, stopped (SIGTERM) and reaped on drop.
struct Sim {
    child: Child,
    ready: String,
    journal: PathBuf,
    dir: tempfile::TempDir,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
            .collect();
        let mut child = Command::new(BIN)
            .args(["sim", "egm"])
            .args(&args)
            .arg("--journal")
            .arg(&journal)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sitelink sim egm");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the simulator prints its ready line");
        assert!(ready.starts_with("ready "), "{ready:?}");
        Sim {
            child,
            ready: ready.trim().to_string(),
            journal,
            dir,
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill with a pid we spawned and still own (not reaped).
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// SIGTERM, a clean exit, and the journal.
    fn stop(mut self) -> Vec<Entry> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "simulator ignores SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{status}");
        journal::read(&self.journal).unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

trait Wire: Read + Write + AsRawFd {}
impl Wire for File {}
impl Wire for TcpStream {}

fn open_pty(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits up to `timeout` for input; `None` = the device is gone.
fn read_some(fd: RawFd, wire: &mut dyn Wire, timeout: Duration, buf: &mut [u8]) -> Option<usize> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up, or a deadline under 1 ms away would spin.
    let ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(1000);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n <= 0 {
        return Some(0);
    }
    match wire.read(buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(0),
        Err(_) => None,
    }
}

/// A host on one line: one `Link` per address, one exchange at a time.
struct Host {
    wire: Box<dyn Wire>,
    links: Vec<Link>,
    exceptions: BTreeMap<u8, Vec<u8>>,
    events: Vec<(u8, LinkEvent)>,
    gone: bool,
    hold: Option<usize>,
}

fn link_config() -> LinkConfig {
    LinkConfig {
        poll_interval: Duration::from_millis(20),
        reply_timeout: Duration::from_millis(50),
        inter_byte_timeout: Duration::from_millis(10),
        down_interval: Duration::from_millis(200),
        ..LinkConfig::default()
    }
}

impl Host {
    fn new(wire: Box<dyn Wire>, addresses: &[u8]) -> Host {
        let now = Instant::now();
        Host {
            wire,
            links: addresses
                .iter()
                .map(|&a| Link::new(a, link_config(), now).unwrap())
                .collect(),
            exceptions: BTreeMap::new(),
            events: Vec::new(),
            gone: false,
            hold: None,
        }
    }

    fn link(&mut self, address: u8) -> &mut Link {
        self.links
            .iter_mut()
            .find(|l| l.address() == address)
            .unwrap()
    }

    fn drain_input(&mut self) {
        let fd = self.wire.as_raw_fd();
        let mut buf = [0u8; 256];
        while let Some(n) = read_some(fd, self.wire.as_mut(), Duration::ZERO, &mut buf) {
            if n == 0 {
                return;
            }
        }
        self.gone = true;
    }

    /// One exchange, if a link is due; returns whether one ran.
    fn step(&mut self) -> bool {
        let now = Instant::now();
        // Finish an exchange whose wait ran out (a no-op for idle links).
        for l in &mut self.links {
            if l.poll_timeout() <= now {
                l.handle_timeout(now);
            }
        }
        // A link waiting to retry has the line; so has one whose general
        // poll wants its long poll next (a poll to another EGM in between
        // would acknowledge the reply and make the link start over with a
        // general poll, starving its long polls); else the most overdue.
        if self
            .hold
            .is_some_and(|i| self.links[i].poll_timeout() > now)
        {
            return false;
        }
        let pick = self
            .links
            .iter()
            .position(Link::retry_pending)
            .or(self.hold.take())
            .or_else(|| {
                (0..self.links.len())
                    .filter(|&i| self.links[i].poll_timeout() <= now)
                    .min_by_key(|&i| self.links[i].poll_timeout())
            });
        let Some(i) = pick else {
            return false;
        };
        self.drain_input();
        let Some(t) = self.links[i].poll_transmit(now) else {
            return false;
        };
        self.hold = match t.poll {
            Poll::General { address } if address != 0 => Some(i),
            _ => None,
        };
        if self.wire.write_all(&t.bytes).is_err() {
            self.gone = true;
        }
        for (j, l) in self.links.iter_mut().enumerate() {
            if j != i {
                l.note_foreign_poll(now);
            }
        }
        let stats = |l: &Link| {
            let s = l.stats();
            s.replies + s.no_reply + s.bad_replies
        };
        let before = stats(&self.links[i]);
        let fd = self.wire.as_raw_fd();
        let mut buf = [0u8; 512];
        // An exchange ends by a reply (the counters move) or a timeout.
        for _ in 0..1000 {
            let now = Instant::now();
            let due = self.links[i].poll_timeout();
            if now >= due {
                self.links[i].handle_timeout(now);
                break;
            }
            match read_some(fd, self.wire.as_mut(), due - now, &mut buf) {
                Some(n) => self.links[i].handle_bytes(Instant::now(), &buf[..n]),
                None => {
                    self.gone = true;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            if stats(&self.links[i]) != before {
                break;
            }
        }
        for l in &mut self.links {
            while let Some(e) = l.poll_event() {
                if let LinkEvent::Exception(ev) = &e {
                    self.exceptions
                        .entry(l.address())
                        .or_default()
                        .push(ev.code.0);
                }
                self.events.push((l.address(), e));
            }
        }
        true
    }

    /// Runs until `done` or the time is up; returns whether `done` held.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Host) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if done(self) {
                return true;
            }
            if !self.step() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        done(self)
    }

    /// Submits a long poll and waits for its answer; retried a few times
    /// when faults eat it.
    fn ask(&mut self, address: u8, poll: LongPoll) -> Response {
        for _ in 0..20 {
            let id = self.link(address).submit(poll.clone()).unwrap();
            let mark = self.events.len();
            let found = |h: &Host| {
                h.events[mark..].iter().find_map(|(a, e)| match e {
                    LinkEvent::Completed {
                        id: Some(i),
                        result,
                        ..
                    } if *a == address && *i == id => Some(result.clone()),
                    _ => None,
                })
            };
            assert!(
                self.run(Duration::from_secs(5), |h| found(h).is_some()),
                "no answer to {poll:?} from {address}"
            );
            if let Some(Ok(r)) = found(self) {
                return r;
            }
        }
        panic!("{poll:?} to {address} failed 20 times");
    }

    /// A global poll acknowledges every EGM's last reply, so the journal
    /// counts the last exception read as delivered.
    fn final_ack(&mut self) {
        self.wire.write_all(&[0x80]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Per address, the exceptions the journal says left intact, in order.
fn delivered(journal: &[Entry]) -> BTreeMap<u8, Vec<u8>> {
    let mut codes = BTreeMap::new();
    for e in journal {
        if let Entry::Exception {
            address, seq, code, ..
        } = e
        {
            codes.insert((*address, *seq), *code);
        }
    }
    let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for e in journal {
        if let Entry::Acked {
            address,
            seq,
            intact: true,
            ..
        } = e
        {
            out.entry(*address)
                .or_default()
                .push(codes[&(*address, *seq)]);
        }
    }
    out
}

fn last_meters(journal: &[Entry], address: u8) -> sitelink::sim::egm::Meters {
    journal
        .iter()
        .rev()
        .find_map(|e| match e {
            Entry::Game {
                address: a, meters, ..
            } if *a == address => Some(*meters),
            _ => None,
        })
        .unwrap_or_default()
}

/// Locks the EGM (so games stop), reads its meters two ways.
fn lock_and_read(host: &mut Host, address: u8) -> (Vec<u64>, Vec<(u8, u64)>) {
    assert_eq!(host.ask(address, LongPoll::Shutdown), Response::Ack);
    let Response::Data(Reply::Meters { meters, .. }) =
        host.ask(address, LongPoll::Meters(MeterPoll::Basic))
    else {
        panic!("0F")
    };
    let basic = meters.iter().map(|m| m.value).collect();
    let Response::Data(Reply::SelectedMeters { meters, .. }) = host.ask(
        address,
        LongPoll::SelectedMeters {
            game: 0,
            codes: [0x00, 0x01, 0x05, 0x06, 0x07, 0x0B, 0x0C]
                .map(MeterCode)
                .to_vec(),
        },
    ) else {
        panic!("2F")
    };
    (basic, meters.iter().map(|m| (m.code.0, m.value)).collect())
}

fn check_meters(journal: &[Entry], address: u8, basic: &[u64], selected: &[(u8, u64)]) {
    let m = last_meters(journal, address);
    assert!(m.games_played > 0, "EGM {address} played no game");
    assert_eq!(
        basic,
        [
            m.cancelled_credits,
            m.coin_in,
            m.coin_out,
            m.credits_from_bills,
            m.jackpot,
            m.games_played
        ],
        "0F of EGM {address}"
    );
    assert_eq!(
        selected,
        [
            (0x00, m.coin_in),
            (0x01, m.coin_out),
            (0x05, m.games_played),
            (0x06, m.games_won),
            (0x07, m.games_lost),
            (0x0B, m.credits_from_bills),
            (0x0C, m.current_credits),
        ],
        "2F of EGM {address}"
    );
}

fn all_up(h: &Host) -> bool {
    h.links.iter().all(|l| *l.state() == LinkState::Up)
}

#[test]
fn two_egms_on_a_pty_match_the_journal() {
    let started = Instant::now();
    let sim = Sim::start(&[
        "--pty",
        "{dir}/egm",
        "--address",
        "1",
        "--address",
        "2",
        "--game-rate",
        "5",
        "--seed",
        "1",
    ]);
    let link = sim.dir.path().join("egm");
    let slave = std::fs::read_link(&link).unwrap();
    assert!(
        sim.ready.ends_with(&slave.display().to_string()),
        "{}",
        sim.ready
    );
    let mut host = Host::new(Box::new(open_pty(&link)), &[1, 2]);
    assert!(host.run(Duration::from_secs(5), all_up), "links up");
    host.run(Duration::from_millis(2500), |_| false);
    let mut reads = Vec::new();
    for a in [1, 2] {
        reads.push(lock_and_read(&mut host, a));
    }
    // Drain what the last games raised, then acknowledge the last reply.
    host.run(Duration::from_millis(500), |_| false);
    host.final_ack();
    let journal = sim.stop();

    let want = delivered(&journal);
    for a in [1u8, 2] {
        let got = host.exceptions.get(&a).cloned().unwrap_or_default();
        assert!(got.len() >= 10, "EGM {a}: only {} exceptions", got.len());
        assert_eq!(got, want[&a], "EGM {a}: exceptions read vs delivered");
        assert!(got.contains(&0x7E) && got.contains(&0x7F));
        let (basic, selected) = &reads[usize::from(a - 1)];
        check_meters(&journal, a, basic, selected);
        assert!(journal.iter().any(
            |e| matches!(e, Entry::Command { address, command, .. } if *address == a && command == "lock")
        ));
    }
    // Without faults nothing is lost: every exception is accounted for.
    assert!(!journal.iter().any(|e| matches!(
        e,
        Entry::Acked { intact: false, .. } | Entry::Dropped { .. }
    )));
    // The link is gone with the simulator.
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Counts the journal's faults of one kind.
/// The journal's unplug (true) and replug (false) entries, in order.
fn unplugs(journal: &[Entry]) -> Vec<bool> {
    journal
        .iter()
        .filter_map(|e| match e {
            Entry::Unplug { unplugged, .. } => Some(*unplugged),
            _ => None,
        })
        .collect()
}

fn faults(journal: &[Entry], kind: FaultKind) -> u64 {
    journal
        .iter()
        .filter(|e| matches!(e, Entry::Fault { fault, .. } if *fault == kind))
        .count() as u64
}

/// Polls one EGM over TCP for `secs`, locks it, reads its meters; checks the
/// exceptions read against the journal; returns the journal and the stats.
fn tcp_run(args: &[&str], rte: bool, secs: u64) -> (Vec<Entry>, LinkStats) {
    let mut all = vec!["--tcp", "127.0.0.1:0", "--address", "7", "--game-rate", "5"];
    all.extend_from_slice(args);
    let sim = Sim::start(&all);
    let addr = sim.ready.strip_prefix("ready tcp ").unwrap().to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut host = Host::new(Box::new(stream), &[7]);
    assert!(host.run(Duration::from_secs(5), all_up), "link up");
    if rte {
        assert_eq!(host.ask(7, LongPoll::RealTimeEvents(true)), Response::Ack);
    }
    host.run(Duration::from_secs(secs), |_| false);
    let (basic, selected) = lock_and_read(&mut host, 7);
    host.run(Duration::from_millis(500), |_| false);
    host.final_ack();
    let stats = host.links[0].stats();
    let journal = sim.stop();
    let got = host.exceptions.get(&7).cloned().unwrap_or_default();
    assert!(got.len() >= 10, "only {} exceptions", got.len());
    assert_eq!(got, delivered(&journal)[&7], "exceptions read vs delivered");
    check_meters(&journal, 7, &basic, &selected);
    (journal, stats)
}

#[test]
fn tcp_with_lost_corrupt_and_slow_replies_matches_the_journal() {
    let (journal, stats) = tcp_run(
        &[
            "--no-reply",
            "10",
            // Only frames with a CRC can be corrupted, and most replies here
            // are one-byte answers to general polls.
            "--corrupt",
            "30",
            "--slow",
            "5",
            "--seed",
            "1",
        ],
        false,
        3,
    );
    let (lost, bad, slow) = (
        faults(&journal, FaultKind::NoReply),
        faults(&journal, FaultKind::Corrupt),
        faults(&journal, FaultKind::Slow),
    );
    assert!(lost > 0 && bad > 0 && slow > 0, "{lost} {bad} {slow}");
    // Every lost or late reply was a timeout at the host, every corrupt one
    // a bad reply.
    assert_eq!(stats.no_reply, lost + slow, "{stats:?}");
    assert_eq!(stats.bad_replies, bad, "{stats:?}");
    // A fault on a retry is not retried again (two tries per poll).
    assert!(
        stats.retries > 0 && stats.retries <= lost + slow + bad,
        "{stats:?}"
    );
}

#[test]
fn rte_frames_with_bad_crcs_match_the_journal() {
    // In RTE mode every general-poll reply is a frame with a CRC, so the
    // corrupt fault reaches the exceptions themselves.
    let (journal, stats) = tcp_run(&["--corrupt", "10", "--seed", "1"], true, 3);
    let bad = faults(&journal, FaultKind::Corrupt);
    assert!(bad > 0);
    assert_eq!(stats.bad_replies, bad, "{stats:?}");
    let events = journal
        .iter()
        .filter(|e| matches!(e, Entry::Exception { code: 0x4F, .. }))
        .count();
    assert!(events > 0, "bills reported as 4F with data in RTE mode");
}

#[test]
fn sigusr1_unplugs_and_replugs_silently() {
    let sim = Sim::start(&["--tcp", "127.0.0.1:0", "--address", "3", "--game-rate", "0"]);
    let addr = sim.ready.strip_prefix("ready tcp ").unwrap().to_string();
    let mut host = Host::new(Box::new(TcpStream::connect(&addr).unwrap()), &[3]);
    assert!(host.run(Duration::from_secs(5), all_up), "link up");
    sim.signal(libc::SIGUSR1);
    let down = |h: &Host| matches!(h.links[0].state(), LinkState::Down(_));
    assert!(host.run(Duration::from_secs(10), down), "link down");
    sim.signal(libc::SIGUSR1);
    assert!(host.run(Duration::from_secs(10), all_up), "link up again");
    let journal = sim.stop();
    let unplugs = unplugs(&journal);
    assert_eq!(unplugs, [true, false]);
}

#[test]
fn scheduled_unplugs_come_and_go_by_themselves() {
    let sim = Sim::start(&[
        "--tcp",
        "127.0.0.1:0",
        "--address",
        "3",
        "--game-rate",
        "0",
        "--unplug-every",
        "3",
        // Long enough for the host's five failed polls (tried twice each).
        "--unplug-for",
        "1.5",
    ]);
    let addr = sim.ready.strip_prefix("ready tcp ").unwrap().to_string();
    let mut host = Host::new(Box::new(TcpStream::connect(&addr).unwrap()), &[3]);
    let down = |h: &Host| matches!(h.links[0].state(), LinkState::Down(_));
    // Two rounds: up, down on schedule, up again on schedule, no signal sent.
    for round in 0..2 {
        assert!(
            host.run(Duration::from_secs(10), all_up),
            "round {round}: link up"
        );
        assert!(
            host.run(Duration::from_secs(10), down),
            "round {round}: link down"
        );
    }
    assert!(
        host.run(Duration::from_secs(10), all_up),
        "link up at the end"
    );
    let journal = sim.stop();
    let unplugs = unplugs(&journal);
    assert!(unplugs.len() >= 4, "{unplugs:?}");
    assert!(
        unplugs.chunks(2).all(|c| c[0]),
        "unplug then replug, in turn: {unplugs:?}"
    );
}

#[test]
fn device_unplug_takes_the_pty_away_and_brings_it_back() {
    let sim = Sim::start(&[
        "--pty",
        "{dir}/egm",
        "--address",
        "9",
        "--game-rate",
        "0",
        "--unplug-mode",
        "device",
    ]);
    let link = sim.dir.path().join("egm");
    let mut host = Host::new(Box::new(open_pty(&link)), &[9]);
    assert!(host.run(Duration::from_secs(5), all_up), "link up");
    sim.signal(libc::SIGUSR1);
    // The host's end hangs up and the link goes.
    assert!(host.run(Duration::from_secs(5), |h| h.gone), "hang-up seen");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::symlink_metadata(&link).is_ok() {
        assert!(Instant::now() < deadline, "link removed on unplug");
        std::thread::sleep(Duration::from_millis(10));
    }
    sim.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(Instant::now() < deadline, "link back on replug");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Reopened, the line answers again (the EGM syncs on the link's 80).
    let mut host = Host::new(Box::new(open_pty(&link)), &[9]);
    assert!(
        host.run(Duration::from_secs(5), all_up),
        "link up after replug"
    );
    sim.stop();
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(BIN)
        .args(["sim", "egm", "--tcp", "127.0.0.1:0", "--address", "1"])
        .args(["--no-reply", "80", "--corrupt", "30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("110"), "{err}");
    let out = Command::new(BIN)
        .args(["sim", "egm", "--address", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "needs --pty or --tcp");
}
