//! An update offered through the hub: the agent downloads the binary from a
//! loopback HTTP server (which breaks the first transfer, so the second
//! resumes with a Range request), installs it, restarts into it and commits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");
const AGENT: &str = "site-ota";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn sitelink(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("run sitelink");
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    out
}

struct Proc {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        for var in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env_remove("JOURNAL_STREAM")
            .env_remove("SITELINK_OTA_VERSION")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let (tx, log) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        Proc { child, log }
    }

    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} within {within:?}");
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            assert!(Instant::now() < deadline, "no exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release key made for the test, and this test binary's build signed
/// with it as version 0.2.0: the trusted key's line and the manifest.
fn signed_release(dir: &Path) -> (String, PathBuf) {
    let keys = dir.join("keys");
    let public = text(&sitelink(&["release", "keygen", "--out", p(&keys)]).stdout)
        .lines()
        .last()
        .expect("key")
        .to_string();
    let manifest = dir.join("release.json");
    sitelink(&[
        "release",
        "sign",
        "--key",
        p(&keys.join("release.key")),
        "--binary",
        BIN,
        "--version",
        "0.2.0",
        "--arch",
        sitelink::ota::release::running_arch(),
        "--out",
        p(&manifest),
    ]);
    (public, manifest)
}

/// Serves `body` at any path with Range support (`manifest` at paths ending
/// in .json); the first transfer of `body` stops after `cut` bytes. Returns
/// the port and the Range headers seen for `body`.
fn serve(
    body: Vec<u8>,
    cut: usize,
    manifest: Option<Vec<u8>>,
) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut range = None;
            for _ in 0..100 {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            if let Some(m) = manifest.as_ref().filter(|_| request.contains(".json ")) {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    m.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(m);
                continue;
            }
            seen.lock()
                .expect("lock")
                .push(range.map(|r| format!("bytes={r}-")));
            let start = range.unwrap_or(0).min(body.len());
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len() - start,
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            let end = if n == 0 { cut } else { body.len() };
            n += 1;
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[start..end.max(start)]);
            let _ = stream.flush();
            // Dropping the stream mid-body is the broken transfer.
            let mut rest = Vec::new();
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = stream.read_to_end(&mut rest);
        }
    });
    (port, ranges)
}

#[test]
fn an_update_through_the_hub_resumes_its_download_installs_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    sitelink(&["pki", "init", "--dir", p(&pki)]);
    sitelink(&["pki", "issue-agent", "--dir", p(&pki), "--id", AGENT]);
    sitelink(&["pki", "issue-hub", "--dir", p(&pki), "--name", "127.0.0.1"]);
    let (public, manifest) = signed_release(dir.path());
    let hub_data = dir.path().join("hub");
    let mut hub_cmd = Command::new(BIN);
    hub_cmd.args([
        "hub",
        "--listen",
        "127.0.0.1:0",
        "--pki",
        p(&pki),
        "--data",
        p(&hub_data),
    ]);
    let hub = Proc::spawn(hub_cmd);
    let line = hub.wait_for("sitelink hub listening on ", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().expect("address").to_string();

    let package: PathBuf = dir.path().join("usr-bin-sitelink");
    std::fs::copy(BIN, &package).expect("copy package");
    let config = dir.path().join("sitelink.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{AGENT}\"\ndata_dir = \"{}\"\n\n[upstream]\nurl = \"wss://{addr}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nbackoff_min_ms = 20\nbackoff_max_s = 1\nping_s = 1\ntimeout_s = 5\n\n[[generator]]\nname = \"g1\"\nclass = \"event\"\nrate = 5\n\n[update]\ntrusted_keys = [\"{public}\"]\nmax_mb = 1024\nhealth_s = 10\n",
            dir.path().join("agent").display(),
            pki.join("ca.pem").display(),
            pki.join(format!("agent-{AGENT}.pem")).display(),
            pki.join(format!("agent-{AGENT}.key")).display(),
        ),
    )
    .expect("config");
    let start_agent = || {
        let mut cmd = Command::new(&package);
        cmd.args(["run", "--config", p(&config)]);
        Proc::spawn(cmd)
    };
    let mut agent = start_agent();
    agent.wait_for("uplink connected", Duration::from_secs(20));

    let body = std::fs::read(BIN).expect("read binary");
    let size = body.len();
    let (port, ranges) = serve(body, size / 3, None);
    let url = format!("http://127.0.0.1:{port}/sitelink");
    let offer = || {
        Command::new(BIN)
            .args([
                "hub",
                "offer-update",
                "--data",
                p(&hub_data),
                AGENT,
                p(&manifest),
                &url,
            ])
            .output()
            .expect("offer-update")
    };
    // A tampered manifest is refused before any download.
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
    tampered["size"] = (size as u64 + 1).into();
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, tampered.to_string()).expect("write");
    let out = Command::new(BIN)
        .args([
            "hub",
            "offer-update",
            "--data",
            p(&hub_data),
            AGENT,
            p(&bad),
            &url,
        ])
        .output()
        .expect("offer-update");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad signature"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        ranges.lock().expect("lock").is_empty(),
        "fetched a refused release"
    );

    // The first transfer breaks: failed, the part stays for the resume.
    let out = offer();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("resumes at the next try"),
        "{}",
        text(&out.stderr)
    );
    let out = offer();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("installed"),
        "{}",
        text(&out.stdout)
    );
    let seen = ranges.lock().expect("lock").clone();
    assert_eq!(seen, vec![None, Some(format!("bytes={}-", size / 3))]);
    // The agent stops by itself so systemd starts the new version.
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), Some(0));
    drop(agent);

    let agent = start_agent();
    agent.wait_for("running an update in trial", Duration::from_secs(20));
    let exe = std::fs::read_link(format!("/proc/{}/exe", agent.child.id())).expect("exe");
    assert_eq!(exe, dir.path().join("agent/ota/versions/0.2.0/sitelink"));
    agent.wait_for("update committed", Duration::from_secs(40));
    // The outcomes reach the hub as the agent's event records.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(BIN)
            .args([
                "hub",
                "records",
                "--data",
                p(&hub_data),
                "--device",
                "update",
                "--limit",
                "0",
            ])
            .output()
            .expect("hub records");
        let got = text(&out.stdout);
        if [
            "update.downloaded",
            "update.verified",
            "update.installed",
            "update.committed",
        ]
        .iter()
        .all(|k| got.contains(k))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the hub has: {got}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(hub);
}

/// `[update] url`: the agent polls the manifest at start, fetches the
/// binary beside it, restarts into it; after a rollback it does not take
/// the same version again.
#[test]
fn the_release_url_is_polled_and_a_newer_version_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (public, manifest) = signed_release(dir.path());
    let body = std::fs::read(BIN).expect("read binary");
    let size = body.len();
    let (port, ranges) = serve(
        body,
        size,
        Some(std::fs::read(&manifest).expect("manifest")),
    );
    let package: PathBuf = dir.path().join("usr-bin-sitelink");
    std::fs::copy(BIN, &package).expect("copy package");
    let config = dir.path().join("sitelink.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{AGENT}\"\ndata_dir = \"{}\"\n\n[[generator]]\nname = \"g1\"\nclass = \"event\"\nrate = 5\n\n[update]\ntrusted_keys = [\"{public}\"]\nmax_mb = 1024\nhealth_s = 10\nurl = \"http://127.0.0.1:{port}/sitelink-amd64.json\"\ncheck_s = 3600\n",
            dir.path().join("agent").display(),
        ),
    )
    .expect("config");
    let start_agent = || {
        let mut cmd = Command::new(&package);
        cmd.args(["run", "--config", p(&config)]);
        Proc::spawn(cmd)
    };
    let mut agent = start_agent();
    agent.wait_for(
        "update installed: restarting into it",
        Duration::from_secs(30),
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(ranges.lock().expect("lock").len(), 1);
    drop(agent);
    let agent = start_agent();
    agent.wait_for("running an update in trial", Duration::from_secs(20));
    agent.wait_for("update committed", Duration::from_secs(40));
    drop(agent);
    // Committed 0.2.0 is what the URL offers: nothing more is fetched.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("agent/ota/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["current"]["version"], "0.2.0");
    assert_eq!(state["current"]["trial"], false);
    let agent = start_agent();
    agent.wait_for("sitelink started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    drop(agent);
    assert_eq!(
        ranges.lock().expect("lock").len(),
        1,
        "fetched the binary again"
    );
    // Had 0.2.0 been rolled back here, the poll would not take it again.
    let mut state = state;
    state["current"] = serde_json::Value::Null;
    state["rolled_back"] = serde_json::json!(["0.2.0"]);
    std::fs::write(dir.path().join("agent/ota/state.json"), state.to_string()).expect("state");
    let agent = start_agent();
    agent.wait_for("rolled back here before", Duration::from_secs(20));
    drop(agent);
    assert_eq!(
        ranges.lock().expect("lock").len(),
        1,
        "fetched a rolled-back version"
    );
}

/// SIGKILL of the agent in the middle of a download from the release URL,
/// at seeded random points: each time the part on disk is resumed with a
/// Range request at the next start, and nothing is installed before the
/// download is whole.
#[test]
fn a_download_killed_at_random_points_resumes_after_the_restart() {
    // xorshift64 from a fixed seed: the same points every run.
    let mut x: u64 = 0x05EE_D0F0_DA7A;
    for _ in 0..3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Between 5 % and 95 % of the file.
        let fraction = 0.05 + 0.9 * (x % 10_000) as f64 / 10_000.0;
        kill_download_at(fraction);
    }
}

fn kill_download_at(fraction: f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (public, manifest) = signed_release(dir.path());
    let body = Arc::new(std::fs::read(BIN).expect("read binary"));
    let manifest_bytes = Arc::new(std::fs::read(&manifest).expect("manifest"));
    let cut = ((body.len() as f64 * fraction) as usize).clamp(1, body.len() - 1);
    // One thread per connection: the first transfer stalls after `cut`
    // bytes (the agent is killed then), the others are served whole.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ranges: Arc<Mutex<Vec<Option<usize>>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let (body, manifest_bytes, seen) = (body.clone(), manifest_bytes.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut range = None;
                for _ in 0..100 {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                if request.contains(".json ") {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        manifest_bytes.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&manifest_bytes);
                    return;
                }
                let first = {
                    let mut s = seen.lock().expect("lock");
                    s.push(range);
                    s.len() == 1
                };
                let start = range.unwrap_or(0).min(body.len());
                let head = match range {
                    Some(_) => format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        body.len() - start,
                        body.len() - 1,
                        body.len()
                    ),
                    None => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    ),
                };
                let _ = stream.write_all(head.as_bytes());
                if first {
                    let _ = stream.write_all(&body[..cut]);
                    let _ = stream.flush();
                    std::thread::sleep(Duration::from_secs(60));
                } else {
                    let _ = stream.write_all(&body[start..]);
                }
            });
        }
    });
    let package: PathBuf = dir.path().join("usr-bin-sitelink");
    std::fs::copy(BIN, &package).expect("copy package");
    let config = dir.path().join("sitelink.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{AGENT}\"\ndata_dir = \"{}\"\n\n[[generator]]\nname = \"g1\"\nclass = \"event\"\nrate = 5\n\n[update]\ntrusted_keys = [\"{public}\"]\nmax_mb = 1024\nurl = \"http://127.0.0.1:{port}/sitelink-amd64.json\"\n",
            dir.path().join("agent").display(),
        ),
    )
    .expect("config");
    let start_agent = || {
        let mut cmd = Command::new(&package);
        cmd.args(["run", "--config", p(&config)]);
        Proc::spawn(cmd)
    };
    let mut agent = start_agent();
    let downloads = dir.path().join("agent/ota/downloads");
    let part_len = || {
        std::fs::read_dir(&downloads)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .max()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while part_len() < cut as u64 {
        assert!(
            Instant::now() < deadline,
            "the download did not get to {cut} bytes: {}",
            part_len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGKILL) };
    let _ = agent.wait_exit(Duration::from_secs(10));
    drop(agent);
    assert!(
        !dir.path().join("agent/ota/state.json").exists(),
        "installed before the download ended"
    );
    let mut agent = start_agent();
    agent.wait_for(
        "update installed: restarting into it",
        Duration::from_secs(30),
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(ranges.lock().expect("lock").clone(), vec![None, Some(cut)]);
    assert_eq!(part_len(), 0, "the part was not removed after the install");
}
