//! The uplink end to end over real TLS on loopback, with the real binaries:
//! `sitelink pki` makes the certificates, `sitelink hub` is the upstream,
//! `sitelink run` the agent with generator devices. Hub and agent are killed
//! during drains; refusals are checked both ways and once with openssl.

use sitelink::hub::store::{HubFilter, SqliteHub};
use sitelink::store::{DB_FILE, Reader};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");
const AGENT: &str = "site-01";

fn sitelink(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run sitelink")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The site's certificates in `dir/pki`, made with `sitelink pki`.
fn make_pki(dir: &Path, name: &str) -> PathBuf {
    let pki = dir.join(name);
    for args in [
        vec!["pki", "init", "--dir", p(&pki)],
        vec!["pki", "issue-agent", "--dir", p(&pki), "--id", AGENT],
        vec![
            "pki",
            "issue-hub",
            "--dir",
            p(&pki),
            "--name",
            "localhost",
            "--name",
            "127.0.0.1",
        ],
    ] {
        let out = sitelink(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    pki
}

/// A child process whose output lines are kept for the test to search.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("spawn");
        let log = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().expect("log").push(line);
                }
            });
        }
        Proc { child, log }
    }

    fn has(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }

    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self
                .log
                .lock()
                .expect("log")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no line with {needle:?} within {within:?}:\n{}",
            self.log.lock().expect("log").join("\n")
        );
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn term(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_hub(pki: &Path, data: &Path, listen: &str) -> (Proc, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "hub",
        "--listen",
        listen,
        "--pki",
        p(pki),
        "--data",
        p(data),
    ]);
    let hub = Proc::spawn(cmd);
    let line = hub.wait_for("sitelink hub listening on ", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().expect("address").to_string();
    (hub, addr)
}

struct Site {
    dir: PathBuf,
    pki: PathBuf,
    config: PathBuf,
}

impl Site {
    fn data(&self) -> PathBuf {
        self.dir.join("agent")
    }

    fn hub_data(&self) -> PathBuf {
        self.dir.join("hub")
    }
}

/// An agent config with generators and an `[upstream]` at `addr`.
fn agent_config(site: &Site, addr: &str, generators: &[(&str, &str, u32)], extra: &str) -> String {
    let mut s = format!(
        "[agent]\nid = \"{AGENT}\"\ndata_dir = \"{}\"\nlog_level = \"info\"\n\n[store]\ncommit_ms = 5\n\n\
         [upstream]\nurl = \"wss://{addr}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         batch_ms = 20\nbackoff_min_ms = 20\nbackoff_max_s = 1\nping_s = 1\ntimeout_s = 5\n{extra}\n",
        site.data().display(),
        site.pki.join("ca.pem").display(),
        site.pki.join(format!("agent-{AGENT}.pem")).display(),
        site.pki.join(format!("agent-{AGENT}.key")).display(),
    );
    for (name, class, rate) in generators {
        s.push_str(&format!(
            "\n[[generator]]\nname = \"{name}\"\nclass = \"{class}\"\nrate = {rate}\nsize = 100\n"
        ));
    }
    s
}

fn site(dir: &Path) -> Site {
    Site {
        dir: dir.to_path_buf(),
        pki: make_pki(dir, "pki"),
        config: dir.join("sitelink.toml"),
    }
}

fn start_agent(site: &Site) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", p(&site.config)]);
    let agent = Proc::spawn(cmd);
    agent.wait_for("sitelink started", Duration::from_secs(20));
    agent
}

fn cli(site: &Site, args: &[&str]) -> Output {
    let mut all = vec!["--config", p(&site.config)];
    all.extend_from_slice(args);
    sitelink(&all)
}

/// Everything the agent holds, and its acknowledged point.
fn agent_records(site: &Site) -> (Vec<u64>, u64) {
    let r = Reader::open(&site.data().join(DB_FILE)).expect("agent store");
    let seqs = common::all_records(&r).iter().map(|r| r.seq).collect();
    (seqs, r.acked().expect("acked"))
}

fn hub_records(site: &Site) -> Vec<(u64, String, String)> {
    let hub = SqliteHub::open_read(&site.hub_data()).expect("hub store");
    let mut all: Vec<(u64, String, String)> = hub
        .records(&HubFilter {
            agent: Some(AGENT.into()),
            ..Default::default()
        })
        .expect("hub records")
        .into_iter()
        .map(|r| (r.seq, r.device, r.payload))
        .collect();
    all.sort();
    all
}

/// Waits until the agent's whole store is acknowledged.
fn wait_drained(site: &Site, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (seqs, acked) = agent_records(site);
        if seqs.last().is_none_or(|&last| acked >= last) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained within {within:?}: acked {acked}, highest {:?}",
            seqs.last()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The hub holds exactly what the agent holds, and each generator's
/// counters run from 0 without a gap or a repeat.
fn check_exactly_once(site: &Site, generators: &[&str]) -> usize {
    let (agent, _) = agent_records(site);
    let hub = hub_records(site);
    let hub_seqs: Vec<u64> = hub.iter().map(|r| r.0).collect();
    assert_eq!(
        hub_seqs.len(),
        agent.len(),
        "the hub holds {} records, the agent {}",
        hub_seqs.len(),
        agent.len()
    );
    assert_eq!(
        hub_seqs, agent,
        "the hub and the agent hold different records"
    );
    for g in generators {
        let mut ns: Vec<u64> = hub
            .iter()
            .filter(|r| r.1 == *g)
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.2).ok()?["n"].as_u64())
            .collect();
        ns.sort();
        assert!(!ns.is_empty(), "nothing from {g}");
        assert_eq!(ns[0], 0, "{g} starts at {}", ns[0]);
        assert!(
            ns.windows(2).all(|w| w[1] == w[0] + 1),
            "{g}: counters lost or repeated"
        );
    }
    agent.len()
}

fn hub_cli(site: &Site, args: &[&str]) -> Output {
    let data = site.hub_data();
    let mut all = vec!["hub"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--data", p(&data)]);
    all.extend_from_slice(&args[1..]);
    sitelink(&all)
}

#[test]
fn agent_and_hub_deliver_everything_and_commands_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path());
    let (_hub, addr) = start_hub(&site.pki, &site.hub_data(), "127.0.0.1:0");
    let gens = [("g1", "event", 300), ("g2", "metric", 300)];
    std::fs::write(&site.config, agent_config(&site, &addr, &gens, "")).expect("config");
    let agent = start_agent(&site);
    agent.wait_for("uplink connected", Duration::from_secs(10));

    // Commands from the hub go through the agent's command table.
    let out = hub_cli(&site, &["command", AGENT, "g1", "ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("g1 ping: done"),
        "{}",
        text(&out.stdout)
    );
    let out = hub_cli(&site, &["command", AGENT, "g1", "fail"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("asked to fail"),
        "{}",
        text(&out.stderr)
    );
    let out = hub_cli(&site, &["command", AGENT, "nosuch", "ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("g1, g2"),
        "{}",
        text(&out.stderr)
    );
    let out = hub_cli(&site, &["command", "nobody", "g1", "ping"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not connected"),
        "{}",
        text(&out.stderr)
    );
    let table = text(&cli(&site, &["status", "--json"]).stdout);
    assert!(table.contains("\"state\":\"connected\""), "{table}");

    std::thread::sleep(Duration::from_millis(1500));
    let out = cli(&site, &["status"]);
    let status = text(&out.stdout);
    assert!(
        status.contains("uplink:    connected to wss://"),
        "{status}"
    );
    assert!(status.contains("records/s"), "{status}");

    for g in ["g1", "g2"] {
        let out = cli(&site, &["command", g, "pause"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    wait_drained(&site, Duration::from_secs(10));
    let n = check_exactly_once(&site, &["g1", "g2"]);
    assert!(n > 500, "only {n} records");

    // The hub's records read like the agent's.
    let theirs = hub_cli(
        &site,
        &["records", "--device", "g1", "--limit", "3", "--json"],
    );
    let ours = cli(
        &site,
        &["records", "--device", "g1", "--limit", "3", "--json"],
    );
    let keys = |o: &Output| -> Vec<Vec<String>> {
        text(&o.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                v.as_object().expect("object").keys().cloned().collect()
            })
            .collect()
    };
    assert_eq!(keys(&theirs).len(), 3, "{}", text(&theirs.stderr));
    assert_eq!(keys(&theirs), keys(&ours));
    let agents = text(&hub_cli(&site, &["agents"]).stdout);
    assert!(
        agents.starts_with(AGENT) && agents.contains("last hello"),
        "{agents}"
    );
}

#[test]
fn a_bad_config_push_is_refused_and_a_good_one_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path());
    let (_hub, addr) = start_hub(&site.pki, &site.hub_data(), "127.0.0.1:0");
    let first = agent_config(&site, &addr, &[("g1", "event", 50)], "");
    std::fs::write(&site.config, &first).expect("config");
    let agent = start_agent(&site);
    agent.wait_for("uplink connected", Duration::from_secs(10));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, first.replace("rate = 50", "rate = \"fast\"")).expect("bad");
    let out = hub_cli(&site, &["push-config", AGENT, p(&bad)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("rejected"), "{err}");
    // The errors name the agent's own file, line and column.
    let at = format!("{}:", site.config.display());
    assert!(err.contains(&at) && err.contains("`rate`"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&site.config).expect("config"),
        first
    );
    assert!(text(&cli(&site, &["command", "g1", "ping"]).stdout).contains("\"rate\":50.0"));

    let unplugged = dir.path().join("no-upstream.toml");
    let cut = first
        .split("[upstream]")
        .next()
        .expect("agent part")
        .to_string();
    std::fs::write(&unplugged, &cut).expect("write");
    let out = hub_cli(&site, &["push-config", AGENT, p(&unplugged)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cut this agent off"),
        "{}",
        text(&out.stderr)
    );

    let good = dir.path().join("good.toml");
    // A changed [upstream] too: the uplink reconnects, and the result still
    // gets back.
    let second = agent_config(
        &site,
        &addr,
        &[("g1", "event", 70), ("g2", "event", 10)],
        "window = 2\n",
    );
    std::fs::write(&good, &second).expect("good");
    let out = hub_cli(&site, &["push-config", AGENT, p(&good)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 devices"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&site.config).expect("config"),
        second
    );
    assert!(text(&cli(&site, &["command", "g1", "ping"]).stdout).contains("\"rate\":70.0"));
    agent.wait_for("[upstream] changed, reconnecting", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = hub_cli(&site, &["command", AGENT, "g2", "ping"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_hub_killed_20_times_during_a_drain_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path());
    let (hub, addr) = start_hub(&site.pki, &site.hub_data(), "127.0.0.1:0");
    // Small batches and a slow pace keep the drain going through every kill.
    let gens = [("g1", "event", 1500)];
    let extra = "batch_records = 50\nwindow = 3\n";
    std::fs::write(&site.config, agent_config(&site, &addr, &gens, extra)).expect("config");
    let agent = start_agent(&site);
    agent.wait_for("uplink connected", Duration::from_secs(10));
    let mut hub = Some(hub);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 250));
        if let Some(mut h) = hub.take() {
            h.kill();
        }
        // Now and then the hub stays away a while, so a backlog builds.
        if round % 5 == 4 {
            std::thread::sleep(Duration::from_millis(400));
        }
        hub = Some(start_hub(&site.pki, &site.hub_data(), &addr).0);
    }
    let out = cli(&site, &["command", "g1", "pause"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_drained(&site, Duration::from_secs(20));
    let n = check_exactly_once(&site, &["g1"]);
    assert!(n > 2000, "only {n} records");
    let agents = SqliteHub::open_read(&site.hub_data())
        .expect("hub")
        .agents()
        .expect("agents");
    eprintln!(
        "{n} records; resends the hub ignored: {}",
        agents[0].repeats
    );
}

#[test]
fn the_agent_killed_during_a_drain_loses_nothing_and_the_hub_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path());
    let (_hub, addr) = start_hub(&site.pki, &site.hub_data(), "127.0.0.1:0");
    let gens = [("g1", "event", 1500), ("g2", "accounting", 500)];
    let extra = "batch_records = 100\nwindow = 4\n";
    std::fs::write(&site.config, agent_config(&site, &addr, &gens, extra)).expect("config");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..6 {
        let mut agent = start_agent(&site);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 400));
        agent.kill();
    }
    let mut agent = start_agent(&site);
    for g in ["g1", "g2"] {
        let out = cli(&site, &["command", g, "pause"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    wait_drained(&site, Duration::from_secs(20));
    agent.term();
    let n = check_exactly_once(&site, &["g1", "g2"]);
    assert!(n > 2000, "only {n} records");
}

fn s_client(addr: &str, pki: &Path, with_cert: bool) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        addr,
        "-CAfile",
        p(&pki.join("ca.pem")),
    ]);
    cmd.args(["-servername", "localhost"]);
    if with_cert {
        cmd.args([
            "-cert",
            p(&pki.join(format!("agent-{AGENT}.pem"))),
            "-key",
            p(&pki.join(format!("agent-{AGENT}.key"))),
        ]);
    }
    // Something to read after the handshake, so a TLS 1.3 refusal of the
    // client certificate (sent after the handshake) shows.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().expect("openssl output");
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn tls_is_refused_both_ways_and_plaintext_never_configures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path());
    let other = make_pki(dir.path(), "other");
    let (hub, addr) = start_hub(&site.pki, &site.hub_data(), "127.0.0.1:0");

    // From outside: openssl without a client certificate is refused; with
    // the agent's, the handshake verifies.
    if Command::new("openssl").arg("version").output().is_ok() {
        let refused = s_client(&addr, &site.pki, false);
        assert!(
            refused.contains("alert") && refused.contains("certificate required"),
            "{refused}"
        );
        let ok = s_client(&addr, &site.pki, true);
        assert!(ok.contains("Verify return code: 0 (ok)"), "{ok}");
        hub.wait_for("the client showed no certificate", Duration::from_secs(5));
    } else {
        eprintln!("openssl is not installed: the outside check is skipped");
    }

    // An agent with a certificate from another CA is refused by the hub.
    let text_of = |pki: &Path| {
        agent_config(&site, &addr, &[("g1", "event", 10)], "").replace(
            &format!("{}/agent-", site.pki.display()),
            &format!("{}/agent-", pki.display()),
        )
    };
    std::fs::write(&site.config, text_of(&other)).expect("config");
    let mut agent = start_agent(&site);
    agent.wait_for("refused this agent's certificate", Duration::from_secs(10));
    hub.wait_for("not from the site CA", Duration::from_secs(5));
    // Between two attempts the status says why.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = text(&cli(&site, &["status"]).stdout);
        if status.contains("NOT CONNECTED") && status.contains("last error: the upstream") {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.term();

    // An expired certificate from the right CA is refused too.
    let expired = dir.path().join("expired");
    std::fs::create_dir_all(&expired).expect("dir");
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(site.pki.join(f), expired.join(f)).expect("copy CA");
    }
    let day = Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    sitelink::pki::issue_agent_valid(
        &expired,
        AGENT,
        false,
        sitelink::pki::Validity {
            not_before: now - day * 30,
            not_after: now - day,
        },
    )
    .expect("expired certificate");
    std::fs::write(&site.config, text_of(&expired)).expect("config");
    let mut agent = start_agent(&site);
    agent.wait_for("refused this agent's certificate", Duration::from_secs(10));
    hub.wait_for("has expired", Duration::from_secs(5));
    agent.term();

    // A hub whose certificate is from another CA is refused by the agent.
    let (_stranger, stranger_addr) = start_hub(&other, &dir.path().join("stranger"), "127.0.0.1:0");
    let cfg = agent_config(&site, &stranger_addr, &[("g1", "event", 10)], "");
    std::fs::write(&site.config, cfg).expect("config");
    let mut agent = start_agent(&site);
    let line = agent.wait_for("not signed by the CA", Duration::from_secs(10));
    assert!(
        line.contains(&stranger_addr),
        "the error names the URL: {line}"
    );
    // Collection goes on.
    std::thread::sleep(Duration::from_millis(300));
    assert!(text(&cli(&site, &["command", "g1", "ping"]).stdout).contains("done"));
    agent.term();
    assert!(!agent.has("uplink connected"));

    // The agent id in the hello must be the certificate's.
    let imposter = agent_config(&site, &addr, &[], "")
        .replace(&format!("id = \"{AGENT}\""), "id = \"site-02\"");
    std::fs::write(&site.config, imposter).expect("config");
    let mut agent = start_agent(&site);
    agent.wait_for(
        "the certificate is for \"site-01\"",
        Duration::from_secs(10),
    );
    agent.term();

    // Plaintext is not a configuration.
    let plain = agent_config(&site, &addr, &[], "").replace("wss://", "ws://");
    std::fs::write(&site.config, plain).expect("config");
    let out = sitelink(&["check-config", p(&site.config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("plaintext"),
        "{}",
        text(&out.stderr)
    );
}
