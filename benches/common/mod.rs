//! What the benchmarks share: knobs, where they write, and the table they print.

use std::fmt::Write as _;
use std::path::PathBuf;

/// A whole-number knob from the environment (`BENCH_RECORDS=...`).
pub fn knob(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// `target/` of the build that made this bench (`target/release/deps/NAME-…`).
pub fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// Where the benchmarks put their files: `BENCH_DIR`, else `target/bench-tmp`
/// (on the same disk as the build, not a tmpfs).
pub fn bench_root() -> PathBuf {
    if let Ok(d) = std::env::var("BENCH_DIR") {
        return PathBuf::from(d);
    }
    match target_dir() {
        Some(t) => t.join("bench-tmp"),
        None => PathBuf::from("/var/tmp"),
    }
}

/// One line of the printed table.
pub struct Row {
    pub id: &'static str,
    pub name: String,
    pub value: String,
    pub unit: &'static str,
    pub note: String,
}

pub fn row(
    id: &'static str,
    name: impl Into<String>,
    value: String,
    unit: &'static str,
    note: String,
) -> Row {
    Row {
        id,
        name: name.into(),
        value,
        unit,
        note,
    }
}

/// Prints the rows as a Markdown table; `last` heads the note column.
pub fn print_table(rows: &[Row], last: &'static str) {
    let head = ["#", "benchmark", "value", "unit", last];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| [r.id, &r.name, &r.value, r.unit, &r.note])
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::from("|");
        for (i, x) in c.iter().enumerate() {
            let pad = w[i] - x.chars().count();
            // Numbers right-aligned, text left-aligned.
            if i == 2 {
                let _ = write!(s, " {}{x} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {x}{} |", " ".repeat(pad));
            }
        }
        s
    };
    println!("{}", line(head));
    let mut sep = String::from("|");
    for (i, n) in w.iter().enumerate() {
        if i == 2 {
            let _ = write!(sep, "{}:|", "-".repeat(n + 1));
        } else {
            let _ = write!(sep, "{}|", "-".repeat(n + 2));
        }
    }
    println!("{sep}");
    for c in cells {
        println!("{}", line(c));
    }
}

/// A count with thin groups: `1 234 567`.
pub fn int(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// Latencies in microseconds; sort before reading quantiles.
#[derive(Default)]
pub struct Lat(pub Vec<u64>);

impl Lat {
    /// The `q` quantile in milliseconds (NaN when empty).
    pub fn q(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i] as f64 / 1000.0
    }
    pub fn max(&self) -> f64 {
        self.0.last().map_or(f64::NAN, |&v| v as f64 / 1000.0)
    }
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }
}

/// Resident memory of a process (`/proc/PID/status` VmRSS), in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
