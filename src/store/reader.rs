//! Read-only queries on their own connection: the outbox, `records`, `status`.

use super::schema::open_for_reading;
use super::{Class, Record, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

const RECORD_COLUMNS: &str =
    "r.seq, a.name, r.class, r.device, r.kind, r.payload, r.wall_ms, r.mono_ms, b.boot_id, r.synced
     FROM records r JOIN agents a ON a.id = r.agent JOIN boots b ON b.id = r.boot";

/// A read-only connection to the database.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

/// Which records `Reader::records` returns.
#[derive(Clone, Debug, Default)]
pub struct RecordFilter {
    pub device: Option<String>,
    pub class: Option<Class>,
    pub kind: Option<String>,
    /// The newest this many (they come back oldest first).
    pub limit: usize,
}

/// Per class: what is kept, what waits for the upstream, what was lost.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassStatus {
    pub class: Class,
    pub rows: i64,
    pub bytes: i64,
    /// Records not yet acknowledged by the upstream.
    pub backlog: i64,
    /// Records dropped, all reasons.
    pub dropped: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DropRow {
    pub device: String,
    pub class: Class,
    pub reason: String,
    pub count: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_ms: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceRow {
    pub device: String,
    pub last_seen_ms: i64,
    /// The device's latest state as JSON, if it reported one.
    pub state: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CommandRow {
    pub id: i64,
    pub device: String,
    pub action: String,
    pub args: Vec<String>,
    pub source: String,
    /// `dispatched`, `done` or `failed`.
    pub state: String,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub result: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QuarantineRow {
    pub path: String,
    pub reason: String,
    pub at_ms: i64,
}

/// What `sitelink status` shows of the store.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoreStatus {
    pub db_path: PathBuf,
    pub db_bytes: u64,
    pub classes: Vec<ClassStatus>,
    /// Everything up to this sequence number is acknowledged by the upstream.
    pub acked_seq: u64,
    /// When the upstream last acknowledged (agent's wall clock).
    pub last_ack_ms: Option<i64>,
    pub oldest_undelivered: Option<Record>,
    pub newest: Option<Record>,
    pub next_seq: u64,
    pub epoch: u64,
    pub drops: Vec<DropRow>,
    pub devices: Vec<DeviceRow>,
    pub quarantined: Vec<QuarantineRow>,
}

fn record_from(row: &Row<'_>) -> rusqlite::Result<Record> {
    let class: i64 = row.get(2)?;
    Ok(Record {
        seq: row.get::<_, i64>(0)? as u64,
        agent: row.get(1)?,
        class: Class::from_code(class)
            .ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(2, class))?,
        device: row.get(3)?,
        kind: row.get(4)?,
        payload: row.get(5)?,
        wall_ms: row.get(6)?,
        mono_ms: row.get(7)?,
        boot_id: row.get(8)?,
        clock_synced: row.get(9)?,
    })
}

fn json_or_text(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

impl Reader {
    pub fn open(db_path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: open_for_reading(db_path)?,
            path: db_path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, e)
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Everything up to this sequence number is acknowledged.
    pub fn acked(&self) -> Result<u64, StoreError> {
        Ok(self.meta("acked_seq")?.unwrap_or(0) as u64)
    }

    /// The highest sequence number stored (0: none).
    pub fn highest_seq(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|s| s as u64)
            .map_err(|e| self.err(e))
    }

    /// The outbox: up to `limit` records with `seq > after`, in order.
    pub fn read_batch(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} WHERE r.seq > ?1 ORDER BY r.seq LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        st.query_map(params![after as i64, limit as i64], record_from)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The newest records matching the filter, oldest first.
    pub fn records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {RECORD_COLUMNS}
                 WHERE (?1 IS NULL OR r.device = ?1) AND (?2 IS NULL OR r.class = ?2)
                   AND (?3 IS NULL OR r.kind = ?3)
                 ORDER BY r.seq DESC LIMIT ?4"
            ))
            .map_err(|e| self.err(e))?;
        let mut out: Vec<Record> = st
            .query_map(
                params![f.device, f.class.map(Class::code), f.kind, f.limit as i64],
                record_from,
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        out.reverse();
        Ok(out)
    }

    /// Records kept whose wall clock was not synchronised when taken.
    pub fn unsynced_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM records WHERE synced = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT device, last_seen_ms, state FROM device_state ORDER BY device")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| {
            Ok(DeviceRow {
                device: r.get(0)?,
                last_seen_ms: r.get(1)?,
                state: r.get::<_, Option<String>>(2)?.map(json_or_text),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The newest `limit` commands, newest first.
    pub fn commands(&self, limit: usize) -> Result<Vec<CommandRow>, StoreError> {
        self.query_commands("ORDER BY id DESC LIMIT ?1", params![limit as i64])
    }

    pub fn command(&self, id: i64) -> Result<Option<CommandRow>, StoreError> {
        Ok(self
            .query_commands("WHERE id = ?1", params![id])?
            .into_iter()
            .next())
    }

    fn query_commands(
        &self,
        tail: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT id, device, action, args, source, state, created_ms, finished_ms, result
                 FROM commands {tail}"
            ))
            .map_err(|e| self.err(e))?;
        st.query_map(p, |r| {
            let args: String = r.get(3)?;
            Ok(CommandRow {
                id: r.get(0)?,
                device: r.get(1)?,
                action: r.get(2)?,
                args: serde_json::from_str(&args).unwrap_or_default(),
                source: r.get(4)?,
                state: r.get(5)?,
                created_ms: r.get(6)?,
                finished_ms: r.get(7)?,
                result: r.get::<_, Option<String>>(8)?.map(json_or_text),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let e = |e| self.err(e);
        let acked = self.acked()?;
        let drops: Vec<DropRow> = {
            let mut st = self
                .conn
                .prepare(
                    "SELECT device, class, reason, count, first_seq, last_seq, last_ms
                     FROM drops ORDER BY device, class, reason",
                )
                .map_err(e)?;
            st.query_map([], |r| {
                let class: i64 = r.get(1)?;
                Ok(DropRow {
                    device: r.get(0)?,
                    class: Class::from_code(class)
                        .ok_or(rusqlite::Error::IntegralValueOutOfRange(1, class))?,
                    reason: r.get(2)?,
                    count: r.get(3)?,
                    first_seq: r.get::<_, i64>(4)? as u64,
                    last_seq: r.get::<_, i64>(5)? as u64,
                    last_ms: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(e)?
        };
        let mut classes = Vec::new();
        for c in Class::ALL {
            let (rows, bytes): (i64, i64) = self
                .conn
                .query_row(
                    "SELECT rows, bytes FROM class_stats WHERE class = ?1",
                    [c.code()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(e)?;
            let backlog: i64 = self
                .conn
                .query_row(
                    "SELECT count(*) FROM records WHERE class = ?1 AND seq > ?2",
                    params![c.code(), acked as i64],
                    |r| r.get(0),
                )
                .map_err(e)?;
            classes.push(ClassStatus {
                class: c,
                rows,
                bytes,
                backlog,
                dropped: drops.iter().filter(|d| d.class == c).map(|d| d.count).sum(),
            });
        }
        let first_after = |after: u64, desc: bool| -> Result<Option<Record>, StoreError> {
            let order = if desc { "DESC" } else { "ASC" };
            self.conn
                .query_row(
                    &format!(
                        "SELECT {RECORD_COLUMNS} WHERE r.seq > ?1 ORDER BY r.seq {order} LIMIT 1"
                    ),
                    [after as i64],
                    record_from,
                )
                .optional()
                .map_err(e)
        };
        let quarantined = {
            let mut st = self
                .conn
                .prepare("SELECT path, reason, at_ms FROM quarantine ORDER BY at_ms")
                .map_err(e)?;
            st.query_map([], |r| {
                Ok(QuarantineRow {
                    path: r.get(0)?,
                    reason: r.get(1)?,
                    at_ms: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(e)?
        };
        let page_count: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(e)?;
        let page_size: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(e)?;
        Ok(StoreStatus {
            db_path: self.path.clone(),
            db_bytes: (page_count * page_size).max(0) as u64,
            classes,
            acked_seq: acked,
            last_ack_ms: self.meta("acked_ms")?,
            oldest_undelivered: first_after(acked, false)?,
            newest: first_after(0, true)?,
            next_seq: self.meta("next_seq")?.unwrap_or(0) as u64,
            epoch: self.meta("epoch")?.unwrap_or(0) as u64,
            drops,
            devices: self.devices()?,
            quarantined,
        })
    }
}
