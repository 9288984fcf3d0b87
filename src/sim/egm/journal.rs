//! What the simulator generated, so that a test can hold the host's store
//! against it: every exception with its per-EGM sequence number, what became
//! of it (acknowledged, dropped on overflow), the meters after each game, the
//! commands obeyed and the faults injected. Written as JSON lines, one write
//! per line so a reader never sees half an entry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::model::Meters;

/// A fault the simulator injected into one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The poll was lost: no reply, no effect.
    NoReply,
    /// The reply went out with a bad CRC.
    Corrupt,
    /// The reply went out after the host's reply window.
    Slow,
    /// The EGM went silent (cable pulled) for the plan's period.
    Unplug,
}

/// One journal line. `t_ms` counts from the start of the line (the
/// simulator's start), on its monotonic clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// Raised into the queue (or the priority set).
    Exception {
        address: u8,
        seq: u64,
        t_ms: u64,
        code: u8,
        name: String,
        /// Games played when it was raised.
        games: u64,
    },
    /// Removed by the host's implied ACK. `intact` = the last transmission
    /// of it was on time with a good CRC, so the host has it unless it threw
    /// a good reply away.
    Acked {
        address: u8,
        seq: u64,
        t_ms: u64,
        intact: bool,
    },
    /// Lost on queue overrun (70 follows).
    Dropped { address: u8, seq: u64, t_ms: u64 },
    /// A game finished; the meters include everything it moved.
    Game {
        address: u8,
        t_ms: u64,
        bet: u64,
        win: u64,
        handpay: bool,
        meters: Meters,
    },
    /// A long poll the EGM obeyed: lock, unlock, sound-off, sound-on,
    /// bills-on, bills-off, rte-on, rte-off.
    Command {
        address: u8,
        t_ms: u64,
        command: String,
    },
    Fault {
        address: u8,
        t_ms: u64,
        fault: FaultKind,
        /// The poll it hit, as a technician reads it.
        poll: String,
    },
    /// The EGM stopped or resumed hearing the line (silent unplug).
    Silent {
        address: u8,
        t_ms: u64,
        silent: bool,
    },
    /// No poll for 5 s: the EGM chirps and must be synced again.
    LoopBreak { address: u8, t_ms: u64 },
    /// The whole device went away or came back (PTY closed, TCP port shut).
    Unplug { t_ms: u64, unplugged: bool },
}

/// The journal file.
#[derive(Debug)]
pub struct JournalFile {
    file: File,
}

impl JournalFile {
    /// Creates or truncates the file.
    pub fn create(path: &Path) -> std::io::Result<JournalFile> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(JournalFile { file })
    }

    /// Appends entries, one `write` per line (the file is unbuffered, so
    /// each line is in the kernel when this returns).
    pub fn write(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        for e in entries {
            let mut line = serde_json::to_string(e)?;
            line.push('\n');
            self.file.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

/// Reads a journal back (for tests and tools); a bad line is an error.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::from))
        .collect()
}
