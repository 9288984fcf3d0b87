//! The agent's configuration: `/etc/sitelink/sitelink.toml`.
//!
//! Every section is one typed struct that reads and validates itself; errors
//! carry the file, line and column so a technician can find them.

mod agent;
mod diagnostic;
mod generator;
mod names;
mod reader;
mod reload;
mod sas;
mod store;
mod tv;
mod update;
mod upstream;

pub use diagnostic::{ConfigError, Diagnostic};
pub use names::name_problem;
pub use reload::{Changes, ReloadPlan, reload_plan};

use crate::store::Class;
use diagnostic::Diagnostics;
use names::DeviceNames;
use reader::SectionReader;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeTable;

/// Where the daemon and the CLI look when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/sitelink/sitelink.toml";

/// The annotated default configuration, shipped as `/etc/sitelink/sitelink.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/sitelink.toml");

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub source: PathBuf,
    pub agent: AgentConfig,
    pub store: StoreConfig,
    pub generators: Vec<GeneratorConfig>,
    pub sas: Vec<SasLineConfig>,
    pub tvs: Vec<TvConfig>,
    /// `None`: no `[upstream]`, records stay on this machine.
    pub upstream: Option<UpstreamConfig>,
    pub update: UpdateConfig,
}

/// `[update]`: over-the-air self-update.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateConfig {
    /// `ed25519:BASE64` public keys; a release signed by none is refused
    /// (none: every update is refused).
    pub trusted_keys: Vec<String>,
    /// A release manifest to poll, `None`: only offers and `sitelink update`.
    pub url: Option<String>,
    pub check_every: Duration,
    /// A version in trial commits after being healthy this long.
    pub health: Duration,
    /// Starts of a version in trial before the launcher rolls it back.
    pub max_attempts: u32,
    /// Largest release binary accepted, bytes.
    pub max_bytes: u64,
    pub allow_downgrade: bool,
}

/// `[agent]`
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Names this agent upstream and in every record. Default: the host name.
    pub id: String,
    /// Absolute directory for the database, keys and the control socket.
    pub data_dir: PathBuf,
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or directives like `info,sitelink::store=debug`.
    pub log_level: String,
}

/// `[store]`
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// Group commit: commit when this many records wait...
    pub commit_records: usize,
    /// ...or when the oldest waiting record has waited this long.
    pub commit_window: Duration,
    /// Most rows each class may hold (`[store.quota]`).
    pub quota: Quotas,
    /// Free space to leave on the file system holding `data_dir`, in bytes.
    pub min_free_bytes: u64,
    /// How long delivered records stay for local queries.
    pub retention: Duration,
}

/// `[store.quota]`: most rows per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub event: u64,
    pub accounting: u64,
    pub metric: u64,
}

impl Quotas {
    pub fn get(&self, class: Class) -> u64 {
        match class {
            Class::Event => self.event,
            Class::Accounting => self.accounting,
            Class::Metric => self.metric,
        }
    }
}

/// `[[sas]]`: one serial line (a port) polled as the SAS host.
#[derive(Clone, Debug, PartialEq)]
pub struct SasLineConfig {
    /// The line's own device name (its port events: unplugged, back).
    pub name: String,
    /// An absolute device path or `tcp://HOST:PORT`.
    pub port: String,
    /// Spacing between polls to one EGM.
    pub poll_interval: Duration,
    /// From the last byte sent to the first byte of the reply.
    pub reply_timeout: Duration,
    /// Quiet time that ends a reply.
    pub inter_byte: Duration,
    /// Default period of the meter polls for the machines on this line.
    pub meters_every: Duration,
    pub egms: Vec<EgmConfig>,
}

/// `[[sas.egm]]`: one gaming machine on a line.
#[derive(Clone, Debug, PartialEq)]
pub struct EgmConfig {
    /// SAS address, 1–127, set on the machine.
    pub address: u8,
    /// The device name its records carry.
    pub name: String,
    pub meters_every: Duration,
}

/// `[[tv]]`: one Android TV reached over ADB on the network.
#[derive(Clone, Debug, PartialEq)]
pub struct TvConfig {
    /// The device name its records carry.
    pub name: String,
    /// A host name, IPv4 or IPv6 address (no brackets, no port).
    pub host: String,
    /// The TV's ADB TCP port (network debugging), 5555 unless changed on the TV.
    pub port: u16,
    /// Period of the health sample (power, app, volume, ...).
    pub telemetry_every: Duration,
    /// Period of scheduled screenshots; `None`: only on command.
    pub screenshot_every: Option<Duration>,
    /// A screenshot larger than this is dropped rather than stored.
    pub screenshot_max_bytes: usize,
    /// Whether the `shell CMD` command may run arbitrary commands on this TV.
    pub allow_shell: bool,
    /// A relay that switches the TV's mains power, for TVs ADB cannot wake.
    pub relay: Option<RelayConfig>,
    /// How long to wait for the TCP connection.
    pub connect_timeout: Duration,
    /// How long one request (a query or a command) may take.
    pub request_timeout: Duration,
    /// Most ADB streams open at once on the TV's connection.
    pub max_streams: usize,
}

/// `relay = { chip = ..., line = ... }` in a `[[tv]]`: a GPIO line driving a
/// relay in the TV's power lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The GPIO character device, always a full path (`/dev/gpiochip0`).
    pub chip: PathBuf,
    /// The line's offset on that chip.
    pub line: u32,
    /// The TV is powered while the line is low (most relay boards switch on a low input).
    pub active_low: bool,
    /// How long `relay cycle` leaves the power off.
    pub cycle_off: Duration,
}

/// `[upstream]`: where the uplink delivers, over mutual TLS.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// As written: `wss://HOST[:PORT][/PATH]`.
    pub url: String,
    /// The host, the name the upstream's certificate must carry (no brackets).
    pub host: String,
    pub port: u16,
    pub path: String,
    /// PEM: the CA that signed the upstream's certificate.
    pub ca: PathBuf,
    /// PEM: this agent's certificate and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Most records in one batch.
    pub batch_records: usize,
    /// How long records may wait for a batch to fill.
    pub batch_wait: Duration,
    /// Batches in flight before an acknowledgement.
    pub window: usize,
    /// Waits between connection attempts (capped exponential, full jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// WebSocket pings on a quiet connection...
    pub ping_every: Duration,
    /// ...and silence after which it counts as dead.
    pub dead_after: Duration,
}

/// `[[generator]]`: a synthetic device, the load generator for tests and benchmarks.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    pub name: String,
    pub class: Class,
    /// Records per second.
    pub rate: f64,
    /// Payload bytes per record.
    pub size: usize,
}

/// Where to find a good starting point, for hints about unusable files.
const DEFAULT_HINT: &str = "start from the annotated default, which the package installs as \
     /etc/sitelink/sitelink.toml (config/sitelink.toml in the source)";

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(path, &bytes),
        Err(e) => Err(read_error(path, &e).into()),
    }
}

fn read_error(path: &Path, e: &io::Error) -> Diagnostic {
    let (message, hint) = match e.kind() {
        io::ErrorKind::NotFound => (
            "cannot read the config file: it does not exist".to_string(),
            format!("check the path; to create it, {DEFAULT_HINT}"),
        ),
        io::ErrorKind::IsADirectory => (
            "cannot read the config file: it is a directory".to_string(),
            format!(
                "give the path of the file inside it, e.g. {}",
                path.join("sitelink.toml").display()
            ),
        ),
        _ => (
            format!("cannot read the config file: {e}"),
            "check that every part of the path exists and that the service's user may read the file (`ls -l`)"
                .to_string(),
        ),
    };
    Diagnostic::whole_file(path, message, hint)
}

/// Validates a config given as bytes (read from disk or pushed from upstream).
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(path, text),
        Err(e) => {
            // Everything before `valid_up_to` is UTF-8, by its definition.
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, col) = diagnostic::position(good, good.len());
            let bad = bytes[e.valid_up_to()];
            Err(Diagnostic {
                path: path.to_path_buf(),
                line: Some(line),
                col: Some(col),
                message: format!("the file is not UTF-8 text: byte 0x{bad:02X} cannot appear here"),
                hint: Some(
                    "save the file as UTF-8; editors set to Latin-1 or Windows-1252 write accented letters like this"
                        .to_string(),
                ),
            }
            .into())
        }
    }
}

/// Validates config `text`; `path` is only used in messages and as `Config::source`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let (doc, mut syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // What follows a syntax error is guesswork, so report only these, and
        // only the first on each line: the rest of a broken line is noise.
        syntax_errors.sort_by_key(|e| e.span().map_or(0, |span| span.start));
        let mut diags = Diagnostics::new(path, text);
        let mut last_line = 0;
        for e in syntax_errors {
            let (line, _) = diagnostic::position(text, e.span().map_or(0, |span| span.start));
            if line != last_line {
                syntax_error(&mut diags, text, &e);
                last_line = line;
            }
        }
        diags.finish()?;
    }
    // A blank or comments-only file is an error rather than "all defaults":
    // it is almost always a failed copy or an editor accident, and running on
    // defaults would hide that until the data goes to the wrong place.
    if doc.get_ref().is_empty() {
        return Err(Diagnostic::whole_file(
            path,
            "the file is empty (nothing but comments and blank lines)".to_string(),
            format!("a config needs at least one section; {DEFAULT_HINT}"),
        )
        .into());
    }

    let mut diags = Diagnostics::new(path, text);
    let mut r = SectionReader::document(&mut diags, &doc);
    let agent = r.section("agent", agent::read);
    let store = r.section("store", store::read);
    let mut devices = DeviceNames::default();
    let generators = r.each_table("generator", |g| generator::read(g, &mut devices));
    let mut ports = sas::Ports::default();
    let sas = r.each_table("sas", |l| sas::read(l, &mut devices, &mut ports));
    let mut claims = tv::Claims::default();
    let tvs = r.each_table("tv", |t| tv::read(t, &mut devices, &mut claims));
    let wants_upstream = r.has("upstream");
    let upstream = r.section("upstream", |u| {
        wants_upstream.then(|| upstream::read(u)).flatten()
    });
    let update = r.section("update", update::read);
    r.finish();
    diags.finish()?;
    Ok(Config {
        source: path.to_path_buf(),
        agent,
        store,
        generators,
        sas,
        tvs,
        upstream,
        update,
    })
}

fn syntax_error(diags: &mut Diagnostics<'_>, text: &str, e: &toml::de::Error) {
    let span = e.span().unwrap_or(0..0);
    let before = text.get(..span.start).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let (message, hint) = match e.message() {
        "duplicate key" if line.starts_with('[') => {
            let header = line.split('#').next().unwrap_or(line).trim();
            (
                format!("duplicate section {header}"),
                "a section may appear only once: merge the two into one (use [[name]] for a list)"
                    .to_string(),
            )
        }
        "duplicate key" => (
            format!("duplicate key `{}`", diags.snippet(span.clone())),
            "a key may appear only once in a section: delete one of the two lines".to_string(),
        ),
        m if m.starts_with("string values must be quoted") => {
            // toml's wording ("expected literal string") means nothing to a
            // technician; show the line as it should be instead.
            let hint = match line.split_once('=') {
                Some((key, value)) => {
                    let value = value.split('#').next().unwrap_or("").trim();
                    format!("put text in double quotes: `{} = \"{value}\"`", key.trim())
                }
                None => "put text in double quotes, e.g. `id = \"site-01\"`".to_string(),
            };
            (
                "invalid TOML: text must be in double quotes".to_string(),
                hint,
            )
        }
        "unclosed table, expected `]`" => (
            "invalid TOML: the section header has no closing `]`".to_string(),
            "write a section header as `[name]` on a line of its own".to_string(),
        ),
        "invalid basic string, expected `\"`" => (
            "invalid TOML: the text has no closing `\"`".to_string(),
            "end the text with `\"` on the same line".to_string(),
        ),
        m => (
            format!("invalid TOML: {m}"),
            "each setting is `key = value` on its own line, text in double quotes, \
             sections as [name] or [[name]], comments after #"
                .to_string(),
        ),
    };
    diags.error(span, message, hint);
}

impl Config {
    /// One line for the log at start and reload.
    pub fn summary(&self) -> String {
        let generators = self.generators.len();
        let egms: usize = self.sas.iter().map(|l| l.egms.len()).sum();
        let tvs = self.tvs.len();
        let mut kinds = Vec::new();
        if egms > 0 {
            kinds.push(format!(
                "{} on {}",
                plural(egms, "gaming machine"),
                plural(self.sas.len(), "SAS line")
            ));
        }
        if tvs > 0 {
            kinds.push(plural(tvs, "TV"));
        }
        if generators > 0 {
            kinds.push(plural(generators, "generator"));
        }
        let devices = match egms + tvs + generators {
            0 => "no devices".to_string(),
            n => format!("{} ({})", plural(n, "device"), kinds.join(", ")),
        };
        format!(
            "agent {}, data in {}, {devices}",
            self.agent.id,
            self.agent.data_dir.display()
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("t.toml"), text).expect("valid test config")
    }

    #[test]
    fn embedded_default_parses_to_the_defaults() {
        let config = parse(Path::new(DEFAULT_PATH), EMBEDDED_DEFAULT).expect("default is valid");
        // Written out, not taken from the readers, so a wrong default in
        // either the file or the code fails here.
        let expected = Config {
            source: PathBuf::from(DEFAULT_PATH),
            agent: AgentConfig {
                id: agent::default_id(),
                data_dir: PathBuf::from("/var/lib/sitelink"),
                log_level: "info".to_string(),
            },
            store: StoreConfig {
                commit_records: 1000,
                commit_window: Duration::from_millis(10),
                quota: Quotas {
                    event: 5_000_000,
                    accounting: 5_000_000,
                    metric: 2_000_000,
                },
                min_free_bytes: 256 * 1024 * 1024,
                retention: Duration::from_secs(168 * 3600),
            },
            generators: Vec::new(),
            sas: Vec::new(),
            tvs: Vec::new(),
            upstream: None,
            update: UpdateConfig {
                trusted_keys: Vec::new(),
                url: None,
                check_every: Duration::from_secs(3600),
                health: Duration::from_secs(120),
                max_attempts: 3,
                max_bytes: 64 * 1024 * 1024,
                allow_downgrade: false,
            },
        };
        assert_eq!(config, expected);
        // A file with only headers must give the same: the defaults live in code too.
        let bare = parse(Path::new(DEFAULT_PATH), "[agent]\n[store]\n").expect("valid");
        assert_eq!(bare, expected);
    }

    #[test]
    fn summary_counts_devices() {
        let one = parse_ok(
            "[agent]\nid = \"site-01\"\n[[generator]]\nname = \"g\"\nclass = \"event\"\nrate = 1\n",
        );
        assert_eq!(
            one.summary(),
            "agent site-01, data in /var/lib/sitelink, 1 device (1 generator)"
        );
        let none = parse_ok("[agent]\nid = \"site-01\"\ndata_dir = \"/data\"\n");
        assert_eq!(none.summary(), "agent site-01, data in /data, no devices");
    }

    #[test]
    fn not_utf8_points_at_the_first_bad_byte() {
        let err =
            parse_bytes(Path::new("t.toml"), b"[agent]\nid = \"caf\xe9\"\n").expect_err("latin-1");
        let d = &err.diagnostics[0];
        assert_eq!((d.line, d.col), (Some(2), Some(10)));
        assert_eq!(
            d.message,
            "the file is not UTF-8 text: byte 0xE9 cannot appear here"
        );
    }

    #[test]
    fn all_syntax_errors_are_reported() {
        let err = parse(Path::new("t.toml"), "[agent\nid = = 1\n").expect_err("broken");
        assert_eq!(err.diagnostics.len(), 2, "{err}");
    }

    #[test]
    fn source_is_the_given_path() {
        let config = parse(Path::new("/x/y.toml"), "[agent]\n").expect("valid");
        assert_eq!(config.source, Path::new("/x/y.toml"));
    }
}
