//! The database file: opening it, checking it, moving a broken one aside, and
//! the schema migrations (`PRAGMA user_version`).

use super::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Each entry brings the schema from version `i` to `i + 1`. Append only:
/// a released migration never changes.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE boots (id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY,
    class INTEGER NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    mono_ms INTEGER NOT NULL,
    boot INTEGER NOT NULL REFERENCES boots(id),
    synced INTEGER NOT NULL,
    agent INTEGER NOT NULL REFERENCES agents(id)
);
CREATE INDEX records_by_class ON records(class, seq);
CREATE TABLE class_stats (class INTEGER PRIMARY KEY, rows INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO class_stats VALUES (0, 0, 0), (1, 0, 0), (2, 0, 0);
CREATE TABLE drops (
    device TEXT NOT NULL,
    class INTEGER NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (device, class, reason)
);
CREATE TABLE device_state (device TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL, state TEXT);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    result TEXT
);
CREATE TABLE quarantine (path TEXT NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
"#];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long the start-up integrity check may take before it is cut short:
/// a Pi with a large database on an SD card must still start promptly.
const QUICK_CHECK_BUDGET: Duration = Duration::from_secs(3);

/// A database file moved aside because it could not be used.
#[derive(Clone, Debug, PartialEq)]
pub struct Quarantined {
    pub path: PathBuf,
    pub reason: String,
}

/// Opens (creating if needed) the database for writing, checks it, and moves
/// it aside for a fresh one if it is corrupt. Errors that are not corruption
/// (permissions, a missing directory, a newer schema) are returned: those
/// files are fine and must not be touched.
pub fn open_for_writing(path: &Path) -> Result<(Connection, Option<Quarantined>), StoreError> {
    match open_checked(path) {
        Ok(conn) => Ok((conn, None)),
        Err(OpenFailure::Corrupt(reason)) => {
            let moved = quarantine(path)?;
            let conn = open_checked(path).map_err(|f| f.into_error(path))?;
            Ok((
                conn,
                Some(Quarantined {
                    path: moved,
                    reason,
                }),
            ))
        }
        Err(other) => Err(other.into_error(path)),
    }
}

/// A read-only connection for queries (`status`, `records`, the outbox reader).
pub fn open_for_reading(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::sqlite(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::sqlite(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, e))?;
    if version == 0 {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

enum OpenFailure {
    Corrupt(String),
    Other(rusqlite::Error),
    NewerSchema(i64),
}

impl OpenFailure {
    fn into_error(self, path: &Path) -> StoreError {
        match self {
            OpenFailure::Corrupt(reason) => StoreError::Corrupt {
                path: path.to_path_buf(),
                reason,
            },
            OpenFailure::Other(e) => StoreError::sqlite(path, e),
            OpenFailure::NewerSchema(found) => StoreError::NewerSchema {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            },
        }
    }
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(e: rusqlite::Error) -> OpenFailure {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                OpenFailure::Corrupt(e.to_string())
            }
            _ => OpenFailure::Other(e),
        }
    }
}

fn open_checked(path: &Path) -> Result<Connection, OpenFailure> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL lets readers work beside the writer; FULL makes every commit durable
    // across a power cut, which is what "taken" means here.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFailure::Other(rusqlite::Error::InvalidParameterName(
            format!("journal_mode is {mode}, WAL is needed"),
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;",
    )?;
    quick_check(&mut conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// `PRAGMA quick_check`, cut short after `QUICK_CHECK_BUDGET`: a check that
/// ran out of time counts as passed (the next start checks again).
fn quick_check(conn: &mut Connection) -> Result<(), OpenFailure> {
    let started = Instant::now();
    conn.progress_handler(10_000, Some(move || started.elapsed() > QUICK_CHECK_BUDGET))?;
    let result: Result<Vec<String>, rusqlite::Error> = conn
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
    conn.progress_handler(0, None::<fn() -> bool>)?;
    match result {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(()),
        Ok(lines) => Err(OpenFailure::Corrupt(format!(
            "integrity check failed: {}",
            lines.join("; ")
        ))),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
            tracing::warn!(
                budget_s = QUICK_CHECK_BUDGET.as_secs(),
                "database integrity check did not finish in time; skipped this start"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), OpenFailure> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(OpenFailure::NewerSchema(version));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Moves the database and its WAL and shared-memory files aside as
/// `NAME.corrupt-TIME` (never deleting them) and returns the new path.
fn quarantine(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = crate::clock::format_ms(crate::clock::wall_ms()).replace(':', "");
    let target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    std::fs::rename(path, &target).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let moved = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::rename(&side, &moved).map_err(|e| StoreError::Io {
                path: side.clone(),
                source: e,
            })?;
        }
    }
    tracing::error!(
        path = %path.display(),
        moved_to = %target.display(),
        "the database was unusable; it was moved aside and a fresh one started"
    );
    Ok(target)
}
