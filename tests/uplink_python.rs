//! The protocol document is enough to write an upstream: a small one in
//! Python (`tests/upstream/from_the_doc.py`, from docs/PROTOCOL.md alone,
//! on the `websockets` package) takes records from the real agent, sends a
//! command, a type the agent cannot know and an update offer, and gets a
//! result for each.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sitelink");

fn run(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().expect("run sitelink");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python with `websockets`: `SITELINK_PYTHON` (scripts/python-peers
/// sets it), else that venv's usual place. Missing is a failure that says
/// how to install it, never a silent pass.
fn websockets_python() -> std::path::PathBuf {
    let python = std::env::var_os("SITELINK_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/sitelink-venv/bin/python".into());
    let ok = Command::new(&python)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} has no websockets package: run `source scripts/python-peers` (scripts/test does)",
        python.display()
    );
    python
}

#[test]
fn an_upstream_written_from_the_document_alone_works_with_the_agent() {
    let python = websockets_python();
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    let p = |x: &Path| x.to_str().expect("utf-8").to_string();
    run(&["pki", "init", "--dir", &p(&pki)]);
    run(&["pki", "issue-agent", "--dir", &p(&pki), "--id", "site-01"]);
    run(&["pki", "issue-hub", "--dir", &p(&pki), "--name", "127.0.0.1"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/upstream/from_the_doc.py"
    );
    let mut upstream = Command::new(&python)
        .args([script, &p(&pki), "300"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut lines = BufReader::new(upstream.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = first
        .strip_prefix("listening ")
        .expect("the upstream's port")
        .to_string();

    let config = dir.path().join("sitelink.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"site-01\"\ndata_dir = \"{}\"\n[store]\ncommit_ms = 5\n\
             [upstream]\nurl = \"wss://127.0.0.1:{port}\"\nca = \"{}/ca.pem\"\n\
             cert = \"{}/agent-site-01.pem\"\nkey = \"{}/agent-site-01.key\"\nbatch_ms = 20\n\
             [[generator]]\nname = \"g1\"\nclass = \"event\"\nrate = 300\n",
            p(&dir.path().join("agent")),
            p(&pki),
            p(&pki),
            p(&pki)
        ),
    )
    .expect("config");
    let mut agent = Command::new(BIN)
        .args(["run", "--config", &p(&config)])
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::null())
        .spawn()
        .expect("agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        if let Some(Ok(line)) = lines.next() {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the Python upstream said nothing"
        );
    };
    let _ = agent.kill();
    let _ = agent.wait();
    let status = upstream.wait().expect("python exit");
    assert!(status.success(), "the Python upstream failed: {summary}");
    let v: serde_json::Value = serde_json::from_str(&summary).expect("summary JSON");
    assert!(v["stored"].as_u64().is_some_and(|n| n >= 300), "{v}");
    assert_eq!(v["results"]["py-1"], "done", "{v}");
    assert_eq!(
        v["results"]["py-2"], "rejected",
        "an unknown type with an id: {v}"
    );
    assert_eq!(
        v["results"]["py-3"], "rejected",
        "an update signed by no trusted key is refused: {v}"
    );
    assert!(v["ping"]["next"].is_u64(), "{v}");
}
