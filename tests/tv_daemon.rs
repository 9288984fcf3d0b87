//! Android TVs end to end with the real binaries: the daemon (`sitelink
//! run`) with 20 `[[tv]]` against the TV simulator (`sitelink sim tv`) on
//! loopback. Telemetry is stored for every TV it can reach, commands come
//! back with results and change what the next sample shows, the TV that
//! nobody authorises is reported as `unauthorized`, a legacy TV (no shell
//! v2) answers through `shell:`, and a TV that drops off the network comes
//! back by itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");
const TVS: usize = 20;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A child process, killed on drop so a failing test leaves nothing behind.
struct Proc(Child);

impl Proc {
    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.0.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "did not stop within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `sitelink sim tv`, and the ports its ready line names.
fn sim(listen: &str, count: usize, extra: &[&str]) -> (Proc, Vec<u16>) {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "tv",
            "--listen",
            listen,
            "--count",
            &count.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sitelink sim tv");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the simulator prints its ready line");
    let ports: Vec<u16> = sitelink::sim::tv::parse_ready_line(&ready)
        .unwrap_or_else(|| panic!("ready line {ready:?}"))
        .iter()
        .map(std::net::SocketAddr::port)
        .collect();
    assert_eq!(ports.len(), count, "{ready:?}");
    (Proc(child), ports)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run sitelink")
}

fn records(config: &Path, kind: &str) -> Vec<Value> {
    let out = cli(
        config,
        &["records", "--json", "--limit", "1000000", "--kind", kind],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn tv_states(config: &Path) -> Vec<(String, Value)> {
    let out = cli(config, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    status["store"]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap_or_default().to_string(),
                d["state"].clone(),
            )
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `command DEVICE ACTION ARGS`: the exit code and the printed outcome.
fn command(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["command"];
    all.extend_from_slice(args);
    all.extend(["--timeout", "30"]);
    let out = cli(config, &all);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn tv_name(i: usize) -> String {
    format!("tv-{:02}", i + 1)
}

#[test]
fn twenty_tvs_telemetry_commands_unauthorized_legacy_and_a_tv_that_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut modern, mut ports) = sim("127.0.0.1:0", TVS - 2, &[]);
    let (mut locked, locked_ports) = sim("127.0.0.1:0", 1, &["--unauthorized"]);
    let legacy_port = free_port();
    let legacy_addr = format!("127.0.0.1:{legacy_port}");
    let (mut legacy, _) = sim(&legacy_addr, 1, &["--legacy"]);
    ports.extend(locked_ports);
    ports.push(legacy_port);
    let (unauthorized, old) = (tv_name(TVS - 2), tv_name(TVS - 1));

    let mut cfg = format!(
        "[agent]\nid = \"tv-test\"\ndata_dir = \"{}\"\nlog_level = \"info\"\n\n[store]\ncommit_ms = 5\n",
        dir.path().join("data").display()
    );
    for (i, port) in ports.iter().enumerate() {
        let shell = if i == TVS - 1 {
            "allow_shell = true\n"
        } else {
            ""
        };
        cfg.push_str(&format!(
            "\n[[tv]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {port}\ntelemetry_s = 5\n{shell}",
            tv_name(i)
        ));
    }
    let config = dir.path().join("sitelink.toml");
    std::fs::write(&config, cfg).expect("config");
    let mut daemon = Proc(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the daemon"),
    );

    let db = dir.path().join("data/sitelink.db");
    wait_until(
        "the daemon opens its store",
        Duration::from_secs(20),
        || db.exists(),
    );
    // Telemetry for every TV that can be reached; none for the one nobody
    // authorises, which says so.
    wait_until("telemetry from 19 TVs", Duration::from_secs(40), || {
        let t = records(&config, "telemetry");
        (0..TVS)
            .filter(|&i| tv_name(i) != unauthorized)
            .all(|i| t.iter().any(|r| r["device"] == tv_name(i).as_str()))
    });
    assert!(
        !records(&config, "telemetry")
            .iter()
            .any(|r| r["device"] == unauthorized.as_str())
    );
    let states = tv_states(&config);
    let state_of = |name: &str| {
        states
            .iter()
            .find(|(d, _)| d == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{name} has no state"))
    };
    let locked_state = state_of(&unauthorized);
    assert_eq!(locked_state["tv"], "unauthorized", "{locked_state}");
    assert!(
        locked_state["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Allow USB debugging")),
        "{locked_state}"
    );
    let status = text(&cli(&config, &["status"]).stdout);
    assert!(
        status.contains("unauthorized — waiting for someone to accept"),
        "{status}"
    );
    let t1 = state_of(&tv_name(0));
    assert_eq!(t1["tv"], "connected", "{t1}");
    assert_eq!(t1["identity"]["model"], "SIM TV 55", "{t1}");

    // Commands, all at once across the reachable TVs, each with its result.
    std::thread::scope(|s| {
        for i in 0..TVS - 2 {
            let config = &config;
            s.spawn(move || {
                let (code, out) = command(config, &[&tv_name(i), "volume", "7"]);
                assert_eq!(code, Some(0), "{out}");
                assert!(out.contains("done"), "{out}");
            });
        }
    });
    let (code, out) = command(&config, &[&tv_name(0), "power", "off"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = command(&config, &[&tv_name(1), "screenshot"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"width\":"), "{out}");
    let (code, out) = command(&config, &[&tv_name(2), "shell", "echo", "hi"]);
    assert_eq!(code, Some(2), "shell is off unless allowed: {out}");
    assert!(out.contains("allow_shell = true"), "{out}");
    let (code, out) = command(&config, &[&tv_name(2), "dance"]);
    assert_eq!(code, Some(2), "{out}");
    // Above the stream's maximum (100 here, from the telemetry).
    let (code, out) = command(&config, &[&tv_name(2), "volume", "101"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("maximum, 100"), "{out}");
    // The legacy TV has no shell v2: `shell:` with the exit marker.
    let (code, out) = command(&config, &[&old, "shell", "echo", "hi"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"stdout\":\"hi\\n\""), "{out}");
    let (code, out) = command(&config, &[&old, "shell", "exit", "4"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("exit status 4"), "{out}");
    // A command for the TV that is not connected fails at once, saying why.
    let (code, out) = command(&config, &[&unauthorized, "volume", "up"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unauthorized"), "{out}");

    // The next samples show what the commands did.
    wait_until(
        "the commands show in telemetry",
        Duration::from_secs(20),
        || {
            let t = records(&config, "telemetry");
            let last = |name: &str| {
                t.iter()
                    .rev()
                    .find(|r| r["device"] == name)
                    .map(|r| r["payload"].clone())
            };
            (0..TVS - 2).all(|i| last(&tv_name(i)).is_some_and(|p| p["volume"]["level"] == 7))
                && last(&tv_name(0)).is_some_and(|p| p["power"]["screen_on"] == false)
        },
    );
    let screen = records(&config, "tv.screen");
    assert!(
        screen
            .iter()
            .any(|r| r["device"] == tv_name(0).as_str() && r["payload"]["to"] == "off"),
        "{screen:?}"
    );
    let shots = records(&config, "screenshot");
    let shot = shots
        .iter()
        .find(|r| r["device"] == tv_name(1).as_str())
        .expect("the screenshot is stored");
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["payload"]["data"].as_str().expect("data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(shot["payload"]["bytes"].as_u64(), Some(png.len() as u64));

    // The legacy TV drops off the network and comes back on its own.
    legacy.stop();
    wait_until(
        "the legacy TV is seen gone",
        Duration::from_secs(30),
        || {
            tv_states(&config)
                .iter()
                .any(|(d, s)| *d == old && s["tv"] != "connected")
        },
    );
    let (mut legacy, _) = sim(&legacy_addr, 1, &["--legacy"]);
    wait_until("the legacy TV is back", Duration::from_secs(40), || {
        records(&config, "tv.connected")
            .iter()
            .filter(|r| r["device"] == old.as_str())
            .count()
            >= 2
    });
    let gone = [
        records(&config, "tv.offline"),
        records(&config, "tv.refused"),
    ]
    .concat();
    assert!(
        gone.iter().any(|r| r["device"] == old.as_str()),
        "the outage is on record: {gone:?}"
    );

    daemon.stop();
    assert!(
        daemon
            .0
            .try_wait()
            .expect("wait")
            .is_some_and(|s| s.success())
    );
    for s in [&mut modern, &mut locked, &mut legacy] {
        s.stop();
    }
}

/// The key the agent offers is the one `sitelink adb pubkey` prints.
#[test]
fn adb_pubkey_prints_the_key_in_android_format_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: PathBuf = dir.path().join("sitelink.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"key-test\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let first = cli(&config, &["adb", "pubkey"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let line = text(&first.stdout);
    let (b64, comment) = line.trim_end().split_once(' ').expect("KEY COMMENT");
    assert_eq!(comment, "sitelink@key-test");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    // Android's RSAPublicKey: 64 words of modulus, len word first (§2.2).
    assert_eq!(blob.len(), 524);
    assert_eq!(u32::from_le_bytes(blob[..4].try_into().expect("4")), 64);
    let again = cli(&config, &["adb", "pubkey"]);
    assert_eq!(again.stdout, first.stdout, "the key is made once");
    let private = dir.path().join("data/adbkey");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&private)
        .expect("adbkey")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
