//! Real ADB peers against the TV simulator: Google's `adb` (Debian package
//! `adb`, 1:29.x) and PyPI `adb-shell` 0.4.4. If these accept the simulator,
//! it speaks ADB as a TV does, and the agent's tests against it mean
//! something.
//!
//! Each `adb` test has its own server: its own `HOME` (so its own key),
//! `ANDROID_ADB_SERVER_PORT` on a free port, and mDNS, USB and emulator
//! scanning off; the TVs listen on ephemeral ports, outside the 5555–5585
//! range an adb server probes by itself. The server is killed at the end.
//! `scripts/test` installs both peers; a missing one fails its tests with
//! the command that installs it.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sitelink::sim::tv::{self, Auth, SimTvs, TvConfig, TvSimConfig};

/// The longest any one peer command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn tvs(tv: TvConfig) -> SimTvs {
    let mut cfg = TvSimConfig::new("127.0.0.1:0".parse().unwrap(), 1);
    cfg.tvs = vec![tv];
    let tvs = tv::spawn(cfg).expect("spawn the TV");
    let port = tvs.addrs()[0].port();
    // adb servers scan 5555-5585 for emulators and devices by themselves.
    assert!(!(5555..=5585).contains(&port), "TV on {port}");
    tvs
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command to its end, killing it after `COMMAND_TIMEOUT`. Output
/// pipes are read on threads and given up on shortly after the command
/// exits, in case a daemon it started keeps them open.
fn run_bounded(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took over {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let grace = Duration::from_secs(2);
    Output {
        status,
        stdout: out.recv_timeout(grace).unwrap_or_default(),
        stderr: err.recv_timeout(grace).unwrap_or_default(),
    }
}

/// A private adb server and the client commands that use it.
struct Adb {
    home: tempfile::TempDir,
    server_port: u16,
}

impl Adb {
    fn start() -> Adb {
        let found = Command::new("adb")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !found.is_ok_and(|s| s.success()) {
            panic!(
                "Google's adb is needed for this test: `apt-get install -y adb` \
                 (scripts/test installs it when missing)"
            );
        }
        let server_port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let adb = Adb {
            home: tempfile::tempdir().unwrap(),
            server_port,
        };
        // Started on its own with no pipes, so no later command's output
        // pipe is held open by the daemon.
        let started = adb
            .command(&["start-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(started.success(), "adb start-server");
        adb
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("adb");
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("ANDROID_ADB_SERVER_PORT", self.server_port.to_string())
            .env("ADB_MDNS", "0")
            .env("ADB_USB", "0")
            .env("ADB_EMU", "0")
            .env_remove("ANDROID_SERIAL")
            .env_remove("ADB_VENDOR_KEYS")
            .env_remove("ADB_SERVER_SOCKET");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args))
    }

    /// `adb -s SERIAL ARGS...`
    fn on(&self, serial: &str, args: &[&str]) -> Output {
        let mut all = vec!["-s", serial];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `adb connect`, then waits until `adb devices` lists the TV in `state`.
    fn connect(&self, addr: SocketAddr, state: &str) -> String {
        let serial = addr.to_string();
        // The first connection with a new key says "failed to authenticate"
        // even when the TV accepts the key: the list is what counts.
        let out = self.run(&["connect", &serial]);
        assert!(out.status.success(), "adb connect: {}", lossy(&out.stderr));
        let want = format!("{serial}\t{state}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let devices = lossy(&self.run(&["devices"]).stdout);
            if devices.lines().any(|l| l == want) {
                return serial;
            }
            assert!(
                Instant::now() < deadline,
                "adb devices never showed {want:?}:\n{devices}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Adb {
    fn drop(&mut self) {
        let mut kill = self.command(&["kill-server"]);
        // Bounded by run_bounded's timeout; a failure here leaves nothing
        // behind that outlives the temporary HOME for long.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_bounded(&mut kill)));
    }
}

/// Checks a PNG with Python's zlib (no code shared with the simulator):
/// signature, chunk CRCs, IHDR, IDAT inflating to the right size, IEND.
fn assert_png(png: &[u8]) {
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
w, h = ihdr[:2]
assert end and len(zlib.decompress(idat)) == h * (1 + 3 * w)
"#;
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 checks the PNG: `apt-get install -y python3` (scripts/test installs it)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), png).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a valid PNG: {}",
        lossy(&out.stderr)
    );
}

// --- Google's adb --------------------------------------------------------------

#[test]
fn google_adb_connects_runs_shell_exec_out_pull_and_push() {
    let tvs = tvs(TvConfig::default());
    let adb = Adb::start();
    let s = adb.connect(tvs.addrs()[0], "device");
    assert_eq!(
        tvs.state(0).trusted_keys,
        1,
        "adb's key was accepted on the TV"
    );

    // shell v2: the exit status comes through.
    let out = adb.on(&s, &["shell", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", lossy(&out.stderr));
    let out = adb.on(&s, &["shell", "echo", "hi"]);
    assert!(out.status.success());
    assert_eq!(lossy(&out.stdout), "hi\n");
    let out = adb.on(&s, &["shell", "echo out; echo err >&2; frob"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(lossy(&out.stdout), "out\n");
    assert_eq!(
        lossy(&out.stderr),
        "err\n/system/bin/sh: frob: inaccessible or not found\n"
    );
    let model = adb.on(&s, &["shell", "getprop", "ro.product.model"]);
    assert_eq!(lossy(&model.stdout), "SIM TV 55\n");

    // exec-out screencap -p > file: the PNG, byte for byte.
    let png = adb.on(&s, &["exec-out", "screencap", "-p"]);
    assert!(png.status.success(), "{}", lossy(&png.stderr));
    assert_eq!(png.stdout, tvs.screenshot(0));
    assert_png(&png.stdout);

    // pull (STA2, RECV, QUIT) gives the file's bytes.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("readme.txt");
    let out = adb.on(&s, &["pull", "/sdcard/Download/readme.txt", path(&dest)]);
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    let serial = lossy(&adb.on(&s, &["shell", "getprop", "ro.serialno"]).stdout);
    let readme = std::fs::read_to_string(&dest).unwrap();
    assert!(
        readme.starts_with("Sitelink SIM TV 55 (simulated by sitelink)\n"),
        "{readme}"
    );
    assert!(
        readme.contains(&format!("serial {}", serial.trim())),
        "{readme}"
    );
    let missing = adb.on(&s, &["pull", "/sdcard/nope.txt", path(&dest)]);
    assert!(!missing.status.success());
    // adb 29 prints this error on stdout.
    let said = lossy(&[missing.stdout, missing.stderr].concat());
    assert!(
        said.contains("failed to stat remote object '/sdcard/nope.txt': No such file or directory"),
        "{said}"
    );

    // push, into a directory that does not exist yet, and read it back.
    let local = dir.path().join("up.bin");
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&local, &blob).unwrap();
    let out = adb.on(&s, &["push", path(&local), "/sdcard/new/up.bin"]);
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    let back = adb.on(&s, &["exec-out", "cat", "/sdcard/new/up.bin"]);
    assert_eq!(back.stdout, blob);

    // Control through adb changes the TV.
    assert!(
        adb.on(&s, &["shell", "input", "keyevent", "26"])
            .status
            .success()
    );
    assert!(!tvs.state(0).awake);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn google_adb_sees_an_unaccepted_key_as_unauthorized() {
    let tvs = tvs(TvConfig {
        auth: Auth::Deny,
        ..TvConfig::default()
    });
    let adb = Adb::start();
    let s = adb.connect(tvs.addrs()[0], "unauthorized");
    let out = adb.on(&s, &["shell", "echo", "hi"]);
    assert!(!out.status.success());
    assert!(
        lossy(&out.stderr).contains("unauthorized"),
        "{}",
        lossy(&out.stderr)
    );
    assert_eq!(tvs.state(0).trusted_keys, 0);
}

#[test]
fn google_adb_with_a_legacy_tv() {
    let tvs = tvs(TvConfig {
        legacy: true,
        ..TvConfig::default()
    });
    let adb = Adb::start();
    let s = adb.connect(tvs.addrs()[0], "device");
    // No shell v2 on 6.0: `shell:` through a PTY, and no exit status.
    let out = adb.on(&s, &["shell", "echo", "hi"]);
    assert_eq!(lossy(&out.stdout), "hi\r\n");
    assert_eq!(adb.on(&s, &["shell", "exit 3"]).status.code(), Some(0));
    let png = adb.on(&s, &["exec-out", "screencap", "-p"]);
    assert_eq!(png.stdout, tvs.screenshot(0));
    assert_png(&png.stdout);
    // Without stat_v2 adb's pull uses the v1 STAT.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("r.txt");
    let out = adb.on(&s, &["pull", "/sdcard/Download/readme.txt", path(&dest)]);
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    assert!(
        std::fs::read_to_string(&dest)
            .unwrap()
            .contains("Android 6.0.1 (API 23)")
    );
}

// --- PyPI adb-shell ------------------------------------------------------------

/// The Python with adb-shell 0.4.4: `SITELINK_PYTHON` (scripts/test sets
/// it to its venv), else that venv's usual place.
fn adb_shell_python() -> PathBuf {
    let python = std::env::var_os("SITELINK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/sitelink-venv/bin/python"));
    let check = Command::new(&python)
        .args(["-c", "import adb_shell, rsa; print(adb_shell.__version__)"])
        .output();
    match check {
        Ok(out) if out.status.success() && lossy(&out.stdout).trim() == "0.4.4" => python,
        _ => panic!(
            "PyPI adb-shell 0.4.4 is needed at {} for this test: \
             `python3 -m venv /var/tmp/sitelink-venv && /var/tmp/sitelink-venv/bin/pip install adb-shell==0.4.4 rsa` \
             and SITELINK_PYTHON=/var/tmp/sitelink-venv/bin/python (scripts/test does both)",
            python.display()
        ),
    }
}

/// Connects twice (a new key, then its signature) and runs commands;
/// prints one line per result.
const ADB_SHELL_SCRIPT: &str = r#"
import sys
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
port, key = int(sys.argv[1]), sys.argv[2]
keygen(key)
signer = PythonRSASigner(open(key + ".pub").read(), open(key).read())
for attempt in ("first", "again"):
    dev = AdbDeviceTcp("127.0.0.1", port, default_transport_timeout_s=5)
    print(attempt, dev.connect(rsa_keys=[signer], auth_timeout_s=5))
    print("echo", repr(dev.shell("echo hi", timeout_s=10)))
    print("model", repr(dev.shell("getprop ro.product.model", timeout_s=10)))
    png = dev.exec_out("screencap -p", decode=False, timeout_s=10)
    print("png", len(png), png[:8].hex())
    dev.close()
"#;

fn adb_shell_session(tvs: &SimTvs) -> Vec<String> {
    let python = adb_shell_python();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("adbkey");
    let out = run_bounded(
        Command::new(python)
            .args(["-c", ADB_SHELL_SCRIPT])
            .arg(tvs.addrs()[0].port().to_string())
            .arg(&key),
    );
    assert!(
        out.status.success(),
        "adb-shell: {}\n{}",
        lossy(&out.stdout),
        lossy(&out.stderr)
    );
    lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn adb_shell_connects_and_runs_shell_and_exec_out() {
    let tvs = tvs(TvConfig::default());
    let lines = adb_shell_session(&tvs);
    let png = format!("png {} 89504e470d0a1a0a", tvs.screenshot(0).len());
    assert_eq!(
        lines,
        [
            "first True",
            "echo 'hi\\n'",
            "model 'SIM TV 55\\n'",
            &png,
            "again True",
            "echo 'hi\\n'",
            "model 'SIM TV 55\\n'",
            &png,
        ]
    );
    let state = tvs.state(0);
    assert_eq!((state.trusted_keys, state.connections), (1, 2));
}

#[test]
fn adb_shell_with_a_legacy_tv_and_its_checksums() {
    let tvs = tvs(TvConfig {
        legacy: true,
        ..TvConfig::default()
    });
    let lines = adb_shell_session(&tvs);
    let png = format!("png {} 89504e470d0a1a0a", tvs.screenshot(0).len());
    // adb-shell checks every message's sum; a PTY shell ends lines in \r\n.
    assert_eq!(
        lines,
        [
            "first True",
            "echo 'hi\\r\\n'",
            "model 'SIM TV 55\\r\\n'",
            &png,
            "again True",
            "echo 'hi\\r\\n'",
            "model 'SIM TV 55\\r\\n'",
            &png,
        ]
    );
}
