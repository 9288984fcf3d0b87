//! Where the hub keeps what arrives: behind `HubStore`, so a fleet can put a
//! server database there later; `SqliteHub` is the one in the box. Records
//! are keyed by (agent, sequence): a repeat is ignored, which makes the
//! agent's resends harmless.

use crate::uplink::proto::{Batch, Hello};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file in the hub's data directory.
pub const HUB_DB: &str = "hub.db";

#[derive(Debug, thiserror::Error)]
pub enum HubStoreError {
    #[error("hub database {path}: {source}")]
    Db {
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
    #[error("no hub database at {0}: start the hub with `sitelink hub --data DIR` first")]
    Missing(PathBuf),
}

/// What storing a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stored {
    /// Records new to the hub.
    pub new: usize,
    /// Records it had already (a resend).
    pub repeats: usize,
}

/// The hub's storage.
pub trait HubStore: Send + 'static {
    /// An agent said hello; returns the sequence number up to which the hub
    /// holds everything the agent sent (its acknowledged point).
    fn hello(&mut self, hello: &Hello, peer: &str) -> Result<u64, HubStoreError>;
    /// Stores a batch that passed `Batch::check`, durably, before the ack.
    /// Moves the agent's acknowledged point to `batch.last`.
    fn store(&mut self, agent: &str, batch: &Batch) -> Result<Stored, HubStoreError>;
    /// A batch was rejected: the acknowledged point moves past it all the same.
    fn skip(&mut self, agent: &str, last: u64) -> Result<(), HubStoreError>;
}

/// One agent as the hub knows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AgentRow {
    pub agent: String,
    pub software: String,
    pub boot_id: String,
    pub first_hello_ms: i64,
    pub last_hello_ms: i64,
    /// The agent's clock at its last hello, and whether it was synchronised.
    pub agent_clock_ms: i64,
    pub clock_synced: bool,
    pub peer: String,
    pub acked_seq: u64,
    pub records: i64,
    pub repeats: i64,
}

/// A stored record, as `sitelink hub records` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HubRecord {
    pub agent: String,
    pub seq: u64,
    pub class: String,
    pub device: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub time_ms: i64,
    pub mono_ms: i64,
    pub boot_id: String,
    pub clock_synced: bool,
    pub est_time_ms: Option<i64>,
    /// When the hub committed it (its clock).
    pub received_ms: i64,
}

/// Which records `records` returns.
#[derive(Clone, Debug, Default)]
pub struct HubFilter {
    pub agent: Option<String>,
    pub device: Option<String>,
    /// The newest this many (they come back oldest first); 0: all.
    pub limit: usize,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    agent TEXT PRIMARY KEY,
    software TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    first_hello_ms INTEGER NOT NULL,
    last_hello_ms INTEGER NOT NULL,
    agent_clock_ms INTEGER NOT NULL,
    clock_synced INTEGER NOT NULL,
    peer TEXT NOT NULL,
    acked_seq INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    repeats INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    agent TEXT NOT NULL,
    seq INTEGER NOT NULL,
    class TEXT NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    mono_ms INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    clock_synced INTEGER NOT NULL,
    est_time_ms INTEGER,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (agent, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_device ON records(device, agent, seq);
";

/// The hub's SQLite file.
pub struct SqliteHub {
    conn: Connection,
    path: PathBuf,
}

impl SqliteHub {
    /// Opens (creating) `DIR/hub.db` for the running hub.
    pub fn open(dir: &Path) -> Result<SqliteHub, HubStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| HubStoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(HUB_DB);
        let db = |source| HubStoreError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        // FULL: an ack promises the records survive a power cut.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(SqliteHub { conn, path })
    }

    /// Opens `DIR/hub.db` to read (CLI, demo, tests) while the hub runs.
    pub fn open_read(dir: &Path) -> Result<SqliteHub, HubStoreError> {
        let path = dir.join(HUB_DB);
        if !path.exists() {
            return Err(HubStoreError::Missing(path));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| HubStoreError::Db {
            path: path.clone(),
            source,
        })?;
        let _ = conn.busy_timeout(Duration::from_secs(5));
        Ok(SqliteHub { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> HubStoreError {
        HubStoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    pub fn agents(&self) -> Result<Vec<AgentRow>, HubStoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT agent, software, boot_id, first_hello_ms, last_hello_ms, agent_clock_ms,
                        clock_synced, peer, acked_seq, records, repeats
                 FROM agents ORDER BY agent",
            )
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| {
            Ok(AgentRow {
                agent: r.get(0)?,
                software: r.get(1)?,
                boot_id: r.get(2)?,
                first_hello_ms: r.get(3)?,
                last_hello_ms: r.get(4)?,
                agent_clock_ms: r.get(5)?,
                clock_synced: r.get(6)?,
                peer: r.get(7)?,
                acked_seq: r.get::<_, i64>(8)? as u64,
                records: r.get(9)?,
                repeats: r.get(10)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The newest records matching the filter, oldest first.
    pub fn records(&self, f: &HubFilter) -> Result<Vec<HubRecord>, HubStoreError> {
        let limit = if f.limit == 0 { -1 } else { f.limit as i64 };
        let mut st = self
            .conn
            .prepare(
                "SELECT agent, seq, class, device, kind, payload, time_ms, mono_ms, boot_id,
                        clock_synced, est_time_ms, received_ms
                 FROM records
                 WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR device = ?2)
                 ORDER BY received_ms DESC, agent DESC, seq DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut out: Vec<HubRecord> = st
            .query_map(params![f.agent, f.device, limit], |r| {
                Ok(HubRecord {
                    agent: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    class: r.get(2)?,
                    device: r.get(3)?,
                    kind: r.get(4)?,
                    payload: r.get(5)?,
                    time_ms: r.get(6)?,
                    mono_ms: r.get(7)?,
                    boot_id: r.get(8)?,
                    clock_synced: r.get(9)?,
                    est_time_ms: r.get(10)?,
                    received_ms: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        out.reverse();
        Ok(out)
    }

    /// How many records the hub holds of `agent`.
    pub fn count(&self, agent: &str) -> Result<i64, HubStoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM records WHERE agent = ?1",
                [agent],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn acked(&self, agent: &str) -> Result<u64, HubStoreError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT acked_seq FROM agents WHERE agent = ?1",
                [agent],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.unwrap_or(0) as u64)
    }
}

impl HubStore for SqliteHub {
    fn hello(&mut self, h: &Hello, peer: &str) -> Result<u64, HubStoreError> {
        let now = crate::clock::wall_ms();
        self.conn
            .execute(
                "INSERT INTO agents(agent, software, boot_id, first_hello_ms, last_hello_ms,
                                    agent_clock_ms, clock_synced, peer)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)
                 ON CONFLICT(agent) DO UPDATE SET software = excluded.software,
                     boot_id = excluded.boot_id, last_hello_ms = excluded.last_hello_ms,
                     agent_clock_ms = excluded.agent_clock_ms,
                     clock_synced = excluded.clock_synced, peer = excluded.peer",
                params![
                    h.agent,
                    h.software,
                    h.boot_id,
                    now,
                    h.clock_ms,
                    h.clock_synced,
                    peer
                ],
            )
            .map_err(|e| self.err(e))?;
        self.acked(&h.agent)
    }

    fn store(&mut self, agent: &str, batch: &Batch) -> Result<Stored, HubStoreError> {
        let path = self.path.clone();
        let db = |source| HubStoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        let now = crate::clock::wall_ms();
        let mut stored = Stored::default();
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records(agent, seq, class, device, kind, payload,
                         time_ms, mono_ms, boot_id, clock_synced, est_time_ms, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(db)?;
            for r in &batch.records {
                let n = ins
                    .execute(params![
                        agent,
                        r.seq as i64,
                        r.class,
                        r.device,
                        r.kind,
                        r.payload.get(),
                        r.time_ms,
                        r.mono_ms,
                        r.boot_id,
                        r.clock_synced,
                        r.est_time_ms,
                        now
                    ])
                    .map_err(db)?;
                if n == 1 {
                    stored.new += 1;
                } else {
                    stored.repeats += 1;
                }
            }
        }
        tx.execute(
            "UPDATE agents SET acked_seq = max(acked_seq, ?2), records = records + ?3,
                 repeats = repeats + ?4 WHERE agent = ?1",
            params![
                agent,
                batch.last as i64,
                stored.new as i64,
                stored.repeats as i64
            ],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(stored)
    }

    fn skip(&mut self, agent: &str, last: u64) -> Result<(), HubStoreError> {
        self.conn
            .execute(
                "UPDATE agents SET acked_seq = max(acked_seq, ?2) WHERE agent = ?1",
                params![agent, last as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
