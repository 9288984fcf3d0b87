//! The Android TV simulator: TVs that speak real ADB (the device side of
//! `adb::proto`), with RSA auth, shell v1/v2, `exec:`, `sync:` and
//! `reboot:`, and a TV's state that the agent's commands change and its
//! telemetry reads, in output shaped like Android's.
//!
//! In-process (tests, the demo, the benchmark):
//!
//! ```no_run
//! use sitelink::sim::tv::{TvSimConfig, spawn};
//! let tvs = spawn(TvSimConfig::new("127.0.0.1:0".parse().unwrap(), 3)).unwrap();
//! let addrs = tvs.addrs();          // one listener per TV
//! let state = tvs.state(0);         // power, volume, app, input, uptime, …
//! tvs.stop();                       // or drop it
//! ```
//!
//! From the command line: `sitelink sim tv --listen ADDR [--count N] …`
//! ([`run`]), which prints `ready tv ADDR1 ADDR2 …` and runs until SIGTERM.
//!
//! - [`serve`]: listeners, connections, faults, the handle.
//! - [`model`]: one TV's state and what changes it.
//! - [`sh`] and [`commands`]: the shell and the programs it finds.
//! - [`android`]: the state printed as Android prints it.
//! - [`filesync`]: the `sync:` service; [`fs`]: the files it serves.
//! - [`png`]: `screencap -p`'s image.

pub mod android;
pub mod commands;
pub mod filesync;
pub mod fs;
pub mod model;
pub mod png;
pub mod serve;
pub mod sh;

pub use model::{LAUNCHER, LIVE_TV, TvState};
pub use serve::{
    Auth, Fault, FaultPlan, SimTvError, SimTvs, TvConfig, TvSimConfig, parse_ready_line, run, spawn,
};

use std::time::Duration;

use crate::adb::proto::AndroidPublicKey;

/// The configuration `sitelink sim tv` describes.
pub fn config(args: crate::cli::SimTvArgs) -> Result<TvSimConfig, SimTvError> {
    if args.count == 0 {
        return Err(SimTvError::NoTvs);
    }
    let secs = |what: &'static str, secs: f64| {
        Duration::try_from_secs_f64(secs).map_err(|_| SimTvError::Duration { what, secs })
    };
    let mut trusted = Vec::new();
    for path in &args.trust {
        let line = std::fs::read(path).map_err(|e| SimTvError::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let (key, _) = AndroidPublicKey::parse_line(&line).map_err(|e| SimTvError::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        trusted.push(key);
    }
    let tv = TvConfig {
        auth: if args.unauthorized {
            Auth::Deny
        } else {
            Auth::Allow
        },
        legacy: args.legacy,
        trusted,
        ..TvConfig::default()
    };
    Ok(TvSimConfig {
        listen: args.listen,
        tvs: vec![tv; args.count],
        faults: FaultPlan {
            drop_every: args
                .drop_every
                .map(|s| secs("--drop-every", s))
                .transpose()?,
            stall_every: args
                .stall_every
                .map(|s| secs("--stall-every", s))
                .transpose()?,
            stall_for: args
                .stall_for
                .map(|s| secs("--stall-for", s))
                .transpose()?
                .unwrap_or_default(),
            slow: Duration::from_millis(args.slow_ms),
        },
        seed: args.seed,
        reboot_downtime: secs("--reboot-secs", args.reboot_secs)?,
    })
}
