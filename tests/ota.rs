//! Over-the-air update with real files: a copy of the real binary stands for
//! the installed package, the real binary (or a shell script) is the new
//! version, `sitelink run` is started the way systemd starts it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A site: the "package" binary, a config, a release key.
struct Site {
    dir: tempfile::TempDir,
    package: PathBuf,
    config: PathBuf,
    key: PathBuf,
    public: String,
}

impl Site {
    fn new(extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let package = dir.path().join("usr-bin-sitelink");
        std::fs::copy(BIN, &package).expect("copy the package binary");
        let keys = dir.path().join("keys");
        let out = Command::new(BIN)
            .args(["release", "keygen", "--out"])
            .arg(&keys)
            .output()
            .expect("keygen");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let public = text(&out.stdout)
            .lines()
            .last()
            .expect("public key line")
            .to_string();
        assert!(public.starts_with("ed25519:"), "{public}");
        let site = Site {
            config: dir.path().join("sitelink.toml"),
            key: keys.join("release.key"),
            dir,
            package,
            public,
        };
        site.write_config(extra);
        site
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            "[agent]\nid = \"ota-site\"\ndata_dir = \"{}\"\n\n[[generator]]\nname = \"g1\"\nclass = \"event\"\nrate = 5\n\n[update]\ntrusted_keys = [\"{}\"]\nmax_mb = 1024\nhealth_s = 10\nmax_attempts = 2\n{extra}",
            self.data().display(),
            self.public
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Runs the package binary with `--config`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.package)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .output()
            .expect("run sitelink")
    }

    /// Signs `binary` as VERSION for this machine; returns the manifest path.
    fn sign(&self, binary: &Path, version: &str, arch: &str) -> PathBuf {
        let manifest = self.dir.path().join(format!("release-{version}.json"));
        let out = Command::new(BIN)
            .args(["release", "sign", "--key"])
            .arg(&self.key)
            .arg("--binary")
            .arg(binary)
            .args(["--version", version, "--arch", arch, "--out"])
            .arg(&manifest)
            .output()
            .expect("sign");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        manifest
    }

    fn update(&self, binary: &Path, manifest: &Path) -> Output {
        self.cli(&[
            "update",
            "--file",
            binary.to_str().expect("utf-8"),
            "--manifest",
            manifest.to_str().expect("utf-8"),
        ])
    }

    fn state(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.data().join("ota/state.json")).expect("state.json");
        serde_json::from_slice(&bytes).expect("state is JSON")
    }

    /// A shell script as a release (a version that misbehaves).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// `sitelink run` as systemd starts it.
    fn start(&self) -> Running {
        let mut child = Command::new(&self.package)
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("JOURNAL_STREAM")
            .env_remove("SITELINK_OTA_VERSION")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, log }
    }

    fn records(&self, kind: &str) -> String {
        let out = self.cli(&["records", "--device", "update", "--kind", kind, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Nothing under ota/ but the lock, the note of the refusal and empty
    /// directories.
    fn assert_nothing_installed(&self) {
        let ota = self.data().join("ota");
        assert!(
            ota.join("refused.json").exists(),
            "the refusal is not noted"
        );
        assert!(!ota.join("state.json").exists(), "state.json was written");
        assert!(!ota.join("current").exists());
        let versions = std::fs::read_dir(ota.join("versions"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(versions, 0, "a version directory was left");
    }
}

struct Running {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Running {
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

    fn exe(&self) -> PathBuf {
        std::fs::read_link(format!("/proc/{}/exe", self.child.id())).expect("/proc/PID/exe")
    }

    /// Waits for the exit (bounded); its code.
    fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(15))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn arch() -> &'static str {
    sitelink::ota::release::running_arch()
}

#[test]
fn refusals_name_the_file_and_change_nothing() {
    let site = Site::new("");
    let bin = Path::new(BIN);
    let good = site.sign(bin, "0.2.0", arch());
    let refused = |binary: &Path, manifest: &Path, needle: &str| {
        let out = site.update(binary, manifest);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "wanted {needle:?} in: {err}");
        site.assert_nothing_installed();
        err
    };
    // Bad signature: the manifest altered after signing.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&good).expect("read")).expect("json");
    let altered = site.dir.path().join("altered.json");
    let mut v = m.clone();
    v["version"] = "0.3.0".into();
    std::fs::write(&altered, v.to_string()).expect("write");
    let err = refused(bin, &altered, "bad signature");
    assert!(err.contains("altered.json"), "{err}");
    // Wrong hash: another file of the same size.
    let other = site.dir.path().join("other");
    let mut bytes = std::fs::read(BIN).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&other, &bytes).expect("write");
    let err = refused(&other, &good, "SHA-256");
    assert!(err.contains("other"), "{err}");
    // Truncated.
    std::fs::write(&other, &bytes[..bytes.len() / 2]).expect("write");
    refused(&other, &good, "truncated");
    // Wrong arch.
    let foreign = if arch() == "arm64" { "armhf" } else { "arm64" };
    let wrong_arch = site.sign(bin, "0.2.1", foreign);
    refused(bin, &wrong_arch, "the release is for");
    // Unknown key: a second key not in trusted_keys.
    let other_keys = site.dir.path().join("other-keys");
    let out = Command::new(BIN)
        .args(["release", "keygen", "--out"])
        .arg(&other_keys)
        .output()
        .expect("keygen");
    assert_eq!(out.status.code(), Some(0));
    let stranger = site.dir.path().join("stranger.json");
    let out = Command::new(BIN)
        .args(["release", "sign", "--key"])
        .arg(other_keys.join("release.key"))
        .arg("--binary")
        .arg(bin)
        .args(["--version", "0.2.0", "--arch", arch(), "--out"])
        .arg(&stranger)
        .output()
        .expect("sign");
    assert_eq!(out.status.code(), Some(0));
    refused(bin, &stranger, "not in [update] trusted_keys");
    // Downgrade (and the same version) against the package's 0.1.0.
    let old = site.sign(bin, "0.0.9", arch());
    refused(bin, &old, "allow_downgrade");
    let same = site.sign(bin, env!("CARGO_PKG_VERSION"), arch());
    refused(bin, &same, "not newer");
    // Oversize: a limit below the binary's size.
    let text_cfg = std::fs::read_to_string(&site.config).expect("read");
    std::fs::write(
        &site.config,
        text_cfg.replace("max_mb = 1024\n", "max_mb = 1\n"),
    )
    .expect("write");
    refused(bin, &good, "max_bytes");
    // Every refusal is an `update.refused` event once the daemon runs, so
    // `status` and the journal show it.
    let running = site.start();
    running.wait_for_log("update.refused", Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut refusals = String::new();
    while std::time::Instant::now() < deadline {
        refusals = site.records("update.refused");
        if refusals.lines().count() >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(refusals.lines().count(), 8, "one per refusal: {refusals}");
    assert!(refusals.contains("bad signature"), "{refusals}");
    let status = text(&site.cli(&["status"]).stdout);
    assert!(status.contains("last: update.refused"), "{status}");
    running.stop();
    // The private key file is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&site.key)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_update_runs_through_the_launcher_and_commits_after_a_healthy_window() {
    let site = Site::new("");
    let manifest = site.sign(Path::new(BIN), "0.2.0", arch());
    let out = site.update(Path::new(BIN), &manifest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let state = site.state();
    assert_eq!(state["current"]["version"], "0.2.0");
    assert_eq!(state["current"]["trial"], true);
    let installed = site.data().join("ota/versions/0.2.0/sitelink");
    assert_eq!(
        std::fs::read_link(site.data().join("ota/current")).expect("current link"),
        Path::new("versions/0.2.0")
    );
    let daemon = site.start();
    daemon.wait_for_log("running an update in trial", Duration::from_secs(20));
    // execv: the same process now runs the installed binary.
    assert_eq!(daemon.exe(), installed);
    assert_eq!(site.state()["current"]["attempts"], 1);
    daemon.wait_for_log("update committed", Duration::from_secs(30));
    assert_eq!(daemon.stop(), Some(0));
    let state = site.state();
    assert_eq!(state["current"]["trial"], false);
    let status = text(&site.cli(&["status"]).stdout);
    assert!(status.contains("update:    0.2.0 (committed)"), "{status}");
    assert!(site.records("update.installed").contains("0.2.0"));
    assert!(site.records("update.committed").contains("0.2.0"));
    // Committed: the next start runs it without counting an attempt.
    let daemon = site.start();
    daemon.wait_for_log("sitelink started", Duration::from_secs(20));
    assert_eq!(daemon.exe(), installed);
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(site.state()["current"]["attempts"], 1);
}

/// systemd's Restart=always for a version that dies: start again until the
/// launcher rolls back; returns the last run (the package's daemon).
fn restart_until_rolled_back(site: &Site, kill_after: Option<Duration>) -> Running {
    // max_attempts = 2: two failed starts, the third rolls back.
    for attempt in 1..=2 {
        let mut run = site.start();
        if let Some(after) = kill_after {
            std::thread::sleep(after);
            // The watchdog's SIGABRT/SIGKILL for a version that never pings.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(run.child.id() as i32, libc::SIGKILL) };
        }
        let code = run.wait(Duration::from_secs(20));
        assert_ne!(code, Some(0), "attempt {attempt} should have failed");
        assert_eq!(site.state()["current"]["attempts"], attempt);
    }
    site.start()
}

#[test]
fn an_update_that_exits_at_start_is_rolled_back_to_the_package() {
    let site = Site::new("");
    let bad = site.script("exits", "exit 3");
    let manifest = site.sign(&bad, "0.3.0", arch());
    let out = site.update(&bad, &manifest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let daemon = restart_until_rolled_back(&site, None);
    daemon.wait_for_log("sitelink started", Duration::from_secs(20));
    assert_eq!(daemon.exe(), site.package);
    assert_eq!(daemon.stop(), Some(0));
    assert!(site.state()["current"].is_null());
    let rolled = site.records("update.rolled_back");
    assert!(rolled.contains("0.3.0"), "{rolled}");
    assert!(rolled.contains("started 2 times"), "{rolled}");
    assert!(!site.data().join("ota/current").exists());
    let status = text(&site.cli(&["status"]).stdout);
    assert!(
        status.contains("update:    the package's version runs")
            && status.contains("last: update.rolled_back 0.3.0"),
        "{status}"
    );
}

#[test]
fn an_update_that_never_becomes_healthy_is_rolled_back_to_the_previous_version() {
    let site = Site::new("");
    // First a good version, committed.
    let good = site.sign(Path::new(BIN), "0.2.0", arch());
    assert_eq!(site.update(Path::new(BIN), &good).status.code(), Some(0));
    let daemon = site.start();
    daemon.wait_for_log("update committed", Duration::from_secs(40));
    assert_eq!(daemon.stop(), Some(0));
    // Then one that hangs without ever reporting ready or healthy.
    let hangs = site.script("hangs", "exec sleep 600");
    let manifest = site.sign(&hangs, "0.3.0", arch());
    let out = site.update(&hangs, &manifest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(site.state()["previous"], "0.2.0");
    let daemon = restart_until_rolled_back(&site, Some(Duration::from_millis(1000)));
    daemon.wait_for_log("sitelink started", Duration::from_secs(20));
    assert_eq!(
        daemon.exe(),
        site.data().join("ota/versions/0.2.0/sitelink")
    );
    assert_eq!(daemon.stop(), Some(0));
    let state = site.state();
    assert_eq!(state["current"]["version"], "0.2.0");
    assert_eq!(state["current"]["trial"], false);
    assert!(site.records("update.rolled_back").contains("0.3.0"));
    assert!(!site.data().join("ota/versions/0.3.0").exists());
}

#[test]
fn a_new_package_wins_over_an_ota_version() {
    let site = Site::new("");
    let manifest = site.sign(Path::new(BIN), "0.2.0", arch());
    assert_eq!(
        site.update(Path::new(BIN), &manifest).status.code(),
        Some(0)
    );
    // apt installs a package: a new /usr/bin/sitelink.
    let tmp = site.dir.path().join("new-package");
    std::fs::copy(BIN, &tmp).expect("copy");
    std::fs::rename(&tmp, &site.package).expect("replace the package binary");
    let daemon = site.start();
    daemon.wait_for_log("sitelink started", Duration::from_secs(20));
    assert_eq!(daemon.exe(), site.package);
    assert_eq!(daemon.stop(), Some(0));
    assert!(site.state()["current"].is_null());
    assert!(!site.data().join("ota/current").exists());
    assert!(!site.data().join("ota/versions/0.2.0").exists());
    assert!(site.records("update.superseded").contains("0.2.0"));
}

/// SIGKILL at seeded random moments of `sitelink update --file` (copy,
/// verification, the switch): after each, the state is the old or the new
/// one and what it names is there and whole.
#[test]
fn sigkill_during_an_install_leaves_a_runnable_version() {
    let site = Site::new("");
    let mut seed: u64 = 0x5eed_0da7;
    let mut installed = 0;
    for round in 0..12u32 {
        let version = format!("0.{}.0", round + 2);
        let manifest = site.sign(Path::new(BIN), &version, arch());
        // xorshift: a seeded, reproducible delay of 0 to 1.5 s.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 1500);
        let mut child = Command::new(&site.package)
            .arg("--config")
            .arg(&site.config)
            .args(["update", "--file", BIN, "--manifest"])
            .arg(&manifest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn update");
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let state_path = site.data().join("ota/state.json");
        if !state_path.exists() {
            continue;
        }
        let state = site.state();
        let current = state["current"]["version"].as_str().map(str::to_string);
        if let Some(v) = current {
            // What the state names is whole: the launcher can exec it.
            let bin = site.data().join("ota/versions").join(&v).join("sitelink");
            let size = std::fs::metadata(&bin).expect("the current binary").len();
            assert_eq!(
                size,
                std::fs::metadata(BIN).expect("bin").len(),
                "round {round}"
            );
            if v == version {
                installed += 1;
            }
        }
        // Commit whatever trial there is, as a healthy start would, so the
        // next round installs over a committed version.
        let mut s = state;
        if !s["current"].is_null() {
            s["current"]["trial"] = false.into();
            std::fs::write(&state_path, s.to_string()).expect("write state");
        }
    }
    // The next start finishes or undoes whatever was left: it runs.
    let daemon = site.start();
    daemon.wait_for_log("sitelink started", Duration::from_secs(20));
    assert_eq!(daemon.stop(), Some(0));
    let state = site.state();
    let links = std::fs::read_link(site.data().join("ota/current")).ok();
    match state["current"]["version"].as_str() {
        Some(v) => assert_eq!(links, Some(Path::new("versions").join(v))),
        None => assert_eq!(links, None),
    }
    // Leftovers of interrupted copies are gone.
    let dirs = std::fs::read_dir(site.data().join("ota/versions"))
        .expect("versions")
        .count();
    assert!(dirs <= 2, "{dirs} version directories left");
    eprintln!("{installed} of 12 interrupted installs had completed");
}

/// `sudo sitelink update`: what root made under ota/ belongs to the
/// service's user (the owner of data_dir), or the service could not lock
/// or write the state. Only meaningful as root; as another user it checks
/// that nothing changes owner.
#[test]
fn an_update_installed_by_root_belongs_to_the_data_dir_owner() {
    use std::os::unix::fs::MetadataExt;
    let site = Site::new("");
    std::fs::create_dir_all(site.data()).expect("data dir");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let service_uid = if root {
        65534
    } else {
        unsafe { libc::geteuid() }
    };
    if root {
        std::os::unix::fs::chown(site.data(), Some(65534), Some(65534)).expect("chown");
    }
    let manifest = site.sign(Path::new(BIN), "0.2.0", arch());
    let out = site.update(Path::new(BIN), &manifest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ota = site.data().join("ota");
    for p in [
        ota.clone(),
        ota.join("state.json"),
        ota.join("lock"),
        ota.join("current"),
        ota.join("versions/0.2.0"),
        ota.join("versions/0.2.0/sitelink"),
    ] {
        let m = std::fs::symlink_metadata(&p).expect("exists");
        assert_eq!(m.uid(), service_uid, "{}", p.display());
    }
}
