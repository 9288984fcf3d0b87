//! The writer thread: the only code that writes the database.

use super::record::{EPOCH_SHIFT, ROW_OVERHEAD};
use super::schema::Quarantined;
use super::{
    Class, CommandOutcome, Done, Msg, NewCommand, NewRecord, Policy, STORE_DEVICE, StoreError,
    StoreOptions, WriterHealth,
};
use crate::clock::{self, Stamp};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a technician reads when events or accounting fill their quota.
const QUOTA_HINT: &str = "nothing is dropped: producers are slowed until the upstream takes records; \
     check the uplink or raise [store.quota]";
/// The kind of the record the store writes for a loss.
pub const GAP_KIND: &str = "gap";
/// How long the writer sleeps waiting for work before it beats and tidies up.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How often retention trimming runs when the writer is idle.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);
/// Rows deleted per statement when trimming, so a trim never holds the writer long.
const TRIM_CHUNK: i64 = 5000;
/// The pause after each commit while a never-drop class is over its quota:
/// producers wait on their completions and so slow down.
const THROTTLE: Duration = Duration::from_millis(100);
/// A class over quota is "back to normal" below this share of its quota.
const QUOTA_CLEAR: f64 = 0.9;
/// How long a commit may be retried for lack of space once shutdown was asked for.
const SHUTDOWN_RETRY: Duration = Duration::from_secs(3);
/// WAL frames one transaction may add beyond the auto-checkpoint size before
/// the checkpoint runs (a group of `commit_records` rows with its index and
/// interior pages).
const WAL_SLACK_PAGES: u64 = 128;
/// How often the writer tries to set the reserve aside again while it is missing.
const RESERVE_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default)]
struct Stat {
    rows: i64,
    bytes: i64,
}

/// One group of messages that commits as one transaction.
#[derive(Default)]
struct Batch {
    records: Vec<NewRecord>,
    appends: Vec<(usize, Done<Vec<u64>>)>,
    acks: Vec<(u64, Done<()>)>,
    states: BTreeMap<String, String>,
    commands_new: Vec<NewCommand>,
    commands_done: Vec<(i64, CommandOutcome, Done<()>)>,
    trims: Vec<Done<u64>>,
    move_past: Vec<(u64, Done<u64>)>,
    /// A producer asked not to wait for the group to fill.
    now: bool,
    shutdown: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        // An append of no records still waits for its (empty) answer.
        self.records.is_empty()
            && self.appends.is_empty()
            && self.acks.is_empty()
            && self.states.is_empty()
            && self.commands_new.is_empty()
            && self.commands_done.is_empty()
            && self.trims.is_empty()
            && self.move_past.is_empty()
    }

    fn wants_commit_now(&self) -> bool {
        // An ack or a trim has one waiter (the uplink) and nothing to group with.
        self.shutdown
            || self.now
            || !self.trims.is_empty()
            || !self.acks.is_empty()
            || !self.move_past.is_empty()
    }

    fn fail(self, err: impl Fn() -> StoreError) {
        for (_, done) in self.appends {
            let _ = done.send(Err(err()));
        }
        for (_, done) in self.acks {
            let _ = done.send(Err(err()));
        }
        for c in self.commands_new {
            let _ = c.done.send(Err(err()));
        }
        for (.., done) in self.commands_done {
            let _ = done.send(Err(err()));
        }
        for done in self.trims {
            let _ = done.send(Err(err()));
        }
        for (_, done) in self.move_past {
            let _ = done.send(Err(err()));
        }
    }
}

/// What one successful transaction produced, handed out after COMMIT.
struct Written {
    seqs: Vec<u64>,
    command_ids: Vec<i64>,
    trimmed: u64,
    next_seq: u64,
    epoch: u64,
    acked: u64,
    stats: [Stat; 3],
    /// The free-space floor could not be kept by dropping metrics.
    disk_low: bool,
    /// Which never-drop classes are over their quota.
    over_quota: [bool; 3],
    /// Gap records written by this transaction, logged once it has committed.
    gaps: Vec<NewRecord>,
}

/// Loss of records of one device in one drop.
struct Loss {
    first: u64,
    last: u64,
    count: u64,
}

pub(super) struct Writer {
    conn: Connection,
    db_path: PathBuf,
    dir: PathBuf,
    policy: Policy,
    agent: i64,
    boot: i64,
    next_seq: u64,
    epoch: u64,
    acked: u64,
    stats: [Stat; 3],
    page_size: u64,
    over_quota: [bool; 3],
    disk_low: bool,
    health: Arc<WriterHealth>,
    last_maintenance: Instant,
    /// Alarms raised outside a transaction, written with the next one.
    alarms: Vec<NewRecord>,
    /// Bytes the WAL file grows to before its auto-checkpoint restarts it.
    wal_max: u64,
    /// Size of the reserve file (see `ensure_reserve`).
    reserve_bytes: u64,
    reserve_present: bool,
    reserve_tried: Option<Instant>,
}

fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn meta_set(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}

fn intern(conn: &Connection, table: &str, column: &str, value: &str) -> rusqlite::Result<i64> {
    conn.execute(
        &format!("INSERT OR IGNORE INTO {table}({column}) VALUES (?1)"),
        [value],
    )?;
    conn.query_row(
        &format!("SELECT id FROM {table} WHERE {column} = ?1"),
        [value],
        |r| r.get(0),
    )
}

fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

/// The epoch kept beside the database, so a fresh or restored database file
/// still starts above every epoch this data directory has used.
fn epoch_file(db_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.epoch", db_path.display()))
}

fn wal_file(db_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db_path.display()))
}

/// Space set aside beside the database for the day the file system fills up.
fn reserve_file(db_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.reserve", db_path.display()))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn read_epoch_file(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_epoch_file(path: &Path, epoch: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("epoch.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{epoch}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        opts: &StoreOptions,
        db_path: &Path,
        quarantined: Option<Quarantined>,
        health: Arc<WriterHealth>,
    ) -> Result<Writer, StoreError> {
        let err = |e| StoreError::sqlite(db_path, e);
        let ep_path = epoch_file(db_path);
        let tx = conn.unchecked_transaction().map_err(err)?;
        let epoch = meta_get(&tx, "epoch").map_err(err)?.unwrap_or(0).max(0) as u64;
        let epoch = epoch.max(read_epoch_file(&ep_path)) + 1;
        let max_seq: Option<i64> = tx
            .query_row("SELECT max(seq) FROM records", [], |r| r.get(0))
            .map_err(err)?;
        let next_seq = (meta_get(&tx, "next_seq").map_err(err)?.unwrap_or(0) as u64)
            .max(max_seq.map_or(0, |s| s as u64 + 1))
            .max(epoch << EPOCH_SHIFT);
        let acked = meta_get(&tx, "acked_seq").map_err(err)?.unwrap_or(0) as u64;
        meta_set(&tx, "epoch", epoch as i64).map_err(err)?;
        meta_set(&tx, "next_seq", next_seq as i64).map_err(err)?;
        if meta_get(&tx, "created_ms").map_err(err)?.is_none() {
            meta_set(&tx, "created_ms", clock::wall_ms()).map_err(err)?;
        }
        let agent = intern(&tx, "agents", "name", &opts.agent_id).map_err(err)?;
        let boot = intern(&tx, "boots", "boot_id", &opts.boot_id).map_err(err)?;
        let mut stats = [Stat::default(); 3];
        {
            let mut st = tx
                .prepare("SELECT class, rows, bytes FROM class_stats")
                .map_err(err)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
                .map_err(err)?;
            for row in rows {
                let (class, rows, bytes) = row.map_err(err)?;
                if let Some(c) = Class::from_code(class) {
                    stats[c.index()] = Stat { rows, bytes };
                }
            }
        }
        // A command that was in flight when the daemon stopped is not run
        // again on its own: a late reboot or power-off would surprise people.
        tx.execute(
            "UPDATE commands SET state = 'failed', finished_ms = ?1,
                 result = '{\"error\":\"sitelink stopped before the device answered; send the command again if it is still wanted\"}'
             WHERE state IN ('pending', 'dispatched')",
            [clock::wall_ms()],
        )
        .map_err(err)?;
        let mut alarms = Vec::new();
        if let Some(q) = &quarantined {
            tx.execute(
                "INSERT INTO quarantine(path, reason, at_ms) VALUES (?1, ?2, ?3)",
                params![q.path.to_string_lossy(), q.reason, clock::wall_ms()],
            )
            .map_err(err)?;
            alarms.push(alarm(
                "store.quarantined",
                serde_json::json!({
                    "moved_to": q.path.to_string_lossy(),
                    "reason": q.reason,
                    "hint": "the old file is kept for inspection; collection goes on in a fresh database",
                }),
            ));
        }
        let page_size: i64 = tx
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        write_epoch_file(&ep_path, epoch).map_err(|e| StoreError::Io {
            path: ep_path.clone(),
            source: e,
        })?;
        let mut over_quota = [false; 3];
        for c in Class::ALL {
            over_quota[c.index()] = stats[c.index()].rows as u64 > opts.policy.quota.get(c);
        }
        let page_size = page_size.max(512) as u64;
        let autocheckpoint: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .map_err(err)?;
        // A WAL frame is a page and a 24-byte header; the file has a 32-byte header.
        let wal_max = 32 + (autocheckpoint.max(0) as u64 + WAL_SLACK_PAGES) * (page_size + 24);
        let mut writer = Writer {
            conn,
            db_path: db_path.to_path_buf(),
            dir: opts.data_dir.clone(),
            policy: opts.policy.clone(),
            agent,
            boot,
            next_seq,
            epoch,
            acked,
            stats,
            page_size,
            over_quota,
            disk_low: false,
            health,
            last_maintenance: Instant::now(),
            alarms,
            wal_max,
            // Enough to copy a whole WAL into the database at a checkpoint,
            // and to write the transaction that drops metrics.
            reserve_bytes: wal_max + WAL_SLACK_PAGES * page_size,
            reserve_present: false,
            reserve_tried: None,
        };
        writer.ensure_reserve();
        Ok(writer)
    }

    pub(super) fn run(mut self, rx: flume::Receiver<Msg>) {
        loop {
            self.health.beat();
            let mut batch = Batch::default();
            let first = match rx.recv_timeout(IDLE_TICK) {
                Ok(m) => m,
                Err(flume::RecvTimeoutError::Timeout) => {
                    if !self.alarms.is_empty() {
                        self.commit(batch);
                    } else if self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
                        self.maintenance();
                    }
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => return,
            };
            self.take(&mut batch, first);
            let deadline = Instant::now() + self.policy.commit_window;
            while batch.records.len() < self.policy.commit_records && !batch.wants_commit_now() {
                match rx.recv_deadline(deadline) {
                    Ok(m) => self.take(&mut batch, m),
                    Err(_) => break,
                }
            }
            if batch.shutdown {
                // Commit everything producers had already handed over.
                while let Ok(m) = rx.try_recv() {
                    self.take(&mut batch, m);
                }
                self.commit(batch);
                tracing::info!(db = %self.db_path.display(), "store closed");
                return;
            }
            self.commit(batch);
            if self.health.throttled() {
                std::thread::sleep(THROTTLE);
            }
        }
    }

    fn take(&mut self, batch: &mut Batch, msg: Msg) {
        match msg {
            Msg::Append { records, now, done } => {
                batch.now |= now;
                batch.appends.push((records.len(), done));
                batch.records.extend(records);
            }
            Msg::Ack { up_to, done } => batch.acks.push((up_to, done)),
            Msg::DeviceState { device, state } => {
                batch.states.insert(device, state);
            }
            Msg::CommandNew(c) => batch.commands_new.push(c),
            Msg::CommandDone { id, outcome, done } => batch.commands_done.push((id, outcome, done)),
            Msg::SetPolicy(p) => {
                tracing::info!(?p, "store policy changed");
                self.policy = p;
            }
            Msg::Trim { done } => batch.trims.push(done),
            Msg::MovePast { seq, done } => batch.move_past.push((seq, done)),
            Msg::Shutdown => batch.shutdown = true,
        }
    }

    /// Commits the batch, retrying while the disk is full (producers wait,
    /// which is how they are slowed), and hands out the completions.
    fn commit(&mut self, batch: Batch) {
        if batch.is_empty() && self.alarms.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            self.health.beat();
            match self.write(&batch) {
                Ok(w) => {
                    self.health.disk_full.store(false, Ordering::Relaxed);
                    self.alarms.clear();
                    self.finish(batch, w);
                    self.ensure_reserve();
                    return;
                }
                Err(e) if is_disk_full(&e) => {
                    if !self.health.disk_full.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            dir = %self.dir.display(),
                            "the disk holding the database is full: waiting for space \
                             (metrics are dropped first; free space or raise nothing else on this file system)"
                        );
                    }
                    if batch.shutdown && started.elapsed() > SHUTDOWN_RETRY {
                        let path = self.db_path.clone();
                        batch.fail(|| StoreError::Io {
                            path: path.clone(),
                            source: std::io::Error::other("disk full at shutdown"),
                        });
                        return;
                    }
                    // In WAL mode even a DELETE needs space: the WAL may have to
                    // grow, and the checkpoint that would let it start over may
                    // have to grow the database. The reserve gives that room.
                    self.release_reserve();
                    // The emergency drop makes room if there are metrics to drop.
                    if !self.emergency_drop() {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(db = %self.db_path.display(), error = %e, attempt = failures, "commit failed");
                    if failures >= 3 {
                        let path = self.db_path.clone();
                        let msg = e.to_string();
                        batch.fail(|| {
                            StoreError::Invalid(format!(
                                "database {}: commit failed: {msg}",
                                path.display()
                            ))
                        });
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn finish(&mut self, batch: Batch, w: Written) {
        if w.epoch != self.epoch {
            let path = epoch_file(&self.db_path);
            if let Err(e) = write_epoch_file(&path, w.epoch) {
                tracing::error!(path = %path.display(), error = %e, "cannot record the store epoch");
            }
        }
        self.next_seq = w.next_seq;
        self.epoch = w.epoch;
        self.acked = w.acked;
        self.stats = w.stats;
        self.disk_low = w.disk_low;
        for g in &w.gaps {
            tracing::warn!(device = %g.device, gap = %g.payload, "records dropped");
        }
        for c in Class::ALL {
            if w.over_quota[c.index()] != self.over_quota[c.index()] {
                tracing::warn!(class = %c, over = w.over_quota[c.index()], "{QUOTA_HINT}");
            }
        }
        self.over_quota = w.over_quota;
        // Before the completions go out, so a producer that sees its commit
        // also sees the state it left the store in.
        let throttled =
            self.over_quota[Class::Event.index()] || self.over_quota[Class::Accounting.index()];
        self.health.throttled.store(throttled, Ordering::Relaxed);
        let mut seqs = w.seqs.into_iter();
        for (n, done) in batch.appends {
            let _ = done.send(Ok(seqs.by_ref().take(n).collect()));
        }
        for (_, done) in batch.acks {
            let _ = done.send(Ok(()));
        }
        for (c, id) in batch.commands_new.into_iter().zip(w.command_ids) {
            let _ = c.done.send(Ok(id));
        }
        for (.., done) in batch.commands_done {
            let _ = done.send(Ok(()));
        }
        for done in batch.trims {
            let _ = done.send(Ok(w.trimmed));
        }
        for (_, done) in batch.move_past {
            let _ = done.send(Ok(w.next_seq));
        }
    }

    /// One transaction for the whole batch. Nothing in `self` changes unless
    /// it commits: the new counters come back in `Written`.
    fn write(&mut self, batch: &Batch) -> rusqlite::Result<Written> {
        let tx = self.conn.unchecked_transaction()?;
        let mut w = self.scratch();
        let mut gaps: Vec<NewRecord> = self.alarms.clone();
        let now = clock::wall_ms();

        // Before this group's records get their numbers.
        for (seq, _) in &batch.move_past {
            if w.next_seq <= *seq {
                w.epoch = w.epoch.max((seq >> EPOCH_SHIFT) + 1);
                w.next_seq = w.next_seq.max(w.epoch << EPOCH_SHIFT);
            }
        }

        // Room first: below the free-space floor the oldest metrics go.
        let need: u64 = batch.records.iter().map(NewRecord::footprint).sum::<u64>() * 3;
        if need > 0 {
            let avail = self.available_bytes(&tx);
            let floor = self.policy.min_free_bytes;
            if avail < floor.saturating_add(need) {
                let to_free = floor.saturating_add(need) - avail;
                let rows = rows_for_bytes(&w.stats, to_free);
                let freed = drop_oldest_metrics(&tx, &mut w, rows, "disk", &mut gaps)?;
                let low = freed == 0;
                if low != w.disk_low {
                    w.disk_low = low;
                    gaps.push(if low {
                        alarm("store.disk_low", serde_json::json!({
                            "dir": self.dir.to_string_lossy(),
                            "available_bytes": avail,
                            "floor_bytes": floor,
                            "hint": "no metrics are left to drop; events and accounting are still kept while space lasts: free space on this file system",
                        }))
                    } else {
                        alarm("store.disk_ok", serde_json::json!({ "available_bytes": avail }))
                    });
                }
            }
        }

        {
            w.seqs.reserve(batch.records.len());
            let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
            for r in &batch.records {
                let seq = self.insert(&tx, &mut w, r)?;
                w.seqs.push(seq);
                let t = seen.entry(r.device.as_str()).or_insert(i64::MIN);
                *t = (*t).max(r.stamp.wall_ms);
            }
            let mut upd = tx.prepare_cached(
                "INSERT INTO device_state(device, last_seen_ms) VALUES (?1, ?2)
                 ON CONFLICT(device) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
            )?;
            for (device, t) in seen {
                upd.execute(params![device, t])?;
            }
        }

        // Quotas: metrics beyond theirs are dropped; a never-drop class over
        // its quota first gives up what was already delivered.
        let metric = Class::Metric;
        let over = w.stats[metric.index()].rows - self.policy.quota.get(metric) as i64;
        if over > 0 {
            drop_oldest_metrics(&tx, &mut w, over, "quota", &mut gaps)?;
        }
        for c in [Class::Event, Class::Accounting] {
            let quota = self.policy.quota.get(c);
            let rows = w.stats[c.index()].rows;
            if rows > quota as i64 && w.acked > 0 {
                // Down to where the alarm clears, not just under the line, so
                // the next commits do not trim again one row at a time.
                let keep = (quota as f64 * QUOTA_CLEAR) as i64;
                w.trimmed += trim(&tx, &mut w, Some(c), i64::MAX, rows - keep)?;
            }
        }

        for (up_to, _) in &batch.acks {
            // An ack beyond what was ever handed out is a bug upstream; never
            // let it hide records not yet written.
            let up_to = (*up_to).min(w.next_seq.saturating_sub(1));
            w.acked = w.acked.max(up_to);
        }
        if !batch.acks.is_empty() {
            meta_set(&tx, "acked_seq", w.acked as i64)?;
            meta_set(&tx, "acked_ms", now)?;
            if self.policy.retention.is_zero() {
                // Whatever its (perhaps wrong) timestamp says.
                w.trimmed += trim(&tx, &mut w, None, i64::MAX, i64::MAX)?;
            }
        }
        if !batch.trims.is_empty() {
            let cutoff = now - self.policy.retention.as_millis() as i64;
            w.trimmed += trim(&tx, &mut w, None, cutoff, i64::MAX)?;
        }

        for (device, state) in &batch.states {
            tx.execute(
                "INSERT INTO device_state(device, last_seen_ms, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(device) DO UPDATE SET state = excluded.state,
                     last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
                params![device, now, state],
            )?;
        }
        for NewCommand {
            device,
            action,
            args,
            source,
            ..
        } in &batch.commands_new
        {
            tx.execute(
                "INSERT INTO commands(device, action, args, source, state, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'dispatched', ?5)",
                params![device, action, args, source, now],
            )?;
            w.command_ids.push(tx.last_insert_rowid());
        }
        for (id, outcome, _) in &batch.commands_done {
            let result = serde_json::to_string(&outcome.detail).unwrap_or_else(|_| "null".into());
            tx.execute(
                "UPDATE commands SET state = ?2, result = ?3, finished_ms = ?4 WHERE id = ?1",
                params![id, outcome.status.as_str(), result, now],
            )?;
        }

        // Metrics over quota are dropped and counted, not alarmed.
        for c in [Class::Event, Class::Accounting] {
            gaps.extend(self.quota_alarm(c, &mut w));
        }
        // The store's own records (gaps, alarms) get their numbers last.
        for r in &gaps {
            self.insert(&tx, &mut w, r)?;
        }
        w.gaps = gaps.into_iter().filter(|r| r.kind == GAP_KIND).collect();

        meta_set(&tx, "next_seq", w.next_seq as i64)?;
        meta_set(&tx, "epoch", w.epoch as i64)?;
        save_stats(&tx, &w.stats, &self.stats)?;
        tx.commit()?;
        Ok(w)
    }

    /// Inserts one record with the next sequence number and counts it.
    fn insert(&self, tx: &Connection, w: &mut Written, r: &NewRecord) -> rusqlite::Result<u64> {
        let seq = take_seq(w);
        tx.prepare_cached(
            "INSERT INTO records(seq, class, device, kind, payload, wall_ms, mono_ms, boot, synced, agent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            seq as i64,
            r.class.code(),
            r.device,
            r.kind,
            r.payload,
            r.stamp.wall_ms,
            r.stamp.mono_ms,
            self.boot,
            r.stamp.synced,
            self.agent
        ])?;
        add_stat(&mut w.stats, r.class, 1, r.footprint() as i64);
        Ok(seq)
    }

    fn available_bytes(&self, conn: &Connection) -> u64 {
        let fs = match super::space::available_bytes(&self.dir) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free space");
                return u64::MAX;
            }
        };
        let free_pages: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap_or(0);
        fs.saturating_add(free_pages.max(0) as u64 * self.page_size)
            .saturating_sub(self.pending_growth(conn))
    }

    /// Space the files will take without a single new row: the pages the WAL
    /// holds past the end of the database file (the next checkpoint writes
    /// them there) and the WAL's own growth up to its checkpoint size.
    /// Counting it keeps the floor check from letting the file system fill up
    /// underneath a checkpoint, after which nothing, not even a DELETE, can be
    /// written.
    fn pending_growth(&self, conn: &Connection) -> u64 {
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap_or(0);
        let db = (pages.max(0) as u64 * self.page_size).saturating_sub(file_len(&self.db_path));
        let wal = self
            .wal_max
            .saturating_sub(file_len(&wal_file(&self.db_path)));
        db + wal
    }

    /// Keeps `sitelink.db.reserve` allocated: `reserve_bytes` the writer gives
    /// up when a commit finds the file system full (`release_reserve`), so that
    /// it can still checkpoint and drop metrics. Made at open and, after it
    /// was used, again once the file system has room for it above the floor.
    fn ensure_reserve(&mut self) {
        if self.reserve_present
            || self
                .reserve_tried
                .is_some_and(|t| t.elapsed() < RESERVE_RETRY)
        {
            return;
        }
        self.reserve_tried = Some(Instant::now());
        let path = reserve_file(&self.db_path);
        if let Ok(m) = std::fs::metadata(&path) {
            use std::os::unix::fs::MetadataExt;
            if m.len() == self.reserve_bytes && m.blocks() * 512 >= self.reserve_bytes {
                self.reserve_present = true;
                return;
            }
        }
        let fs = match super::space::available_bytes(&self.dir) {
            Ok(b) => b,
            Err(_) => return,
        };
        let wanted =
            self.reserve_bytes + self.policy.min_free_bytes + self.pending_growth(&self.conn);
        if fs < wanted {
            return;
        }
        match allocate(&path, self.reserve_bytes) {
            Ok(()) => {
                self.reserve_present = true;
                tracing::debug!(path = %path.display(), bytes = self.reserve_bytes, "space reserved for a full disk");
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(path = %path.display(), error = %e, "cannot reserve space for a full disk; retried later");
            }
        }
    }

    /// Frees the reserve, if it is there.
    fn release_reserve(&mut self) {
        self.reserve_present = false;
        let path = reserve_file(&self.db_path);
        if std::fs::remove_file(&path).is_ok() {
            tracing::warn!(
                path = %path.display(),
                bytes = self.reserve_bytes,
                "the file system is full: released the space reserved for this"
            );
        }
    }

    /// Called when a commit failed with SQLITE_FULL: drop a share of the
    /// oldest metrics in a transaction of their own. Returns whether any went.
    fn emergency_drop(&mut self) -> bool {
        let rows = (self.stats[Class::Metric.index()].rows / 20).max(200);
        let result = (|| -> rusqlite::Result<Written> {
            let tx = self.conn.unchecked_transaction()?;
            let mut w = self.scratch();
            let mut gaps = Vec::new();
            let freed = drop_oldest_metrics(&tx, &mut w, rows, "disk", &mut gaps)?;
            if freed == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            save_stats(&tx, &w.stats, &self.stats)?;
            tx.commit()?;
            // Gap records are written with the retried batch.
            self.alarms.extend(gaps);
            Ok(w)
        })();
        match result {
            Ok(w) => {
                self.stats = w.stats;
                true
            }
            Err(_) => false,
        }
    }

    /// Deletes delivered records older than the retention, in small
    /// transactions.
    fn maintenance(&mut self) {
        self.last_maintenance = Instant::now();
        if self.acked == 0 {
            return;
        }
        let cutoff = clock::wall_ms() - self.policy.retention.as_millis() as i64;
        for _ in 0..20 {
            self.health.beat();
            let result = (|| -> rusqlite::Result<(u64, [Stat; 3])> {
                let tx = self.conn.unchecked_transaction()?;
                let mut w = self.scratch();
                let n = trim(&tx, &mut w, None, cutoff, TRIM_CHUNK)?;
                save_stats(&tx, &w.stats, &self.stats)?;
                tx.commit()?;
                Ok((n, w.stats))
            })();
            match result {
                Ok((n, stats)) => {
                    self.stats = stats;
                    if n < TRIM_CHUNK as u64 {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(db = %self.db_path.display(), error = %e, "retention trim failed; retried later");
                    return;
                }
            }
        }
    }

    /// The counters a transaction starts from.
    fn scratch(&self) -> Written {
        Written {
            seqs: Vec::new(),
            command_ids: Vec::new(),
            trimmed: 0,
            next_seq: self.next_seq,
            epoch: self.epoch,
            acked: self.acked,
            stats: self.stats,
            disk_low: self.disk_low,
            over_quota: self.over_quota,
            gaps: Vec::new(),
        }
    }

    /// A never-drop class crossing its quota (or back below 90 % of it)
    /// raises an alarm in the same transaction as the records that did it.
    fn quota_alarm(&self, c: Class, w: &mut Written) -> Option<NewRecord> {
        let quota = self.policy.quota.get(c);
        let rows = w.stats[c.index()].rows.max(0) as u64;
        let was = w.over_quota[c.index()];
        let now = if was {
            rows as f64 > quota as f64 * QUOTA_CLEAR
        } else {
            rows > quota
        };
        if now == was {
            return None;
        }
        w.over_quota[c.index()] = now;
        Some(if now {
            alarm(
                "store.quota_full",
                serde_json::json!({ "class": c, "rows": rows, "quota": quota, "hint": QUOTA_HINT }),
            )
        } else {
            alarm(
                "store.quota_ok",
                serde_json::json!({ "class": c, "rows": rows, "quota": quota }),
            )
        })
    }
}

/// Allocates `len` bytes of real space (not a sparse file) at `path`.
fn allocate(path: &Path, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::create(path)?;
    let len = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: a valid open file descriptor; posix_fallocate touches nothing else.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// An alarm record of the store itself.
fn alarm(kind: &str, payload: serde_json::Value) -> NewRecord {
    NewRecord {
        class: Class::Event,
        device: STORE_DEVICE.to_string(),
        kind: kind.to_string(),
        payload: payload.to_string(),
        stamp: Stamp::now(),
    }
}

fn take_seq(w: &mut Written) -> u64 {
    let mask = (1u64 << EPOCH_SHIFT) - 1;
    if w.next_seq & mask == mask {
        // The counter of this epoch is spent: go on in the next one.
        w.epoch += 1;
        w.next_seq = w.epoch << EPOCH_SHIFT;
    }
    let seq = w.next_seq;
    w.next_seq += 1;
    seq
}

/// Writes the class counters that changed.
fn save_stats(tx: &Connection, stats: &[Stat; 3], before: &[Stat; 3]) -> rusqlite::Result<()> {
    let mut st =
        tx.prepare_cached("UPDATE class_stats SET rows = ?2, bytes = ?3 WHERE class = ?1")?;
    for c in Class::ALL {
        let (s, b) = (stats[c.index()], before[c.index()]);
        if s.rows != b.rows || s.bytes != b.bytes {
            st.execute(params![c.code(), s.rows, s.bytes])?;
        }
    }
    Ok(())
}

fn add_stat(stats: &mut [Stat; 3], class: Class, rows: i64, bytes: i64) {
    let s = &mut stats[class.index()];
    s.rows += rows;
    s.bytes += bytes;
}

/// How many metric rows likely hold `bytes`.
fn rows_for_bytes(stats: &[Stat; 3], bytes: u64) -> i64 {
    let s = stats[Class::Metric.index()];
    if s.rows <= 0 {
        return 0;
    }
    let avg = (s.bytes / s.rows).max(1) as u64;
    (bytes.div_ceil(avg) as i64).max(1)
}

/// Deletes the `rows` oldest metric rows. Those not yet delivered are lost:
/// they are counted in `drops` and each device gets a gap record. Returns
/// the bytes freed.
fn drop_oldest_metrics(
    tx: &Connection,
    w: &mut Written,
    rows: i64,
    reason: &str,
    gaps: &mut Vec<NewRecord>,
) -> rusqlite::Result<u64> {
    if rows <= 0 {
        return Ok(0);
    }
    let class = Class::Metric;
    // Bytes as `NewRecord::footprint` charged them: `length` of TEXT counts
    // characters, of a BLOB bytes.
    let mut st = tx.prepare_cached(&format!(
        "DELETE FROM records WHERE seq IN
             (SELECT seq FROM records WHERE class = ?1 ORDER BY seq LIMIT ?2)
         RETURNING seq, device, length(CAST(payload AS BLOB)) + length(CAST(device AS BLOB))
             + length(CAST(kind AS BLOB)) + {ROW_OVERHEAD}"
    ))?;
    let mut losses: BTreeMap<String, Loss> = BTreeMap::new();
    let mut freed = 0u64;
    let mut rows_iter = st.query(params![class.code(), rows])?;
    while let Some(row) = rows_iter.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let device: String = row.get(1)?;
        let bytes: i64 = row.get(2)?;
        freed += bytes as u64;
        add_stat(&mut w.stats, class, -1, -bytes);
        if seq > w.acked {
            let l = losses.entry(device).or_insert(Loss {
                first: seq,
                last: seq,
                count: 0,
            });
            l.first = l.first.min(seq);
            l.last = l.last.max(seq);
            l.count += 1;
        }
    }
    drop(rows_iter);
    let now = clock::wall_ms();
    for (device, l) in losses {
        tx.execute(
            "INSERT INTO drops(device, class, reason, count, first_seq, last_seq, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(device, class, reason) DO UPDATE SET
                 count = count + excluded.count, last_seq = excluded.last_seq, last_ms = excluded.last_ms",
            params![device, class.code(), reason, l.count as i64, l.first as i64, l.last as i64, now],
        )?;
        gaps.push(NewRecord {
            class: Class::Event,
            device,
            kind: GAP_KIND.to_string(),
            payload: serde_json::json!({
                "class": class,
                "reason": reason,
                "first_seq": l.first,
                "last_seq": l.last,
                "count": l.count,
            })
            .to_string(),
            stamp: Stamp::now(),
        });
    }
    Ok(freed)
}

/// Deletes delivered records (seq <= acked) older than `cutoff_ms`, of one
/// class or all, at most `limit` rows. Returns how many went.
fn trim(
    tx: &Connection,
    w: &mut Written,
    class: Option<Class>,
    cutoff_ms: i64,
    limit: i64,
) -> rusqlite::Result<u64> {
    // Bytes as `NewRecord::footprint` charged them: `length` of TEXT counts
    // characters, of a BLOB bytes.
    let mut st = tx.prepare_cached(&format!(
        "DELETE FROM records WHERE seq IN
             (SELECT seq FROM records WHERE seq <= ?1 AND wall_ms < ?2 AND (?3 < 0 OR class = ?3)
              ORDER BY seq LIMIT ?4)
         RETURNING class, length(CAST(payload AS BLOB)) + length(CAST(device AS BLOB))
             + length(CAST(kind AS BLOB)) + {ROW_OVERHEAD}"
    ))?;
    let mut rows = st.query(params![
        w.acked as i64,
        cutoff_ms,
        class.map_or(-1, Class::code),
        limit
    ])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        if let Some(c) = Class::from_code(row.get(0)?) {
            add_stat(&mut w.stats, c, -1, -row.get::<_, i64>(1)?);
        }
        n += 1;
    }
    Ok(n)
}
