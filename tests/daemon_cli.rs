//! The daemon as a technician meets it: the real binary, a config file in a
//! temp dir, signals, the control socket, the notify socket.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");

fn config(dir: &Path, generators: &[(&str, &str, u32)]) -> String {
    let mut s = format!(
        "[agent]\nid = \"test-site\"\ndata_dir = \"{}\"\nlog_level = \"info\"\n\n[store]\ncommit_ms = 5\n",
        dir.join("data").display()
    );
    for (name, class, rate) in generators {
        s.push_str(&format!(
            "\n[[generator]]\nname = \"{name}\"\nclass = \"{class}\"\nrate = {rate}\nsize = 100\n"
        ));
    }
    s
}

fn sitelink(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run sitelink")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Daemon {
    child: Child,
    config: PathBuf,
    log: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(config: &Path, env: &[(&str, String)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(config);
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("JOURNAL_STREAM");
        let mut child = cmd.spawn().expect("spawn daemon");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let d = Daemon {
            child,
            config: config.to_path_buf(),
            log,
        };
        d.wait_for_log("sitelink started", Duration::from_secs(20));
        d
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} within {within:?}");
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", self.config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        sitelink(&all)
    }

    /// Writes a new config and sends SIGHUP; waits until it is applied.
    fn reload(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
        self.signal(libc::SIGHUP);
        self.wait_for_log("configuration reloaded", Duration::from_secs(10));
    }

    /// `command DEVICE ping`, which must succeed; returns its stdout.
    fn ping(&self, device: &str) -> String {
        let out = self.cli(&["command", device, "ping"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM and wait; returns the exit status and how long it took.
    fn stop(mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let deadline = t + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, t.elapsed());
            }
            assert!(Instant::now() < deadline, "daemon did not stop within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn check_config_reports_ok_and_errors_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config(dir.path(), &[("g1", "event", 10)])).unwrap();
    let out = sitelink(&["check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": ok: "),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\ncommit_ms = \"fast\"\n").unwrap();
    let out = sitelink(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{}:2:", bad.display())), "{err}");

    let out = sitelink(&["check-config", "/nonexistent/sitelink.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/sitelink.toml"));

    let out = sitelink(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_shipped_default_config_checks() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sitelink.toml");
    let out = sitelink(&["check-config", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn daemon_runs_takes_commands_reloads_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sitelink.toml");
    std::fs::write(
        &cfg,
        config(dir.path(), &[("g1", "event", 200), ("g2", "metric", 100)]),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);

    // Commands: done (0), failed by the device (1), bad input (2).
    let out = d.cli(&["command", "g1", "ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("g1 ping: done"),
        "{}",
        text(&out.stdout)
    );
    let out = d.cli(&["command", "g1", "fail"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("failed"));
    let out = d.cli(&["command", "g1", "teleport"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ping, pause"),
        "{}",
        text(&out.stderr)
    );
    let out = d.cli(&["command", "nosuch", "ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("g1, g2"),
        "{}",
        text(&out.stderr)
    );

    std::thread::sleep(Duration::from_millis(500));
    let out = d.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(st["daemon"]["running"], true);
    assert_eq!(st["agent"], "test-site");
    let classes = st["store"]["classes"].as_array().unwrap();
    assert!(
        classes
            .iter()
            .any(|c| c["class"] == "event" && c["rows"].as_i64().unwrap() > 0)
    );
    let out = d.cli(&["status"]);
    assert!(
        text(&out.stdout).contains("daemon:    running"),
        "{}",
        text(&out.stdout)
    );

    let out = d.cli(&["records", "--device", "g1", "--limit", "5", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        for key in ["seq", "class", "device", "kind", "time", "payload"] {
            assert!(!l[key].is_null(), "{key} missing in {l}");
        }
        assert_eq!(l["device"], "g1");
        assert!(l["payload"]["n"].is_u64());
    }

    // Reload: add g3; then remove g2 and change g3's rate.
    let three = [
        ("g1", "event", 200),
        ("g2", "metric", 100),
        ("g3", "accounting", 50),
    ];
    d.reload(&config(dir.path(), &three));
    d.ping("g3");
    let two = [("g1", "event", 200), ("g3", "accounting", 70)];
    d.reload(&config(dir.path(), &two));
    let out = d.cli(&["command", "g2", "ping"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "g2 is gone: {}",
        text(&out.stdout)
    );
    assert!(d.ping("g3").contains("\"rate\":70.0"));

    // A broken config is refused with file:line:col; the old one keeps running.
    std::fs::write(&cfg, "[agent]\ndata_dir = \"relative/path\"\n").unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_for_log(&format!("{}:2:", cfg.display()), Duration::from_secs(10));
    assert!(line.contains("data_dir"), "{line}");
    d.wait_for_log("still running on the previous one", Duration::from_secs(5));
    // The CLI reads the same file to find the daemon, so it refuses too...
    let out = d.cli(&["command", "g3", "ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // ...and once the file is mended, the daemon is still there, unchanged.
    std::fs::write(&cfg, config(dir.path(), &two)).unwrap();
    assert!(d.ping("g3").contains("\"rate\":70.0"));

    let data = dir.path().join("data");
    let (status, took) = d.stop();
    assert!(status.success(), "exit {status:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(
        !data.join("control.sock").exists(),
        "socket removed at exit"
    );

    // After the stop: the counters of every generator are contiguous (nothing lost).
    let out = sitelink(&[
        "--config",
        cfg.to_str().unwrap(),
        "records",
        "--device",
        "g1",
        "--limit",
        "100000",
        "--json",
    ]);
    let ns: Vec<u64> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["payload"]["n"].as_u64())
        .collect();
    assert!(ns.len() > 50, "only {} records", ns.len());
    assert!(
        ns.windows(2).all(|w| w[1] == w[0] + 1),
        "counters not contiguous"
    );
    let out = sitelink(&["--config", cfg.to_str().unwrap(), "status"]);
    assert!(
        text(&out.stdout).contains("NOT RUNNING"),
        "{}",
        text(&out.stdout)
    );
}

/// A stand-in for systemd's notify socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// Messages received within `within`.
    fn collect(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                out.extend(text(&buf[..n]).lines().map(str::to_string));
            }
        }
        out
    }
}

#[test]
fn notify_ready_status_watchdog_and_a_stuck_task_stops_the_pings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sitelink.toml");
    std::fs::write(&cfg, config(dir.path(), &[("g1", "event", 20)])).unwrap();
    let notify = NotifySocket::new(dir.path());
    let d = Daemon::start(
        &cfg,
        &[
            ("NOTIFY_SOCKET", notify.path.display().to_string()),
            ("WATCHDOG_USEC", "800000".to_string()),
        ],
    );
    let msgs = notify.collect(Duration::from_millis(1500));
    assert!(msgs.iter().any(|m| m == "READY=1"), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("devices up")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2,
        "{msgs:?}"
    );

    // A device task that hangs: the pings stop while it hangs.
    let mut hang = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "command",
            "g1",
            "hang",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.wait_for_log("generator hangs", Duration::from_secs(5));
    let _ = notify.collect(Duration::from_millis(600));
    let during = notify.collect(Duration::from_millis(1200));
    assert!(
        !during.iter().any(|m| m == "WATCHDOG=1"),
        "pinged while stuck: {during:?}"
    );
    d.wait_for_log("task is stuck", Duration::from_secs(5));
    let _ = hang.wait();
    let after = notify.collect(Duration::from_millis(1500));
    assert!(
        after.iter().any(|m| m == "WATCHDOG=1"),
        "pings did not resume: {after:?}"
    );

    let (status, _) = d.stop();
    assert!(status.success());
    let last = notify.collect(Duration::from_millis(300));
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}

#[test]
fn a_corrupt_database_is_quarantined_and_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("sitelink.db"),
        b"this is not a database, it is a text file that got here somehow".repeat(100),
    )
    .unwrap();
    let cfg = dir.path().join("sitelink.toml");
    std::fs::write(&cfg, config(dir.path(), &[("g1", "event", 50)])).unwrap();
    let d = Daemon::start(&cfg, &[]);
    let out = d.cli(&["command", "g1", "ping"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "collection goes on: {}",
        text(&out.stderr)
    );
    let out = d.cli(&["status"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("QUARANTINED: ") && s.contains("sitelink.db.corrupt-"),
        "{s}"
    );
    let out = d.cli(&["records", "--kind", "store.quarantined", "--json"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    let (status, _) = d.stop();
    assert!(status.success());
    let kept: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the broken file is kept, never deleted");
}

#[test]
fn a_command_for_a_machine_whose_port_is_missing_fails_at_once_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sitelink.toml");
    let port = dir.path().join("no-such-adapter");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = \"{}\"\n[[sas]]\nname = \"line-1\"\nport = \"{}\"\n[[sas.egm]]\naddress = 1\nname = \"egm-1\"\n",
            dir.path().join("data").display(),
            port.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    d.wait_for_log("SAS port lost", Duration::from_secs(10));
    let out = d.cli(&["command", "egm-1", "lock"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not sent to egm-1") && err.contains(&port.display().to_string()),
        "{err}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}
