//! The command line. Argument definitions and the turn of errors into one
//! clear message and an exit code; the work is in the modules.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (config,
//! arguments, an unknown device or action).

use crate::clock::format_ms;
use crate::config::{self, Config};
use crate::control::{self, Request, Response};
use crate::store::{Class, CommandStatus, DB_FILE, Reader, RecordFilter};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "sitelink",
    version,
    about = "Site agent: gaming machines (SAS) and Android TVs (ADB) to a durable store and an upstream"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent (what systemd starts).
    Run,
    /// Check a configuration file: a one-line summary, or every error as PATH:LINE:COL.
    CheckConfig {
        /// The file to check.
        path: PathBuf,
    },
    /// What the agent holds: backlog, drops, last sync, clock, devices.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The newest stored records, oldest first.
    Records {
        #[arg(long)]
        device: Option<String>,
        /// event, accounting or metric.
        #[arg(long)]
        class: Option<Class>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Ask a device to do something and wait for its answer.
    Command {
        device: String,
        action: String,
        args: Vec<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// The site's ADB key, which TVs must accept.
    Adb {
        #[command(subcommand)]
        what: AdbCommand,
    },
    /// Run the whole system on simulated devices in a temporary directory.
    Demo {
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Simulated devices for tests and the demo; run until SIGTERM or SIGINT.
    Sim {
        #[command(subcommand)]
        device: SimCommand,
    },
    /// The site's certificates: a CA, one per agent, one for the hub.
    Pki {
        #[command(subcommand)]
        action: PkiCommand,
    },
    /// The reference upstream: serve agents, or talk to a running hub.
    Hub(HubArgs),
    /// Sign releases for over-the-air update (on the release machine).
    Release {
        #[command(subcommand)]
        action: ReleaseCommand,
    },
    /// Install a signed release from a file (offline update); it runs, in
    /// trial, at the next start of the service.
    Update {
        /// The release binary.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Its manifest (default: PATH.json).
        #[arg(long, value_name = "PATH")]
        manifest: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// A new signing key: DIR/release.key (0600) and DIR/release.pub; prints
    /// the public key for `[update] trusted_keys`.
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Writes the signed manifest of a release binary.
    Sign {
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, value_name = "PATH")]
        binary: PathBuf,
        /// MAJOR.MINOR.PATCH[-PRE].
        #[arg(long)]
        version: String,
        /// amd64, arm64 or armhf.
        #[arg(long)]
        arch: String,
        #[arg(long, value_name = "MANIFEST")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// A new site CA: DIR/ca.pem and DIR/ca.key.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// A certificate for one agent: DIR/agent-ID.pem and DIR/agent-ID.key.
    IssueAgent {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The agent's id (its [agent] id).
        #[arg(long)]
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// The hub's certificate: DIR/hub.pem and DIR/hub.key.
    IssueHub {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A DNS name or IP address agents use to reach the hub; repeat for several.
        #[arg(long = "name", value_name = "DNS-OR-IP", required = true)]
        names: Vec<String>,
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HubArgs {
    /// Address to listen on, e.g. 0.0.0.0:8443.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The PKI directory with ca.pem, hub.pem and hub.key.
    #[arg(long, value_name = "DIR")]
    pub pki: Option<PathBuf>,
    /// Where the hub keeps hub.db and its control socket.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Option<HubCommand>,
}

#[derive(Subcommand, Debug)]
pub enum HubCommand {
    /// Ask a device of a connected agent to do something; prints its answer.
    Command {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        agent: String,
        device: String,
        action: String,
        args: Vec<String>,
    },
    /// Send a new config file to a connected agent; prints what it did.
    PushConfig {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        agent: String,
        file: PathBuf,
    },
    /// Offer a signed release to a connected agent; prints what it did.
    OfferUpdate {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        agent: String,
        /// The manifest from `sitelink release sign`.
        manifest: PathBuf,
        /// Where the agent fetches the binary (http:// or https://).
        url: String,
    },
    /// What arrived, oldest first.
    Records {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// The newest this many; 0: all.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line, as `sitelink records --json`.
        #[arg(long)]
        json: bool,
    },
    /// The agents the hub knows, with their last hello.
    Agents {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdbCommand {
    /// Print the public key (`data_dir/adbkey.pub`, made if missing) in
    /// Android's format: append it to a TV image's /data/misc/adb/adb_keys to
    /// pre-authorise the agent.
    Pubkey,
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Gaming machines on one SAS line, served over a PTY or TCP.
    Egm(SimEgmArgs),
    /// Android TVs speaking ADB over TCP, one port each.
    Tv(SimTvArgs),
}

#[derive(clap::Args, Debug)]
pub struct SimTvArgs {
    /// The first TV's address; the others take the next ports (port 0: any free ports).
    /// Keep ports outside 5555-5585, which an adb server scans by itself.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// How many TVs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: usize,
    /// Nobody accepts "Allow USB debugging?": hosts with a new key stay unauthorized.
    #[arg(long)]
    pub unauthorized: bool,
    /// Android 6.0 adbd: version 0x01000000, 4 KiB payloads, no shell v2, checksums checked.
    #[arg(long)]
    pub legacy: bool,
    /// Trust this adbkey.pub from the start (repeat for more keys).
    #[arg(long, value_name = "PATH")]
    pub trust: Vec<PathBuf>,
    /// Drop every TV's connections this often (each TV at its own moment).
    #[arg(long, value_name = "SECS")]
    pub drop_every: Option<f64>,
    /// Stall (read and answer nothing) this often...
    #[arg(long, value_name = "SECS", requires = "stall_for")]
    pub stall_every: Option<f64>,
    /// ...for this long.
    #[arg(long, value_name = "SECS", requires = "stall_every")]
    pub stall_for: Option<f64>,
    /// Delay each stream's answer by this much.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub slow_ms: u64,
    /// How long a TV stays unreachable after the reboot service.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub reboot_secs: f64,
    /// Seed for serial numbers, figures, tokens and fault timing.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["pty", "tcp"])))]
pub struct SimEgmArgs {
    /// Create a PTY and link its slave device at LINK (a stale link is replaced).
    #[arg(long, value_name = "LINK")]
    pub pty: Option<PathBuf>,
    /// Listen on ADDR (port 0 picks one), one host connection at a time.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<std::net::SocketAddr>,
    /// An EGM at this SAS address (1 to 127); repeat for a multidrop line.
    #[arg(long = "address", value_name = "N", required = true,
          value_parser = clap::value_parser!(u8).range(1..=127))]
    pub addresses: Vec<u8>,
    /// Mean games per second per EGM.
    #[arg(long, value_name = "GAMES_PER_S", default_value_t = 1.0)]
    pub game_rate: f64,
    /// Percent of polls lost (no reply).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub no_reply: f64,
    /// Percent of replies sent with a bad CRC (frames with a CRC only).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub corrupt: f64,
    /// Percent of replies sent late, after --slow-ms.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    pub slow: f64,
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub slow_ms: u64,
    /// Unplug every SECS seconds (SIGUSR1 toggles an unplug at any time).
    #[arg(long, value_name = "SECS", requires = "unplug_for")]
    pub unplug_every: Option<f64>,
    /// How long each scheduled unplug lasts.
    #[arg(long, value_name = "SECS", requires = "unplug_every")]
    pub unplug_for: Option<f64>,
    /// silent: the EGMs stop answering; device: the PTY or TCP port goes away.
    #[arg(long, value_enum, default_value = "silent")]
    pub unplug_mode: crate::sim::egm::UnplugMode,
    /// Exceptions an EGM queues before the oldest is lost (spec minimum 20).
    #[arg(long, value_name = "N", default_value_t = crate::sim::egm::queue::DEFAULT_CAPACITY)]
    pub queue: usize,
    /// Chance per game of a jackpot that locks up as a handpay (0 to 1).
    #[arg(long, value_name = "P", default_value_t = 0.002)]
    pub jackpot_chance: f64,
    /// Announce 200 ms polling in LP A0 instead of 40 ms, as older EGMs do.
    #[arg(long)]
    pub slow_polling: bool,
    /// Write what the simulator generated here, as JSON lines.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Seed for games and faults: the same seed plays the same games.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

/// The fields of one line of `records --json` (the agent's and the hub's).
struct JsonRecord<'a> {
    seq: u64,
    agent: &'a str,
    class: &'a str,
    device: &'a str,
    kind: &'a str,
    wall_ms: i64,
    mono_ms: i64,
    boot_id: &'a str,
    clock_synced: bool,
    payload: &'a str,
}

fn record_json(r: &JsonRecord<'_>) -> serde_json::Value {
    let payload: serde_json::Value = serde_json::from_str(r.payload)
        .unwrap_or_else(|_| serde_json::Value::String(r.payload.to_string()));
    serde_json::json!({
        "seq": r.seq,
        "agent": r.agent,
        "class": r.class,
        "device": r.device,
        "kind": r.kind,
        "time": format_ms(r.wall_ms),
        "time_ms": r.wall_ms,
        "mono_ms": r.mono_ms,
        "boot_id": r.boot_id,
        "clock_synced": r.clock_synced,
        "payload": payload,
    })
}

/// An error for the person at the terminal, with its exit code.
struct Failure {
    code: i32,
    message: String,
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

fn bad_input(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message.trim_end());
            }
            f.code
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed(format!("sitelink: cannot start the async runtime: {e}")))
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    config::load(path).map_err(bad_input)
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run => {
            let cfg = load_config(&cli.config)?;
            let logs = crate::daemon::logging::init(&cfg.agent.log_level);
            // The launcher, before anything else: it may exec another version.
            let ota_version = match crate::ota::launch(&cfg.agent.data_dir, &cfg.update) {
                Ok(v) => v,
                Err(e) => {
                    // A broken OTA state must not stop the agent: the package's version runs.
                    tracing::error!(error = %e, "OTA launcher failed; running the package's version");
                    None
                }
            };
            let code = runtime()?.block_on(crate::daemon::service::run(
                &cli.config,
                cfg,
                logs,
                ota_version,
            ));
            match code {
                0 => Ok(()),
                c => Err(Failure {
                    code: c,
                    message: String::new(),
                }),
            }
        }
        Command::Adb {
            what: AdbCommand::Pubkey,
        } => {
            let cfg = load_config(&cli.config)?;
            let path = cfg.agent.data_dir.join(crate::adb::key::PRIVATE_KEY_FILE);
            let comment = format!("sitelink@{}", cfg.agent.id);
            std::fs::create_dir_all(&cfg.agent.data_dir).map_err(|e| {
                failed(format!(
                    "sitelink adb pubkey: cannot create {}: {e}",
                    cfg.agent.data_dir.display()
                ))
            })?;
            crate::adb::key::load_or_generate(&path, &comment)
                .map_err(|e| failed(format!("sitelink adb pubkey: {e}")))?;
            let public = crate::adb::key::public_key_path(&path);
            let line = std::fs::read_to_string(&public)
                .map_err(|e| failed(format!("sitelink adb pubkey: {}: {e}", public.display())))?;
            println!("{}", line.trim_end());
            Ok(())
        }
        Command::CheckConfig { path } => {
            let cfg = load_config(&path)?;
            println!("{}: ok: {}", path.display(), cfg.summary());
            Ok(())
        }
        Command::Status { json } => {
            let cfg = load_config(&cli.config)?;
            let report = runtime()?
                .block_on(crate::status::gather(&cfg))
                .map_err(|e| failed(format!("sitelink status: {e}")))?;
            if json {
                println!("{}", serde_json::to_string(&report).map_err(failed)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        Command::Records {
            device,
            class,
            kind,
            limit,
            json,
        } => {
            let cfg = load_config(&cli.config)?;
            let reader = Reader::open(&cfg.agent.data_dir.join(DB_FILE))
                .map_err(|e| failed(format!("sitelink records: {e}")))?;
            let records = reader
                .records(&RecordFilter {
                    device,
                    class,
                    kind,
                    limit,
                })
                .map_err(|e| failed(format!("sitelink records: {e}")))?;
            for r in records {
                if json {
                    let line = record_json(&JsonRecord {
                        seq: r.seq,
                        agent: &r.agent,
                        class: r.class.as_str(),
                        device: &r.device,
                        kind: &r.kind,
                        wall_ms: r.wall_ms,
                        mono_ms: r.mono_ms,
                        boot_id: &r.boot_id,
                        clock_synced: r.clock_synced,
                        payload: &r.payload,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{:>16} {}{} {:<10} {:<12} {:<18} {}",
                        r.seq,
                        format_ms(r.wall_ms),
                        if r.clock_synced { " " } else { "?" },
                        r.class.as_str(),
                        r.device,
                        r.kind,
                        r.payload
                    );
                }
            }
            Ok(())
        }
        Command::Command {
            device,
            action,
            args,
            timeout,
        } => {
            let cfg = load_config(&cli.config)?;
            let req = Request::Command {
                device: device.clone(),
                action: action.clone(),
                args,
            };
            let answer = runtime()?
                .block_on(control::call(
                    &cfg.agent.data_dir,
                    &req,
                    Duration::from_secs(timeout),
                ))
                .map_err(|e| failed(format!("sitelink command: {e}")))?;
            match answer {
                Response::Command(reply) => {
                    let id = reply.id.map_or("-".to_string(), |i| i.to_string());
                    let text = format!(
                        "command {id} {device} {action}: {} {}",
                        reply.status.as_str(),
                        reply.detail
                    );
                    match reply.status {
                        CommandStatus::Done => {
                            println!("{text}");
                            Ok(())
                        }
                        CommandStatus::Failed => Err(failed(text)),
                        CommandStatus::Rejected => Err(bad_input(text)),
                    }
                }
                Response::Error { error } => Err(bad_input(format!("sitelink command: {error}"))),
                Response::Pong { .. } | Response::Uplink { .. } => Err(failed(
                    "sitelink command: the daemon answered something else",
                )),
            }
        }
        Command::Demo { duration } => {
            let report = runtime()?
                .block_on(async {
                    let mut out = std::io::stdout();
                    crate::sim::demo::run(Duration::from_secs(duration), &mut out).await
                })
                .map_err(|e| failed(format!("sitelink demo: {e}")))?;
            print!("{}", report.render());
            if report.ok() {
                Ok(())
            } else {
                Err(failed(
                    "sitelink demo: records were lost or delivered twice (see above)",
                ))
            }
        }
        Command::Pki { action } => pki(action),
        Command::Release { action } => release(action),
        Command::Update { file, manifest } => {
            let cfg = load_config(&cli.config)?;
            let manifest = manifest.unwrap_or_else(|| {
                let mut m = file.clone().into_os_string();
                m.push(".json");
                PathBuf::from(m)
            });
            let installed =
                crate::ota::install(&cfg.agent.data_dir, &cfg.update, &manifest, &file, None);
            if let Err(e) = crate::ota::give_to_data_dir_owner(&cfg.agent.data_dir) {
                eprintln!("sitelink update: {e}");
            }
            match installed {
                Ok(m) => {
                    println!(
                        "installed {} in trial; it runs at the next start: systemctl restart sitelink",
                        m.version
                    );
                    Ok(())
                }
                Err(e @ crate::ota::OtaError::Io { .. }) => {
                    Err(failed(format!("sitelink update: {e}")))
                }
                Err(e) => {
                    // For `status` and the journal too: the running daemon
                    // records it as an `update.refused` event.
                    let version = std::fs::read(&manifest)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["version"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "?".into());
                    if let Err(n) =
                        crate::ota::note_refusal(&cfg.agent.data_dir, &version, &e.to_string())
                    {
                        eprintln!("sitelink update: the refusal is not on record: {n}");
                    }
                    if let Err(o) = crate::ota::give_to_data_dir_owner(&cfg.agent.data_dir) {
                        eprintln!("sitelink update: {o}");
                    }
                    Err(bad_input(format!("sitelink update: {e}")))
                }
            }
        }
        Command::Hub(args) => hub(args),
        Command::Sim {
            device: SimCommand::Egm(args),
        } => {
            let cfg = crate::sim::egm::serve::config(args)
                .map_err(|e| bad_input(format!("sitelink sim egm: {e}")))?;
            runtime()?
                .block_on(crate::sim::egm::serve::run(cfg, &mut std::io::stdout()))
                .map_err(|e| match e {
                    crate::sim::egm::ServeError::Config(_) => {
                        bad_input(format!("sitelink sim egm: {e}"))
                    }
                    e => failed(format!("sitelink sim egm: {e}")),
                })
        }
        Command::Sim {
            device: SimCommand::Tv(args),
        } => {
            let cfg = crate::sim::tv::config(args)
                .map_err(|e| bad_input(format!("sitelink sim tv: {e}")))?;
            runtime()?
                .block_on(crate::sim::tv::run(cfg, &mut std::io::stdout()))
                .map_err(|e| match e {
                    crate::sim::tv::SimTvError::Bind { .. }
                    | crate::sim::tv::SimTvError::Io { .. } => {
                        failed(format!("sitelink sim tv: {e}"))
                    }
                    e => bad_input(format!("sitelink sim tv: {e}")),
                })
        }
    }
}

fn release(action: ReleaseCommand) -> Result<(), Failure> {
    use crate::ota::release::{self, ReleaseError};
    let why = |e: ReleaseError| match e {
        ReleaseError::Io { .. } => failed(format!("sitelink release: {e}")),
        e => bad_input(format!("sitelink release: {e}")),
    };
    match action {
        ReleaseCommand::Keygen { out } => {
            let line = release::keygen(&out).map_err(why)?;
            println!("wrote {}", out.join("release.key").display());
            println!("wrote {}", out.join("release.pub").display());
            println!("{line}");
            Ok(())
        }
        ReleaseCommand::Sign {
            key,
            binary,
            version,
            arch,
            out,
        } => {
            let m = release::sign(&key, &binary, &version, &arch, &out).map_err(why)?;
            println!(
                "wrote {}: {} {} {} bytes, key {}",
                out.display(),
                m.version,
                m.arch,
                m.size,
                m.key_id
            );
            Ok(())
        }
    }
}

fn pki(action: PkiCommand) -> Result<(), Failure> {
    use crate::pki::PkiError;
    let written = match action {
        PkiCommand::Init { dir, force } => crate::pki::init(&dir, force),
        PkiCommand::IssueAgent { dir, id, force } => crate::pki::issue_agent(&dir, &id, force),
        PkiCommand::IssueHub { dir, names, force } => crate::pki::issue_hub(&dir, &names, force),
    };
    match written {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Err(
            e @ (PkiError::Exists(_)
            | PkiError::BadId { .. }
            | PkiError::BadName(_)
            | PkiError::NoName
            | PkiError::NoCa(_)),
        ) => Err(bad_input(format!("sitelink pki: {e}"))),
        Err(e) => Err(failed(format!("sitelink pki: {e}"))),
    }
}

fn hub(args: HubArgs) -> Result<(), Failure> {
    use crate::hub::store::{HubFilter, SqliteHub};
    use crate::hub::{ControlRequest, ControlResponse};
    let ask = |data: &Path, req: ControlRequest, what: &str| -> Result<(), Failure> {
        let answer = runtime()?
            .block_on(crate::hub::call(data, &req))
            .map_err(|e| failed(format!("sitelink hub {what}: {e}")))?;
        match answer {
            ControlResponse::Result(o) => {
                let text = format!("{what}: {} {}", status_word(o.status), o.detail);
                match o.status {
                    crate::uplink::proto::Status::Done => {
                        println!("{text}");
                        Ok(())
                    }
                    crate::uplink::proto::Status::Failed => Err(failed(text)),
                    crate::uplink::proto::Status::Rejected => Err(bad_input(text)),
                }
            }
            ControlResponse::Error { error } => {
                Err(failed(format!("sitelink hub {what}: {error}")))
            }
            ControlResponse::Connected { .. } => Err(failed("sitelink hub: unexpected answer")),
        }
    };
    match args.action {
        None => {
            let (Some(listen), Some(pki), Some(data)) = (args.listen, args.pki, args.data) else {
                return Err(bad_input(
                    "sitelink hub: give --listen ADDR --pki DIR --data DIR to serve, or a subcommand (see --help)",
                ));
            };
            crate::daemon::logging::init("info");
            runtime()?
                .block_on(crate::hub::run(crate::hub::HubOptions {
                    listen,
                    pki,
                    data,
                }))
                .map_err(|e| failed(format!("sitelink hub: {e}")))
        }
        Some(HubCommand::Command {
            data,
            agent,
            device,
            action,
            args,
        }) => {
            let what = format!("{agent} {device} {action}");
            let req = ControlRequest::Command {
                agent,
                device,
                action,
                args,
            };
            ask(&data, req, &what)
        }
        Some(HubCommand::PushConfig { data, agent, file }) => {
            let toml = std::fs::read_to_string(&file).map_err(|e| {
                bad_input(format!("sitelink hub push-config: {}: {e}", file.display()))
            })?;
            let what = format!("config for {agent}");
            ask(&data, ControlRequest::Config { agent, toml }, &what)
        }
        Some(HubCommand::OfferUpdate {
            data,
            agent,
            manifest,
            url,
        }) => {
            let m = crate::ota::release::read_manifest(&manifest)
                .map_err(|e| bad_input(format!("sitelink hub offer-update: {e}")))?;
            let what = format!("update {} for {agent}", m.version);
            ask(
                &data,
                ControlRequest::Update {
                    agent,
                    url,
                    manifest: m,
                },
                &what,
            )
        }
        Some(HubCommand::Records {
            data,
            agent,
            device,
            limit,
            json,
        }) => {
            let hub = SqliteHub::open_read(&data)
                .map_err(|e| failed(format!("sitelink hub records: {e}")))?;
            let records = hub
                .records(&HubFilter {
                    agent,
                    device,
                    limit,
                })
                .map_err(|e| failed(format!("sitelink hub records: {e}")))?;
            for r in records {
                if json {
                    let line = record_json(&JsonRecord {
                        seq: r.seq,
                        agent: &r.agent,
                        class: &r.class,
                        device: &r.device,
                        kind: &r.kind,
                        wall_ms: r.time_ms,
                        mono_ms: r.mono_ms,
                        boot_id: &r.boot_id,
                        clock_synced: r.clock_synced,
                        payload: &r.payload,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{:<12} {:>16} {}{} {:<10} {:<12} {:<18} {}",
                        r.agent,
                        r.seq,
                        format_ms(r.time_ms),
                        if r.clock_synced { " " } else { "?" },
                        r.class,
                        r.device,
                        r.kind,
                        r.payload
                    );
                }
            }
            Ok(())
        }
        Some(HubCommand::Agents { data, json }) => {
            let hub = SqliteHub::open_read(&data)
                .map_err(|e| failed(format!("sitelink hub agents: {e}")))?;
            let agents = hub
                .agents()
                .map_err(|e| failed(format!("sitelink hub agents: {e}")))?;
            for a in agents {
                if json {
                    println!("{}", serde_json::to_string(&a).map_err(failed)?);
                } else {
                    println!(
                        "{:<16} last hello {} from {}, {}, {} records ({} repeats ignored), acknowledged up to {}",
                        a.agent,
                        format_ms(a.last_hello_ms),
                        a.peer,
                        a.software,
                        a.records,
                        a.repeats,
                        a.acked_seq
                    );
                }
            }
            Ok(())
        }
    }
}

fn status_word(s: crate::uplink::proto::Status) -> &'static str {
    match s {
        crate::uplink::proto::Status::Done => "done",
        crate::uplink::proto::Status::Failed => "failed",
        crate::uplink::proto::Status::Rejected => "rejected",
    }
}
