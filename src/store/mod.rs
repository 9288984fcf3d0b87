//! The durable store: one SQLite file under `data_dir`.
//!
//! One writer thread owns the write connection. Producers hand records over a
//! bounded channel and get their sequence numbers back only after the
//! transaction holding them has committed (group commit: when
//! `commit_records` wait or `commit_window` has passed, whichever is first).
//! Readers (`Reader`) open their own read-only connections.
//!
//! Besides records the store keeps the outbox cursor (what the upstream has
//! acknowledged), per-device state, the command table, drop counters and the
//! list of quarantined files.

mod reader;
mod record;
mod schema;
mod space;
mod writer;

pub use reader::{ClassStatus, CommandRow, DeviceRow, DropRow, Reader, RecordFilter, StoreStatus};
pub use record::{Class, EPOCH_SHIFT, NewRecord, Record, UnknownClass, epoch_of};
pub use schema::{Quarantined, SCHEMA_VERSION};
pub use writer::GAP_KIND;

use crate::config::{Quotas, StoreConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// The file name of the database inside `data_dir`.
pub const DB_FILE: &str = "sitelink.db";

/// The device name the store uses for its own records (alarms, gaps).
pub const STORE_DEVICE: &str = "store";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "database {path} has schema version {found}, newer than this sitelink knows ({known}): \
         it was written by a newer release; install that release again or move the file aside"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "no database at {0} yet: the daemon creates it when it first starts (systemctl start sitelink)"
    )]
    Missing(PathBuf),
    #[error("the store is shut down")]
    Closed,
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How the writer batches and what it keeps: the `[store]` section in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub commit_records: usize,
    pub commit_window: Duration,
    pub quota: Quotas,
    pub min_free_bytes: u64,
    pub retention: Duration,
}

impl From<&StoreConfig> for Policy {
    fn from(c: &StoreConfig) -> Policy {
        Policy {
            commit_records: c.commit_records,
            commit_window: c.commit_window,
            quota: c.quota,
            min_free_bytes: c.min_free_bytes,
            retention: c.retention,
        }
    }
}

/// What `Store::open` needs.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    pub agent_id: String,
    pub boot_id: String,
    pub policy: Policy,
    /// Messages that may wait for the writer before producers are made to wait.
    pub channel_capacity: usize,
}

/// Liveness and state of the writer thread, read by the daemon's watchdog.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// CLOCK_BOOTTIME ms of the writer's last loop turn.
    last_beat_ms: AtomicI64,
    /// The last commit failed for lack of space and the writer is retrying.
    disk_full: AtomicBool,
    /// A never-drop class is over its quota and producers are being slowed.
    throttled: AtomicBool,
}

impl WriterHealth {
    fn beat(&self) {
        self.last_beat_ms
            .store(crate::clock::mono_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the writer last came round its loop.
    pub fn silent_for_ms(&self) -> i64 {
        crate::clock::mono_ms() - self.last_beat_ms.load(Ordering::Relaxed)
    }

    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// The device did it.
    Done,
    /// The device was asked and could not do it (or did not answer).
    Failed,
    /// The request itself was wrong: unknown device, action or arguments.
    Rejected,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
            CommandStatus::Rejected => "rejected",
        }
    }
}

/// A command's outcome as the device task (or the dispatcher) reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandOutcome {
    pub status: CommandStatus,
    /// What the device said or did (output, exit code) or why it failed.
    pub detail: serde_json::Value,
}

impl CommandOutcome {
    pub fn done(detail: serde_json::Value) -> CommandOutcome {
        CommandOutcome {
            status: CommandStatus::Done,
            detail,
        }
    }

    pub fn failed(error: impl Into<String>) -> CommandOutcome {
        CommandOutcome {
            status: CommandStatus::Failed,
            detail: serde_json::json!({ "error": error.into() }),
        }
    }

    pub fn rejected(error: impl Into<String>) -> CommandOutcome {
        CommandOutcome {
            status: CommandStatus::Rejected,
            detail: serde_json::json!({ "error": error.into() }),
        }
    }
}

/// Where the writer sends a caller's result after COMMIT.
type Done<T> = oneshot::Sender<Result<T, StoreError>>;

/// A command as the writer records it.
struct NewCommand {
    device: String,
    action: String,
    args: String,
    source: String,
    done: Done<i64>,
}

enum Msg {
    Append {
        records: Vec<NewRecord>,
        /// Commit without waiting for the group to fill.
        now: bool,
        done: Done<Vec<u64>>,
    },
    Ack {
        up_to: u64,
        done: Done<()>,
    },
    DeviceState {
        device: String,
        state: String,
    },
    CommandNew(NewCommand),
    CommandDone {
        id: i64,
        outcome: CommandOutcome,
        done: Done<()>,
    },
    SetPolicy(Policy),
    /// Number every record from now on above `seq`.
    MovePast {
        seq: u64,
        done: Done<u64>,
    },
    Trim {
        done: Done<u64>,
    },
    Shutdown,
}

/// The open store: the writer thread and how to reach it.
pub struct Store {
    handle: StoreHandle,
    thread: Option<JoinHandle<()>>,
    health: Arc<WriterHealth>,
    db_path: PathBuf,
    quarantined: Option<Quarantined>,
}

impl Store {
    /// Opens the database in `data_dir` (creating it), runs the start-up
    /// check and starts the writer thread.
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| StoreError::Io {
            path: opts.data_dir.clone(),
            source: e,
        })?;
        let db_path = opts.data_dir.join(DB_FILE);
        let (conn, quarantined) = schema::open_for_writing(&db_path)?;
        let health = Arc::new(WriterHealth::default());
        health.beat();
        let (tx, rx) = flume::bounded(opts.channel_capacity.max(1));
        let writer =
            writer::Writer::new(conn, &opts, &db_path, quarantined.clone(), health.clone())?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io {
                path: db_path.clone(),
                source: e,
            })?;
        Ok(Store {
            handle: StoreHandle { tx },
            thread: Some(thread),
            health,
            db_path,
            quarantined,
        })
    }

    /// A handle for producers; cheap to clone.
    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    pub fn health(&self) -> Arc<WriterHealth> {
        self.health.clone()
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The file moved aside at this open, if the database was unusable.
    pub fn quarantined(&self) -> Option<&Quarantined> {
        self.quarantined.as_ref()
    }

    /// A new read-only connection.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.db_path)
    }

    /// Commits everything already handed to the writer and stops it. Sends
    /// that arrive later fail with `StoreError::Closed`.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.tx.send(Msg::Shutdown);
            if thread.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How producers and the uplink talk to the writer. Every call returns only
/// after the change is committed to disk.
#[derive(Clone)]
pub struct StoreHandle {
    tx: flume::Sender<Msg>,
}

impl StoreHandle {
    async fn call<T>(&self, make: impl FnOnce(Done<T>) -> Msg) -> Result<T, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send_async(make(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn call_blocking<T>(&self, make: impl FnOnce(Done<T>) -> Msg) -> Result<T, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx.send(make(done)).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Stores one record; returns its sequence number once committed.
    pub async fn append(&self, record: NewRecord) -> Result<u64, StoreError> {
        let seqs = self.append_batch(vec![record]).await?;
        seqs.first().copied().ok_or(StoreError::Closed)
    }

    /// Stores several records in one message (they commit together).
    pub async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        self.call(|done| Msg::Append {
            records,
            now: false,
            done,
        })
        .await
    }

    /// `append_batch` for a producer that holds its device until the commit
    /// (a SAS line: its next poll acknowledges what these records hold). The
    /// group commits as soon as this arrives, with whatever else is waiting.
    pub async fn append_batch_now(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        self.call(|done| Msg::Append {
            records,
            now: true,
            done,
        })
        .await
    }

    /// `append_batch` for threads outside the async runtime.
    pub fn append_batch_blocking(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        self.call_blocking(|done| Msg::Append {
            records,
            now: false,
            done,
        })
    }

    /// The upstream has stored everything up to and including `up_to`.
    pub async fn ack(&self, up_to: u64) -> Result<(), StoreError> {
        self.call(|done| Msg::Ack { up_to, done }).await
    }

    /// `ack` for threads outside the async runtime.
    pub fn ack_blocking(&self, up_to: u64) -> Result<(), StoreError> {
        self.call_blocking(|done| Msg::Ack { up_to, done })
    }

    /// Deletes acknowledged records older than the retention now, instead of
    /// at the writer's next idle moment; returns how many went.
    pub async fn trim(&self) -> Result<u64, StoreError> {
        self.call(|done| Msg::Trim { done }).await
    }

    /// `trim` for threads outside the async runtime.
    pub fn trim_blocking(&self) -> Result<u64, StoreError> {
        self.call_blocking(|done| Msg::Trim { done })
    }

    /// The device's latest state (JSON text), committed with the next group.
    pub async fn set_device_state(&self, device: &str, state: String) -> Result<(), StoreError> {
        self.tx
            .send_async(Msg::DeviceState {
                device: device.to_string(),
                state,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Records a new command (state `pending`) and returns its id.
    pub async fn command_new(
        &self,
        device: &str,
        action: &str,
        args: &[String],
        source: &str,
    ) -> Result<i64, StoreError> {
        let args = serde_json::to_string(args).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.call(|done| {
            Msg::CommandNew(NewCommand {
                device: device.to_string(),
                action: action.to_string(),
                args,
                source: source.to_string(),
                done,
            })
        })
        .await
    }

    /// Records a command's outcome.
    pub async fn command_done(&self, id: i64, outcome: CommandOutcome) -> Result<(), StoreError> {
        self.call(|done| Msg::CommandDone { id, outcome, done })
            .await
    }

    /// Numbers every record from now on above `seq`, in a new epoch: the
    /// upstream holds records of this agent up to `seq` that this store does
    /// not (a restored data directory), and a repeat of a number would be
    /// taken as a resend. Returns the next sequence number.
    pub async fn move_past(&self, seq: u64) -> Result<u64, StoreError> {
        self.call(|done| Msg::MovePast { seq, done }).await
    }

    /// Applies a changed `[store]` section (quotas, commit window) at once.
    pub async fn set_policy(&self, policy: Policy) -> Result<(), StoreError> {
        self.tx
            .send_async(Msg::SetPolicy(policy))
            .await
            .map_err(|_| StoreError::Closed)
    }
}
