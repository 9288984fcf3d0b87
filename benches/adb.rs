//! ADB benchmark: operations in flight at once across simulated TVs, through
//! the whole agent, beside PyPI `adb-shell` (what Home Assistant's Android TV
//! integration uses) on the same TVs; and the memory each connected TV costs.
//!
//! A plain `main`: `cargo bench --bench adb` prints one table.
//!
//! - The TVs: `sitelink sim tv --count N` in a child process (its memory and
//!   CPU are not the agent's), modern adbd, no faults.
//! - The agent: `Daemon::start` in this process on a 2-worker tokio runtime
//!   (as the binary runs it), one `[[tv]]` per simulated TV. A round sends
//!   `BENCH_ADB_OPS_PER_TV` commands to every TV at the same instant through
//!   the dispatcher (`key home`, `volume 7`, `power on`, the same path as
//!   `sitelink command` and upstream commands: command table, TV task, ADB
//!   stream, result stored); each latency runs from the round's start to
//!   that command's result.
//! - `adb-shell` 0.4.4: one `AdbDeviceTcp` per TV, the same three shell
//!   commands per TV started at the same instant from one thread each; a
//!   device object serves one command at a time (the library is not safe for
//!   concurrent use on one connection), so a TV's commands queue on its lock,
//!   as in Home Assistant.
//! - Memory per TV: the agent's RSS with 1 TV connected, then after a reload
//!   to all N connected and one telemetry round each; the difference over N-1.
//!
//! Knobs: `BENCH_ADB_TVS` [50], `BENCH_ADB_OPS_PER_TV` [3], `BENCH_ADB_ROUNDS`
//! [5], `BENCH_DIR`; `SITELINK_PYTHON` [/var/tmp/sitelink-venv/bin/python],
//! a Python with `adb-shell` (scripts/bench installs it).

use serde_json::Value;
use sitelink::config::Config;
use sitelink::daemon::Daemon;
use sitelink::daemon::dispatch::CommandRequest;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Each benchmark uses only part of what they share.
#[allow(dead_code)]
mod common;
use common::{Lat, bench_root, knob, print_table, row, rss_kb};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");
/// The p99 goal of the issue on this machine (the system being replaced took up to 1.5 s).
const GOAL_P99_MS: f64 = 300.0;
const OPS: [(&str, &str, &str); 3] = [
    ("key", "home", "input keyevent 3"),
    (
        "volume",
        "7",
        "cmd media_session volume --show --stream 3 --set 7",
    ),
    ("power", "on", "input keyevent 224"),
];

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(count: usize) -> (Sim, Vec<u16>) {
    let mut child = Command::new(BIN)
        .args(["sim", "tv", "--listen", "127.0.0.1:0", "--count"])
        .arg(count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sitelink sim tv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let ports = sitelink::sim::tv::parse_ready_line(&line)
        .unwrap_or_else(|| panic!("ready line {line:?}"))
        .iter()
        .map(std::net::SocketAddr::port)
        .collect();
    (Sim(child), ports)
}

fn config(dir: &Path, ports: &[u16]) -> Config {
    let mut text = format!(
        "[agent]\nid = \"bench\"\ndata_dir = \"{}\"\nlog_level = \"warn\"\n",
        dir.join("data").display()
    );
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[tv]]\nname = \"tv-{i}\"\nhost = \"127.0.0.1\"\nport = {p}\ntelemetry_s = 3600\n"
        ));
    }
    sitelink::config::parse(&dir.join("sitelink.toml"), &text).expect("config")
}

/// Waits until `n` TVs say `connected` and have had their first sample.
async fn wait_connected(daemon: &Daemon, n: usize) {
    let reader = daemon.reader().expect("reader");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = reader
            .devices()
            .expect("devices")
            .iter()
            .filter_map(|d| d.state.as_ref())
            .filter(|s| s["tv"] == "connected" && s["last"].is_object())
            .count();
        if ready >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{ready} of {n} TVs connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn agent_rounds(daemon: &Daemon, tvs: usize, per_tv: usize, rounds: usize) -> (Lat, usize) {
    let mut lat = Lat::default();
    let mut failed = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for tv in 0..tvs {
            for (action, arg, _) in OPS.iter().cycle().take(per_tv) {
                let d = daemon.dispatcher();
                let req = CommandRequest {
                    device: format!("tv-{tv}"),
                    action: action.to_string(),
                    args: vec![arg.to_string()],
                    source: "bench".into(),
                };
                tasks.push(tokio::spawn(async move {
                    let reply = d.run(req).await;
                    (start.elapsed(), reply)
                }));
            }
        }
        for t in tasks {
            let (took, reply) = t.await.expect("task");
            if reply.status != sitelink::store::CommandStatus::Done {
                failed += 1;
            }
            lat.0.push(took.as_micros() as u64);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lat.sort();
    (lat, failed)
}

const ADB_SHELL: &str = r#"
import json, os, sys, threading, time
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
key, ports, cmds, rounds = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
if not os.path.exists(key):
    keygen(key)
signer = PythonRSASigner(open(key + ".pub").read(), open(key).read())
devs = []
for p in ports:
    d = AdbDeviceTcp("127.0.0.1", p, default_transport_timeout_s=30)
    d.connect(rsa_keys=[signer], auth_timeout_s=30)
    devs.append((d, threading.Lock()))
lat, failed = [], 0
for _ in range(rounds):
    start = time.monotonic()
    out = []
    def run(dev, lock, cmd):
        global failed
        with lock:
            try:
                dev.shell(cmd, timeout_s=30)
            except Exception:
                failed += 1
        out.append(time.monotonic() - start)
    threads = [threading.Thread(target=run, args=(d, l, c)) for d, l in devs for c in cmds]
    for t in threads: t.start()
    for t in threads: t.join()
    lat.extend(out)
    time.sleep(0.2)
print(json.dumps({"lat_us": sorted(int(x * 1e6) for x in lat), "failed": failed}))
"#;

fn adb_shell(
    dir: &Path,
    ports: &[u16],
    per_tv: usize,
    rounds: usize,
) -> Result<(Lat, u64), String> {
    let python = std::env::var("SITELINK_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/sitelink-venv/bin/python".to_string());
    let cmds: Vec<&str> = OPS.iter().cycle().take(per_tv).map(|o| o.2).collect();
    let out = Command::new(&python)
        .arg("-c")
        .arg(ADB_SHELL)
        .arg(dir.join("adbshell_key"))
        .arg(serde_json::to_string(ports).map_err(|e| e.to_string())?)
        .arg(serde_json::to_string(&cmds).map_err(|e| e.to_string())?)
        .arg(rounds.to_string())
        .output()
        .map_err(|e| format!("{python}: {e} (scripts/bench installs adb-shell)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "adb-shell run failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let lat = v["lat_us"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Ok((Lat(lat), v["failed"].as_u64().unwrap_or(0)))
}

fn main() {
    let tvs = knob("BENCH_ADB_TVS", 50).max(2);
    let per_tv = knob("BENCH_ADB_OPS_PER_TV", 3).max(1);
    let rounds = knob("BENCH_ADB_ROUNDS", 5).max(1);
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench dir");
    let tmp = tempfile::tempdir_in(&root).expect("temp dir");
    let (sim_proc, ports) = sim(tvs);
    println!("sitelink ADB benchmark");
    println!(
        "  TVs:   {tvs} simulated (sitelink sim tv, child process), {per_tv} operations per TV per round, {rounds} rounds"
    );
    println!("  ops:   key home, volume 7, power on (shell commands on the TV)");
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pid = std::process::id();
    let (lat, failed, per_tv_kb) = rt.block_on(async {
        let mut daemon = Daemon::start(config(tmp.path(), &ports[..1]))
            .await
            .expect("daemon");
        wait_connected(&daemon, 1).await;
        let one = rss_kb(pid).unwrap_or(0);
        daemon.reload(config(tmp.path(), &ports)).await;
        wait_connected(&daemon, tvs).await;
        let all = rss_kb(pid).unwrap_or(0);
        let per_tv_kb = all.saturating_sub(one) as f64 / (tvs - 1) as f64;
        let (lat, failed) = agent_rounds(&daemon, tvs, per_tv, rounds).await;
        daemon.shutdown().await;
        (lat, failed, per_tv_kb)
    });
    let ops = tvs * per_tv;
    let mut rows = vec![row(
        "1",
        format!("agent: {ops} operations in flight across {tvs} TVs, p50 / p99 / max"),
        format!("{:.1} / {:.1} / {:.1}", lat.q(0.5), lat.q(0.99), lat.max()),
        "ms",
        format!(
            "goal p99 < {GOAL_P99_MS} ms: {}; {} operations, {failed} failed",
            if lat.q(0.99) < GOAL_P99_MS {
                "ok"
            } else {
                "MISSED"
            },
            lat.0.len()
        ),
    )];
    rows.push(row(
        "2",
        "agent: memory per connected TV".to_string(),
        format!("{per_tv_kb:.0}"),
        "KiB",
        format!("RSS with 1 TV, then {tvs} connected with one telemetry sample each"),
    ));
    match adb_shell(tmp.path(), &ports, per_tv, rounds) {
        Ok((py, py_failed)) => {
            rows.push(row(
                "3",
                format!("adb-shell 0.4.4: the same {ops} operations, p50 / p99 / max"),
                format!("{:.1} / {:.1} / {:.1}", py.q(0.5), py.q(0.99), py.max()),
                "ms",
                format!(
                    "{} operations, {py_failed} failed; one command at a time per connection",
                    py.0.len()
                ),
            ));
            rows.push(row(
                "",
                "  adb-shell p99 / agent p99".to_string(),
                format!("{:.1}", py.q(0.99) / lat.q(0.99)),
                "x",
                "above 1: the agent is faster".into(),
            ));
        }
        Err(why) => rows.push(row(
            "3",
            "adb-shell 0.4.4".to_string(),
            "-".into(),
            "",
            format!("not measured: {why}"),
        )),
    }
    drop(sim_proc);
    print_table(&rows, "goal / note");
}
