//! `sitelink demo` end to end, through the real binary.

use std::process::Command;

#[test]
fn demo_delivers_everything_and_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_sitelink"))
        .args(["demo", "--duration", "2"])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("command egm-1 ping: done"), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("produced "))
        .expect("summary line");
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [produced, stored, delivered, lost] = numbers[..] else {
        panic!("unexpected summary: {summary}");
    };
    assert!(produced > 1000, "{summary}");
    assert_eq!(
        (stored, delivered, lost),
        (produced, produced, 0),
        "{summary}"
    );
    // The simulated EGMs on the SAS line: each raised and delivered
    // exceptions, none lost, none twice (stored = delivered = produced).
    let egms: Vec<(&str, Vec<u64>)> = stdout
        .lines()
        .filter(|l| l.starts_with("slot-"))
        .map(|l| {
            let mut cols = l.split_whitespace();
            let device = cols.next().unwrap_or_default();
            assert_eq!(cols.next(), Some("exception"), "{l}");
            (device, cols.filter_map(|c| c.parse().ok()).collect())
        })
        .collect();
    assert!(egms.len() >= 2, "EGM rows missing:\n{stdout}");
    for (device, n) in &egms {
        let [produced, stored, delivered, lost] = n[..] else {
            panic!("unexpected EGM row for {device}:\n{stdout}");
        };
        assert!(produced > 0, "{device} produced no exceptions:\n{stdout}");
        assert_eq!(
            (stored, delivered, lost),
            (produced, produced, 0),
            "{device}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.contains("SAS line:")
            && l.contains(", 0 dropped")
            && l.contains("meters records")),
        "{stdout}"
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("data directory: "))
        .and_then(|l| l.split(' ').next())
        .expect("data directory line");
    assert!(std::path::Path::new(dir).join("sitelink.db").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_sitelink"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sitelink {}", env!("CARGO_PKG_VERSION"))
    );
}
