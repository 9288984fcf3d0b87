//! The TV simulator against the project's own host side: `adb::proto`'s
//! `Connection`, driven over a real loopback socket by a small synchronous
//! loop. Auth paths, both adbd generations, every telemetry command's
//! output (read back with the agent's own parsers, which the simulator
//! never uses), every control command's effect, screencap, sync, reboot
//! and the faults; and the `sitelink sim tv` binary itself.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sitelink::adb::proto::message::{Message, VERSION_MIN};
use sitelink::adb::proto::sync::send_requests;
use sitelink::adb::proto::{
    AdbKey, Config, Connection, Event, LocalId, Pull, PulledFile, ShellOutput, ShellRequest, State,
    SyncError,
};
use sitelink::adb::tv::control::{Action, Plan};
use sitelink::adb::tv::telemetry::{self, Probe, Wakefulness};
use sitelink::sim::tv::{
    self, Auth, Fault, FaultPlan, LAUNCHER, LIVE_TV, SimTvs, TvConfig, TvSimConfig,
};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");
/// No single exchange with a local simulator takes this long.
const WAIT: Duration = Duration::from_secs(10);

/// Keys cost seconds to make in a debug build: one of each per run.
fn key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}

fn other_key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn tvs_with(tv: TvConfig, count: usize) -> SimTvs {
    let mut cfg = TvSimConfig::new(loopback(), count);
    cfg.tvs = vec![tv; count];
    tv::spawn(cfg).expect("spawn TVs")
}

fn one_tv() -> SimTvs {
    tvs_with(TvConfig::default(), 1)
}

/// Why a stream did not finish.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    Refused,
    TimedOut,
    /// The TV closed the TCP connection.
    Dropped,
}

/// A host connection and its socket, pumped by hand.
struct Host {
    sock: TcpStream,
    conn: Connection,
    events: VecDeque<Event>,
    dropped: bool,
}

impl Host {
    fn dial(addr: SocketAddr, keys: Vec<AdbKey>) -> Host {
        Host::with(addr, Config::new(keys, "test@sim"))
    }

    fn with(addr: SocketAddr, cfg: Config) -> Host {
        let sock = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the TV");
        sock.set_nodelay(true).unwrap();
        Host {
            sock,
            conn: Connection::new(cfg),
            events: VecDeque::new(),
            dropped: false,
        }
    }

    /// A host that is online with the default key.
    fn online(addr: SocketAddr) -> Host {
        let mut h = Host::dial(addr, vec![key()]);
        h.wait_state(|s| *s == State::Online, WAIT).expect("online");
        h.events.clear();
        h
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    /// Sends what is queued, then reads for at most `wait`.
    fn turn(&mut self, wait: Duration) {
        while let Some(bytes) = self.conn.poll_transmit() {
            if self.sock.write_all(&bytes).is_err() {
                self.dropped = true;
                return;
            }
        }
        if self.dropped {
            return;
        }
        let mut buf = [0u8; 65536];
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        match self.sock.read(&mut buf) {
            Ok(0) => self.dropped = true,
            Ok(n) => {
                self.conn.handle_bytes(&buf[..n]).expect("TV speaks ADB");
                while let Some(e) = self.conn.poll_event() {
                    self.events.push_back(e);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => self.dropped = true,
        }
    }

    fn wait_state(
        &mut self,
        ok: impl Fn(&State) -> bool,
        timeout: Duration,
    ) -> Result<(), StreamEnd> {
        let deadline = Instant::now() + timeout;
        while !ok(self.conn.state()) {
            if self.dropped {
                return Err(StreamEnd::Dropped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StreamEnd::TimedOut);
            }
            self.turn(left.min(Duration::from_millis(50)));
        }
        Ok(())
    }

    /// Waits until the TV closes the socket.
    fn wait_dropped(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.dropped && Instant::now() < deadline {
            self.turn(Duration::from_millis(50));
        }
        self.dropped
    }

    /// Opens `service`, writes `input`, feeds each piece of output to
    /// `data` until the TV closes the stream (or `data` says it is done).
    fn stream(
        &mut self,
        service: &str,
        input: &[u8],
        timeout: Duration,
        mut data: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), StreamEnd> {
        let id = self.conn.open(service).expect("open");
        if !input.is_empty() {
            self.conn.write(id, input).unwrap();
        }
        self.until_closed(id, timeout, &mut data)
    }

    fn until_closed(
        &mut self,
        id: LocalId,
        timeout: Duration,
        data: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), StreamEnd> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut others = VecDeque::new();
            while let Some(e) = self.events.pop_front() {
                match e {
                    Event::Data { id: d, data: bytes } if d == id => {
                        if data(&bytes) {
                            let _ = self.conn.close(id);
                            return Ok(());
                        }
                    }
                    Event::Closed(c) if c == id => return Ok(()),
                    Event::Refused(r) if r == id => return Err(StreamEnd::Refused),
                    Event::Opened(o) if o == id => {}
                    other => others.push_back(other),
                }
            }
            self.events = others;
            if self.dropped {
                return Err(StreamEnd::Dropped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = self.conn.abort(id);
                return Err(StreamEnd::TimedOut);
            }
            self.turn(left.min(Duration::from_millis(50)));
        }
    }

    fn run(&mut self, req: &ShellRequest, timeout: Duration) -> Result<ShellOutput, StreamEnd> {
        let mut col = req.collector(16 << 20);
        self.stream(&req.service, &req.initial_input(), timeout, |d| {
            col.push(d).expect("shell framing");
            false
        })?;
        Ok(col.finish())
    }

    /// A command with shell v2 when the TV has it, else `shell:` + marker.
    fn shell(&mut self, command: &str) -> ShellOutput {
        let v2 = self.conn.has_feature("shell_v2");
        self.run(&ShellRequest::new(command, v2), WAIT)
            .unwrap_or_else(|e| panic!("{command}: {e:?}"))
    }

    /// stdout of a command that must succeed quietly.
    fn ok(&mut self, command: &str) -> String {
        let out = self.shell(command);
        assert_eq!(out.exit, Some(0), "{command}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn exec(&mut self, command: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.stream(&format!("exec:{command}"), &[], WAIT, |d| {
            out.extend_from_slice(d);
            false
        })
        .expect("exec");
        out
    }

    fn pull(&mut self, path: &str) -> Result<PulledFile, SyncError> {
        let mut pull = Pull::new(path, 16 << 20).unwrap();
        let requests = pull.requests().to_vec();
        let mut result = None;
        let ended = self.stream("sync:", &requests, WAIT, |d| match pull.push(d) {
            Ok(Some(f)) => {
                result = Some(Ok(f));
                true
            }
            Ok(None) => false,
            Err(e) => {
                result = Some(Err(e));
                true
            }
        });
        match result {
            Some(r) => r,
            None => panic!("pull {path}: stream ended without an answer: {ended:?}"),
        }
    }

    /// A push; the TV's OKAY or FAIL text.
    fn push(&mut self, path: &str, data: &[u8]) -> Result<(), String> {
        let mut bytes = send_requests(path, 0o100_644, data, 1_700_000_000).unwrap();
        bytes.extend_from_slice(b"QUIT\0\0\0\0");
        let mut reply = Vec::new();
        self.stream("sync:", &bytes, WAIT, |d| {
            reply.extend_from_slice(d);
            false
        })
        .expect("sync stream");
        match reply.get(..4) {
            Some(b"OKAY") => Ok(()),
            Some(b"FAIL") => Err(String::from_utf8_lossy(&reply[8..]).into_owned()),
            _ => panic!("push {path}: {reply:?}"),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// --- auth --------------------------------------------------------------------

#[test]
fn a_new_key_is_accepted_on_the_tv_and_signs_in_next_time() {
    let tvs = one_tv();
    let addr = tvs.addrs()[0];
    let mut first = Host::dial(addr, vec![key()]);
    first.wait_state(|s| *s == State::Online, WAIT).unwrap();
    let events: Vec<Event> = first.events.drain(..).collect();
    assert!(matches!(events[0], Event::AuthRequired), "{events:?}");
    assert!(
        matches!(&events[1], Event::Unauthorized { fingerprint } if *fingerprint == key().public_key().fingerprint()),
        "{events:?}"
    );
    let Event::Connected(banner) = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(banner.model(), Some("SIM TV 55"));
    assert!(banner.features.contains("shell_v2"));
    assert_eq!(tvs.state(0).trusted_keys, 1);
    assert_eq!(first.ok("echo hi"), "hi\n");

    // Again: the signature is enough now (an old key first is refused).
    let mut again = Host::dial(addr, vec![other_key(), key()]);
    again.wait_state(|s| *s == State::Online, WAIT).unwrap();
    assert!(
        !again
            .events
            .iter()
            .any(|e| matches!(e, Event::Unauthorized { .. })),
        "{:?}",
        again.events
    );
    let state = tvs.state(0);
    assert_eq!((state.trusted_keys, state.connections), (1, 2));
}

#[test]
fn an_unauthorized_tv_never_lets_the_host_in() {
    let tvs = tvs_with(
        TvConfig {
            auth: Auth::Deny,
            ..TvConfig::default()
        },
        1,
    );
    let mut host = Host::dial(tvs.addrs()[0], vec![key()]);
    host.wait_state(|s| matches!(s, State::Unauthorized { .. }), WAIT)
        .unwrap();
    // The dialog stays unanswered: silence, and the socket stays open.
    assert_eq!(
        host.wait_state(|s| *s == State::Online, Duration::from_millis(700)),
        Err(StreamEnd::TimedOut)
    );
    assert!(!host.dropped);
    assert_eq!(tvs.state(0).trusted_keys, 0);
    // A key given at start is trusted, though.
    tvs.trust(0, key().public_key().clone());
    let mut again = Host::dial(tvs.addrs()[0], vec![key()]);
    again.wait_state(|s| *s == State::Online, WAIT).unwrap();
}

#[test]
fn preloaded_keys_and_auth_off() {
    let trusted = tvs_with(
        TvConfig {
            auth: Auth::Deny,
            trusted: vec![key().public_key().clone()],
            ..TvConfig::default()
        },
        1,
    );
    let mut host = Host::dial(trusted.addrs()[0], vec![key()]);
    host.wait_state(|s| *s == State::Online, WAIT).unwrap();
    assert!(matches!(host.events[0], Event::AuthRequired));

    let open = tvs_with(
        TvConfig {
            auth: Auth::Off,
            ..TvConfig::default()
        },
        1,
    );
    let mut host = Host::dial(open.addrs()[0], vec![]);
    host.wait_state(|s| *s == State::Online, WAIT).unwrap();
    assert!(
        matches!(host.events[0], Event::Connected(_)),
        "{:?}",
        host.events
    );
}

#[test]
fn legacy_tv_speaks_0x01000000_with_4k_payloads_and_checks_sums() {
    let tvs = tvs_with(
        TvConfig {
            legacy: true,
            ..TvConfig::default()
        },
        1,
    );
    let addr = tvs.addrs()[0];
    let mut host = Host::online(addr);
    let peer = host.conn.peer().unwrap().clone();
    assert_eq!((peer.version, peer.max_payload), (VERSION_MIN, 4096));
    assert!(peer.banner.features.is_empty());
    assert!(!host.conn.has_feature("shell_v2"));

    // No shell v2 on 6.0: the OPEN is refused and `shell:` works instead.
    let v2 = ShellRequest::new("exit 3", true);
    assert_eq!(host.run(&v2, WAIT), Err(StreamEnd::Refused));
    let out = host.run(&v2.fallback().unwrap(), WAIT).unwrap();
    assert_eq!(out.exit, Some(3));
    // `shell:` goes through a PTY: \r\n on the wire, \n after the collector.
    let mut raw = Vec::new();
    host.stream("shell:echo a; echo b", &[], WAIT, |d| {
        raw.extend_from_slice(d);
        false
    })
    .unwrap();
    assert_eq!(raw, b"a\r\nb\r\n");
    assert_eq!(
        host.shell("getprop ro.build.version.release").stdout,
        b"6.0.1\n"
    );
    // Output above 4 KiB comes in 4 KiB writes.
    let png = host.exec("screencap -p");
    assert_eq!(png, tvs.screenshot(0));

    // A message with a wrong sum is fatal for a 0x01000000 adbd.
    let mut bad = Message::wrte(99, 1, b"hello".to_vec()).encode();
    bad[16] ^= 0xFF;
    host.send_raw(&bad);
    assert!(host.wait_dropped(WAIT), "the TV must drop a bad checksum");

    // A modern TV and host skip sums (0x01000001): the same is ignored.
    let modern = one_tv();
    let mut host = Host::online(modern.addrs()[0]);
    let mut bad = Message::wrte(99, 1, b"hello".to_vec()).encode();
    bad[16] ^= 0xFF;
    host.send_raw(&bad);
    assert_eq!(host.ok("echo still here"), "still here\n");
}

// --- shell -------------------------------------------------------------------

#[test]
fn shell_v2_v1_and_exec_framing() {
    let tvs = one_tv();
    let mut host = Host::online(tvs.addrs()[0]);
    let out = host.shell("echo out; echo err >&2; exit 3");
    assert_eq!(
        (out.stdout, out.stderr, out.exit),
        (b"out\n".to_vec(), b"err\n".to_vec(), Some(3))
    );
    let out = host.shell("frobnicate");
    assert_eq!(out.exit, Some(127));
    assert_eq!(
        lossy(&out.stderr),
        "/system/bin/sh: frobnicate: inaccessible or not found\n"
    );
    // `shell:` on a modern TV: raw, merged, and no status of its own.
    let mut raw = Vec::new();
    host.stream("shell:echo a; frob; exit 5", &[], WAIT, |d| {
        raw.extend_from_slice(d);
        false
    })
    .unwrap();
    assert_eq!(
        lossy(&raw),
        "a\n/system/bin/sh: frob: inaccessible or not found\n"
    );
    assert_eq!(host.exec("echo x; false || echo y"), b"x\ny\n");
    // Unknown services are refused, as by adbd.
    assert_eq!(
        host.stream("jdwp:1", &[], WAIT, |_| false),
        Err(StreamEnd::Refused)
    );
    // sleep paces the output.
    let t = Instant::now();
    assert_eq!(host.ok("echo a; sleep 0.3; echo b"), "a\nb\n");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(tvs.state(0).commands >= 5);
}

#[test]
fn many_streams_at_once_on_one_connection() {
    let tvs = one_tv();
    let mut host = Host::online(tvs.addrs()[0]);
    let reqs: Vec<ShellRequest> = (0..8)
        .map(|i| ShellRequest::new(&format!("sleep 0.{}; echo {i}; exit {i}", 8 - i), true))
        .collect();
    let mut ids = Vec::new();
    let mut cols = Vec::new();
    for r in &reqs {
        let id = host.conn.open(&r.service).unwrap();
        host.conn.write(id, &r.initial_input()).unwrap();
        ids.push(id);
        cols.push(Some(r.collector(1 << 20)));
    }
    let mut outs: Vec<Option<ShellOutput>> = vec![None; 8];
    let t = Instant::now();
    let deadline = t + WAIT;
    while outs.iter().any(Option::is_none) && Instant::now() < deadline {
        host.turn(Duration::from_millis(50));
        while let Some(e) = host.events.pop_front() {
            match e {
                Event::Data { id, data } => {
                    let i = ids.iter().position(|x| *x == id).unwrap();
                    cols[i].as_mut().unwrap().push(&data).unwrap();
                }
                Event::Closed(id) => {
                    let i = ids.iter().position(|x| *x == id).unwrap();
                    outs[i] = cols[i].take().map(|c| c.finish());
                }
                _ => {}
            }
        }
    }
    for (i, out) in outs.into_iter().enumerate() {
        let out = out.expect("every stream closes");
        assert_eq!(
            (lossy(&out.stdout), out.exit),
            (format!("{i}\n"), Some(i as u8))
        );
    }
    // In parallel: about the longest sleep, not their sum (3.6 s).
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

// --- telemetry ---------------------------------------------------------------

#[test]
fn every_telemetry_probe_reads_back_as_the_tv_state() {
    let tvs = one_tv();
    let mut host = Host::online(tvs.addrs()[0]);
    let mut sample = telemetry::Sample::default();
    let mut outputs = std::collections::BTreeMap::new();
    for probe in Probe::ALL {
        let out = host.ok(probe.command());
        sample.absorb(probe, &out);
        outputs.insert(probe, out);
    }
    let state = tvs.state(0);
    // Shapes, as Android prints them.
    let power = &outputs[&Probe::Power];
    assert!(power.starts_with("POWER MANAGER (dumpsys power)\n"));
    assert!(
        power.contains("\n  mWakefulness=Awake\n") && power.contains("\nDisplay Power: state=ON\n")
    );
    let window = &outputs[&Probe::Window];
    let focus = window
        .lines()
        .find(|l| l.trim_start().starts_with("mCurrentFocus="))
        .unwrap();
    assert!(focus.contains(&format!(" u0 {LAUNCHER}/")), "{focus}");
    let app = window
        .lines()
        .find(|l| l.trim_start().starts_with("mFocusedApp="))
        .unwrap();
    assert!(
        app.contains("ActivityRecord{") && app.contains(&format!(" u0 {LAUNCHER}/.MainActivity t")),
        "{app}"
    );
    let audio = &outputs[&Probe::Audio];
    let music: Vec<&str> = audio
        .lines()
        .skip_while(|l| *l != "- STREAM_MUSIC:")
        .take(7)
        .collect();
    assert_eq!(music[1], "   Muted: false");
    assert_eq!(music[3], format!("   Max: {}", state.max_volume));
    assert!(
        music[5].starts_with("   Current: 2 (speaker): "),
        "{music:?}"
    );
    assert!(
        music[5].contains(&format!(", 400 (hdmi): {},", state.volume)),
        "{music:?}"
    );
    assert_eq!(music[6], "   Devices: hdmi");
    assert!(!outputs[&Probe::TvInput].contains("ResourceClientProfile"));
    let props = telemetry::parse_props(&outputs[&Probe::Props]);
    assert_eq!(props["ro.product.model"], "SIM TV 55");
    let df: Vec<&str> = outputs[&Probe::Storage].lines().collect();
    assert_eq!(df.len(), 2);
    assert!(df[0].starts_with("Filesystem") && df[0].ends_with("Use% Mounted on"));
    assert!(df[1].ends_with("% /data"));
    let temps: Vec<i64> = outputs[&Probe::Thermal]
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        temps.len() >= 2 && temps.iter().all(|t| (20_000..90_000).contains(t)),
        "{temps:?}"
    );

    // And the agent's parsers read the state back.
    assert_eq!(sample.power.screen_on, Some(true));
    assert_eq!(sample.power.wakefulness, Some(Wakefulness::Awake));
    assert_eq!(sample.app.as_deref(), Some(LAUNCHER));
    assert_eq!(sample.volume.level, Some(state.volume));
    assert_eq!(sample.volume.max, Some(state.max_volume));
    assert_eq!(sample.volume.muted, Some(false));
    let up = sample.uptime_s.unwrap();
    assert!(
        up.abs_diff(state.uptime.as_secs()) <= 2,
        "{up} vs {:?}",
        state.uptime
    );
    assert!(sample.memory.total_kb.unwrap() > sample.memory.available_kb.unwrap());
    let s = sample.storage;
    assert_eq!(
        s.total_kb.unwrap(),
        s.used_kb.unwrap() + s.available_kb.unwrap()
    );
    assert!((20.0..90.0).contains(&sample.temperature_c.unwrap()));
    let id = telemetry::Identity::from_props(&props);
    assert_eq!(id.model.as_deref(), Some("SIM TV 55"));
    assert_eq!(id.android.as_deref(), Some("11"));
    assert_eq!(id.sdk, Some(30));
    assert!(id.serial.as_deref().unwrap().starts_with("SIMTV000"));
    assert_eq!(id.device.as_deref(), Some("simtv"));
    assert_eq!(id.manufacturer.as_deref(), Some("Sitelink"));

    // python-androidtv's five property lines, and getprop of a missing key.
    let five = host.ok(
        "getprop ro.product.manufacturer && getprop ro.product.model && getprop ro.serialno && \
         getprop ro.build.version.release && getprop ro.product.vendor.device",
    );
    assert_eq!(five.lines().count(), 5, "{five}");
    assert_eq!(host.ok("getprop no.such.prop"), "\n");
}

/// Runs the agent's plan for an action, as the TV task would.
fn act(host: &mut Host, action: &str, args: &[&str], sdk: u32) -> ShellOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match Action::parse(action, &args, false, false)
        .unwrap()
        .plan(Some(sdk))
    {
        Plan::Shell(cmd) => host.shell(&cmd),
        other => panic!("{action}: {other:?} is not a shell command"),
    }
}

#[test]
fn control_commands_change_the_tv() {
    let tvs = one_tv();
    let mut host = Host::online(tvs.addrs()[0]);
    let ok = |out: ShellOutput| assert_eq!(out.exit, Some(0), "{out:?}");

    ok(act(&mut host, "power", &["off"], 30));
    assert!(!tvs.state(0).awake);
    let p = telemetry::parse_power(&host.ok("dumpsys power"));
    assert_eq!(
        (p.screen_on, p.wakefulness),
        (Some(false), Some(Wakefulness::Asleep))
    );
    ok(act(&mut host, "power", &["toggle"], 30));
    assert!(tvs.state(0).awake);
    ok(act(&mut host, "power", &["on"], 30));
    assert!(tvs.state(0).awake, "WAKEUP is idempotent");

    ok(act(&mut host, "volume", &["37"], 30));
    assert_eq!(tvs.state(0).volume, 37);
    ok(act(&mut host, "volume", &["up"], 30));
    ok(act(&mut host, "volume", &["up"], 30));
    ok(act(&mut host, "volume", &["down"], 30));
    assert_eq!(tvs.state(0).volume, 38);
    ok(act(&mut host, "volume", &["mute"], 30));
    let v = telemetry::parse_audio(&host.ok("dumpsys audio"));
    assert_eq!((v.level, v.muted), (Some(38), Some(true)));
    // Android 11 has no `media` command: the agent's SDK choice matters.
    let old_way = act(&mut host, "volume", &["5"], 29);
    assert_eq!(old_way.exit, Some(127), "{old_way:?}");
    assert_eq!(tvs.state(0).volume, 38);
    // Out of range: VolumeCtrl complains on stderr but exits 0.
    let too_loud = act(&mut host, "volume", &["500"], 30);
    assert_eq!(too_loud.exit, Some(0));
    assert_eq!(
        lossy(&too_loud.stderr),
        "Error: invalid volume index 500 for stream 3 (should be in [0..100])\n"
    );
    assert_eq!(
        lossy(&too_loud.stdout),
        "[V] will control stream=3 (STREAM_MUSIC)\n[V] will set volume to index=500\n[V] Connecting to AudioService\n"
    );

    ok(act(&mut host, "input", &["hdmi2"], 30));
    let s = tvs.state(0);
    assert_eq!((s.input, s.app.as_str()), (Some(2), LIVE_TV));
    let tv_input = host.ok("dumpsys tv_input");
    let profile = tv_input
        .lines()
        .find(|l| l.contains("ResourceClientProfile {"))
        .unwrap();
    assert!(profile.contains("hdmi_port=2"), "{profile}");
    assert_eq!(
        telemetry::parse_hdmi_input(&tv_input).as_deref(),
        Some("hdmi2")
    );
    ok(act(&mut host, "key", &["home"], 30));
    assert_eq!(
        (tvs.state(0).input, tvs.state(0).app.as_str()),
        (None, LAUNCHER)
    );

    let launched = act(&mut host, "launch", &["com.netflix.ninja"], 30);
    ok(launched.clone());
    assert!(lossy(&launched.stdout).contains("Events injected: 1"));
    assert_eq!(tvs.state(0).app, "com.netflix.ninja");
    assert_eq!(
        telemetry::parse_foreground_app(&host.ok("dumpsys window windows")).as_deref(),
        Some("com.netflix.ninja")
    );
    let missing = act(&mut host, "launch", &["com.example.nothere"], 30);
    assert_ne!(missing.exit, Some(0));
    assert!(lossy(&missing.stdout).ends_with("** No activities found to run, monkey aborted.\n"));
    assert_eq!(tvs.state(0).app, "com.netflix.ninja");
    host.ok("am force-stop com.netflix.ninja");
    assert_eq!(tvs.state(0).app, LAUNCHER);
    assert!(
        host.ok("pm list packages")
            .lines()
            .any(|l| l == "package:com.netflix.ninja")
    );

    let logs = act(&mut host, "logs", &[], 30);
    ok(logs.clone());
    let logs = lossy(&logs.stdout);
    assert!(logs.lines().count() <= 201);
    assert!(
        logs.contains("cmp=com.netflix.ninja/.MainActivity"),
        "{logs}"
    );
    assert!(logs.contains("Force stopping com.netflix.ninja"));

    assert_eq!(tvs.state(0).keys, [223, 26, 224, 24, 24, 25, 164, 244, 3]);
}

#[test]
fn legacy_tv_takes_the_old_volume_command() {
    let tvs = tvs_with(
        TvConfig {
            legacy: true,
            ..TvConfig::default()
        },
        1,
    );
    let mut host = Host::online(tvs.addrs()[0]);
    let out = act(&mut host, "volume", &["12"], 23);
    assert_eq!(out.exit, Some(0), "{out:?}");
    assert_eq!(tvs.state(0).volume, 12);
    // No `cmd` before 7.0.
    assert_eq!(act(&mut host, "volume", &["13"], 30).exit, Some(127));
    let app = host.ok("dumpsys window windows");
    assert!(app.contains("mFocusedApp=AppWindowToken{"), "{app}");
    assert_eq!(
        telemetry::parse_foreground_app(&app).as_deref(),
        Some(LAUNCHER)
    );
}

// --- screencap, sync, reboot -------------------------------------------------

/// Width, height and first pixel of a PNG, read by Python's zlib: a
/// decoder that shares no code with the simulator's encoder.
fn decode_png(png: &[u8]) -> (u32, u32, [u8; 3]) {
    const CHECK: &str = r#"
import struct, sys, zlib
d = sys.stdin.buffer.read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "signature"
i, idat, ihdr, end = 8, b"", None, False
while i < len(d):
    n, = struct.unpack(">I", d[i:i+4]); kind = d[i+4:i+8]; body = d[i+8:i+8+n]
    crc, = struct.unpack(">I", d[i+8+n:i+12+n])
    assert zlib.crc32(kind + body) & 0xffffffff == crc, "CRC of " + kind.decode()
    if kind == b"IHDR": ihdr = struct.unpack(">IIBBBBB", body)
    if kind == b"IDAT": idat += body
    if kind == b"IEND": end = True
    i += 12 + n
w, h, depth, colour = ihdr[:4]
assert end and depth == 8 and colour == 2, ihdr
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + 3 * w), len(raw)
print(w, h, raw[1], raw[2], raw[3])
"#;
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 checks the PNG: apt-get install -y python3 (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(png).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a valid PNG: {}",
        lossy(&out.stderr)
    );
    let v: Vec<u32> = lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], [v[2] as u8, v[3] as u8, v[4] as u8])
}

#[test]
fn screencap_gives_a_valid_png_of_the_app_in_front() {
    let tvs = one_tv();
    let mut host = Host::online(tvs.addrs()[0]);
    let home = host.exec("screencap -p");
    let (w, h, home_px) = decode_png(&home);
    assert_eq!((w, h), (320, 180));
    // adb 29 quotes its argv.
    assert_eq!(host.exec("screencap '-p'"), home);
    // Through shell v2 the bytes arrive framed, unchanged.
    assert_eq!(host.shell("screencap -p").stdout, home);
    host.ok("monkey -p org.xbmc.kodi 1");
    let kodi = host.exec("screencap -p");
    assert_ne!(decode_png(&kodi).2, home_px);
    host.ok("input keyevent KEYCODE_SLEEP");
    assert_eq!(decode_png(&host.exec("screencap -p")).2, [0, 0, 0]);
    // Raw form: width, height, format, colour space, then RGBA.
    let raw = host.exec("screencap");
    assert_eq!(raw[..8], [64, 1, 0, 0, 180, 0, 0, 0]);
    assert_eq!(raw.len(), 16 + 320 * 180 * 4);
    // Written to a file, then pulled, as adb users do.
    host.ok("input keyevent 224; screencap -p /sdcard/s.png");
    let pulled = host.pull("/sdcard/s.png").unwrap();
    assert_eq!(pulled.data, kodi);
}

#[test]
fn sync_pulls_pushes_and_refuses_like_adbd() {
    for legacy in [false, true] {
        let tvs = tvs_with(
            TvConfig {
                legacy,
                ..TvConfig::default()
            },
            1,
        );
        let mut host = Host::online(tvs.addrs()[0]);
        let readme = host.pull("/sdcard/Download/readme.txt").unwrap();
        assert!(lossy(&readme.data).contains("SIM TV 55"), "{readme:?}");
        assert_eq!(readme.mode, 0o100_660);
        assert_eq!(readme.size as usize, readme.data.len());
        // Over 64 KiB: several DATA chunks each way (and 4 KiB WRTEs on 6.0).
        let blob: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
        host.push("/sdcard/Download/new/blob.bin", &blob).unwrap();
        let back = host.pull("/sdcard/Download/new/blob.bin").unwrap();
        assert_eq!(
            (back.data == blob, back.mtime, back.mode),
            (true, 1_700_000_000, 0o100_644)
        );
        assert_eq!(host.ok("ls /sdcard/Download"), "new\nreadme.txt\n");
        assert_eq!(
            host.pull("/sdcard/nope.txt"),
            Err(SyncError::Fail(
                "open failed: No such file or directory".into()
            ))
        );
        assert_eq!(
            host.push("/system/app.apk", b"x"),
            Err("couldn't create file: Read-only file system".into())
        );
        let uptime = host.pull("/proc/uptime").unwrap();
        assert!(telemetry::parse_uptime(&lossy(&uptime.data)).is_some());
    }
}

#[test]
fn reboot_drops_the_connection_and_the_tv_comes_back_fresh() {
    let mut cfg = TvSimConfig::new(loopback(), 1);
    cfg.reboot_downtime = Duration::from_millis(800);
    let tvs = tv::spawn(cfg).unwrap();
    let addr = tvs.addrs()[0];
    let mut host = Host::online(addr);
    host.ok("monkey -p com.netflix.ninja 1");
    assert!(tvs.state(0).uptime > Duration::from_secs(3600));
    let id = host.conn.open("reboot:").unwrap();
    let t = Instant::now();
    assert_eq!(
        host.until_closed(id, WAIT, &mut |_| false),
        Err(StreamEnd::Dropped)
    );
    assert!(host.events.is_empty() || host.events.iter().all(|e| matches!(e, Event::Opened(_))));
    let state = tvs.state(0);
    assert!(!state.reachable);
    assert_eq!(state.boots, 1);
    assert_eq!(state.app, LAUNCHER);
    assert!(
        TcpStream::connect_timeout(&addr, WAIT).is_err(),
        "refused while rebooting"
    );
    // Back after the downtime, with uptime from zero and the key remembered.
    let deadline = t + WAIT;
    let mut back = loop {
        if let Ok(sock) = TcpStream::connect(addr) {
            drop(sock);
            break Host::dial(addr, vec![key()]);
        }
        assert!(Instant::now() < deadline, "the TV did not come back");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    back.wait_state(|s| *s == State::Online, WAIT).unwrap();
    assert!(
        !back
            .events
            .iter()
            .any(|e| matches!(e, Event::Unauthorized { .. }))
    );
    let up = telemetry::parse_uptime(&back.ok("cat /proc/uptime")).unwrap();
    assert!(up < 10, "{up}");
    assert!(tvs.state(0).reachable);
}

// --- faults ------------------------------------------------------------------

#[test]
fn drop_stall_slow_and_unreachable_faults() {
    let tvs = one_tv();
    let addr = tvs.addrs()[0];

    let mut host = Host::online(addr);
    tvs.set_fault(0, Fault::Drop);
    assert!(host.wait_dropped(Duration::from_secs(2)));
    let mut host = Host::online(addr);

    // Stalled: nothing is read or answered, so the host's timeout fires...
    tvs.set_fault(0, Fault::Stall(Duration::from_millis(1200)));
    let req = ShellRequest::new("echo late", true);
    assert_eq!(
        host.run(&req, Duration::from_millis(500)),
        Err(StreamEnd::TimedOut)
    );
    // ...and afterwards the TV answers again, on the same connection.
    let t = Instant::now();
    assert_eq!(host.run(&req, WAIT).unwrap().stdout, b"late\n");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    tvs.set_fault(0, Fault::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    host.ok("true");
    assert!(t.elapsed() >= Duration::from_millis(300));
    tvs.set_fault(0, Fault::Slow(Duration::ZERO));
    let t = Instant::now();
    host.ok("true");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    tvs.set_fault(0, Fault::Unreachable(Duration::from_millis(600)));
    assert!(host.wait_dropped(Duration::from_secs(2)));
    assert!(!tvs.state(0).reachable);
    assert!(TcpStream::connect_timeout(&addr, WAIT).is_err());
    std::thread::sleep(Duration::from_millis(900));
    Host::online(addr).ok("true");
}

#[test]
fn scheduled_drops_and_stalls() {
    let mut cfg = TvSimConfig::new(loopback(), 2);
    cfg.faults = FaultPlan {
        drop_every: Some(Duration::from_millis(600)),
        ..FaultPlan::default()
    };
    let tvs = tv::spawn(cfg).unwrap();
    for addr in tvs.addrs() {
        let mut host = Host::online(addr);
        assert!(
            host.wait_dropped(Duration::from_secs(3)),
            "{addr} drops by itself"
        );
    }

    let mut cfg = TvSimConfig::new(loopback(), 1);
    cfg.faults = FaultPlan {
        stall_every: Some(Duration::from_millis(1000)),
        stall_for: Duration::from_millis(700),
        ..FaultPlan::default()
    };
    let tvs = tv::spawn(cfg).unwrap();
    let mut host = Host::online(tvs.addrs()[0]);
    // Within a few periods one command must wait out a stall.
    let slowest = (0..12)
        .map(|_| {
            let t = Instant::now();
            host.ok("true");
            std::thread::sleep(Duration::from_millis(100));
            t.elapsed()
        })
        .max()
        .unwrap();
    assert!(slowest >= Duration::from_millis(200), "{slowest:?}");

    let mut bad = TvSimConfig::new(loopback(), 1);
    bad.faults.stall_every = Some(Duration::from_secs(1));
    bad.faults.stall_for = Duration::from_secs(1);
    assert!(matches!(
        tv::spawn(bad),
        Err(tv::SimTvError::StallPlan { .. })
    ));
}

#[test]
fn consecutive_ports_and_distinct_serials() {
    // Find a free run of ports by binding port 0 and taking the next ones.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = probe.local_addr().unwrap();
    drop(probe);
    let mut cfg = TvSimConfig::new(base, 3);
    cfg.seed = 42;
    let tvs = match tv::spawn(cfg) {
        Ok(t) => t,
        // Another process took one of the ports meanwhile: nothing to test.
        Err(tv::SimTvError::Bind { .. }) => return,
        Err(e) => panic!("{e}"),
    };
    let ports: Vec<u16> = tvs.addrs().iter().map(SocketAddr::port).collect();
    assert_eq!(ports, [base.port(), base.port() + 1, base.port() + 2]);
    let serials: Vec<String> = tvs
        .addrs()
        .into_iter()
        .map(|a| Host::online(a).ok("getprop ro.serialno"))
        .collect();
    assert!(
        serials[0] != serials[1] && serials[1] != serials[2],
        "{serials:?}"
    );
    assert!(tv::spawn(TvSimConfig::new(base, 0)).is_err());
}

// --- the binary --------------------------------------------------------------

#[test]
fn cli_prints_its_ready_line_serves_and_exits_0_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "tv",
            "--listen",
            "127.0.0.1:0",
            "--count",
            "3",
            "--seed",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sitelink sim tv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["ready", "tv"], "{line}");
    let addrs: Vec<SocketAddr> = words[2..].iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs.len(), 3);
    for a in &addrs {
        assert_eq!(Host::online(*a).ok("echo up"), "up\n");
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: a pid we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "sim tv ignores SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(TcpStream::connect(addrs[0]).is_err());
}

#[test]
fn cli_rejects_bad_arguments_with_status_2() {
    for args in [
        &["--listen", "127.0.0.1:0", "--count", "0"][..],
        &[
            "--listen",
            "127.0.0.1:0",
            "--stall-every",
            "1",
            "--stall-for",
            "2",
        ],
        &[
            "--listen",
            "127.0.0.1:0",
            "--trust",
            "/nonexistent/adbkey.pub",
        ],
        &["--listen", "127.0.0.1:65535", "--count", "2"],
    ] {
        let out = Command::new(BIN)
            .args(["sim", "tv"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            lossy(&out.stderr)
        );
        assert!(
            lossy(&out.stderr).starts_with("sitelink sim tv: "),
            "{}",
            lossy(&out.stderr)
        );
    }
}

#[test]
fn cli_trusts_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adbkey");
    sitelink::adb::key::save(&key(), &path, "tech@laptop").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "tv",
            "--listen",
            "127.0.0.1:0",
            "--unauthorized",
            "--trust",
        ])
        .arg(sitelink::adb::key::public_key_path(&path))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    let mut host = Host::dial(addr, vec![key()]);
    let online = host.wait_state(|s| *s == State::Online, WAIT);
    let mut stranger = Host::dial(addr, vec![other_key()]);
    let stays_out = stranger.wait_state(|s| *s == State::Online, Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(online, Ok(()));
    assert_eq!(
        stays_out,
        Err(StreamEnd::TimedOut),
        "{addr}: {:?} {:?}",
        stranger.conn.state(),
        stranger.events
    );
}
