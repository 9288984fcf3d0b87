//! Over-the-air self-update: side-by-side versions under `data_dir/ota`, a
//! launcher in the packaged binary that runs the chosen one, a health-gated
//! commit and automatic rollback. Operations are in docs/OPERATIONS.md.
//!
//! `ota/state.json` is the one commit point: it is written whole and renamed
//! into place, and the `current` and `previous` links are re-derived from it
//! at every start, so a crash at any moment leaves either the old or the new
//! state, never a mix.

pub mod fetch;
pub mod health;
pub mod release;

use crate::config::UpdateConfig;
use release::{Manifest, ReleaseError};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set by the launcher for the version it runs (and so not to launch again).
pub const LAUNCHED_ENV: &str = "SITELINK_OTA_VERSION";
const OTA_DIR: &str = "ota";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// Refusals of `sitelink update --file`, waiting for the daemon to record
/// them: the CLI does not write the store, which has one writer.
const REFUSED_FILE: &str = "refused.json";
const BINARY: &str = "sitelink";
/// How many rolled-back versions the state remembers.
const ROLLED_BACK_KEPT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unreadable OTA state ({error}); remove it to return to the package's version")]
    BadState { path: PathBuf, error: String },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("version {0} is the one running now")]
    AlreadyCurrent(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OtaError + '_ {
    move |source| OtaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The packaged binary this state was built over: an apt upgrade or
/// reinstall changes it, and then the package wins. Inode and ctime, not
/// mtime: dpkg sets a file's mtime from the .deb, so a reinstall of the same
/// package keeps it, but it unpacks to a new file renamed into place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub version: String,
    pub size: u64,
    pub inode: u64,
    pub ctime_ns: i128,
}

impl Fingerprint {
    pub fn of(path: &Path) -> Result<Fingerprint, OtaError> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).map_err(io(path))?;
        Ok(Fingerprint {
            version: env!("CARGO_PKG_VERSION").to_string(),
            size: m.len(),
            inode: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// The version the launcher runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub version: String,
    /// Not yet committed: `attempts` starts so far.
    pub trial: bool,
    pub attempts: u32,
    pub installed_ms: i64,
    /// The upstream was reachable when it was installed, so health needs it.
    pub needs_upstream: bool,
}

/// An outcome not yet written to the store as an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `update.installed`, `update.committed`, `update.rolled_back`, `update.superseded`.
    pub kind: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub package: Fingerprint,
    /// `None`: the package's own binary runs.
    pub current: Option<Slot>,
    /// What a rollback returns to; `None`: the package's binary.
    pub previous: Option<String>,
    #[serde(default)]
    pub pending: Vec<Outcome>,
    /// Versions rolled back here, newest last: the release URL's poll does
    /// not install them again (an explicit offer or file still can).
    #[serde(default)]
    pub rolled_back: Vec<String>,
}

impl State {
    fn push(&mut self, kind: &str, version: &str, reason: Option<String>) {
        self.pending.push(Outcome {
            kind: kind.to_string(),
            version: version.to_string(),
            reason,
            at_ms: crate::clock::wall_ms(),
        });
    }

    /// `current` ← `previous` (committed), recording why.
    pub fn roll_back(&mut self, reason: String) {
        if let Some(cur) = self.current.take() {
            tracing::error!(version = %cur.version, %reason, "update rolled back");
            self.rolled_back.retain(|v| *v != cur.version);
            self.rolled_back.push(cur.version.clone());
            if self.rolled_back.len() > ROLLED_BACK_KEPT {
                self.rolled_back.remove(0);
            }
            self.push("update.rolled_back", &cur.version, Some(reason));
        }
        self.current = self.previous.take().map(|version| Slot {
            version,
            trial: false,
            attempts: 0,
            installed_ms: crate::clock::wall_ms(),
            needs_upstream: false,
        });
    }
}

/// `data_dir/ota` and the files in it.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            root: data_dir.join(OTA_DIR),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }
    pub fn versions(&self) -> PathBuf {
        self.root.join("versions")
    }
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
    pub fn binary(&self, version: &str) -> PathBuf {
        self.versions().join(version).join(BINARY)
    }

    fn ensure(&self) -> Result<(), OtaError> {
        for d in [self.root.clone(), self.versions(), self.downloads()] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(())
    }

    /// An exclusive lock on the state for one read-modify-write (the
    /// launcher, the daemon and `sitelink update` may all write it).
    pub fn lock(&self) -> Result<Lock, OtaError> {
        self.ensure()?;
        let path = self.root.join(LOCK_FILE);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when `f` closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&path)(std::io::Error::last_os_error()));
        }
        Ok(Lock {
            _file: f,
            layout: self.clone(),
        })
    }
}

/// Holds the state lock; reads and writes the state.
pub struct Lock {
    _file: std::fs::File,
    layout: Layout,
}

impl Lock {
    pub fn load(&self) -> Result<Option<State>, OtaError> {
        let path = self.layout.state();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| OtaError::BadState {
                    path,
                    error: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Writes the state atomically, then makes the links match it.
    pub fn store(&self, state: &State) -> Result<(), OtaError> {
        let path = self.layout.state();
        let text = serde_json::to_vec_pretty(state).map_err(|e| OtaError::BadState {
            path: path.clone(),
            error: e.to_string(),
        })?;
        write_atomic(&path, &text)?;
        self.sync_links(state)
    }

    /// `current` and `previous` as the state says: each replaced by a
    /// rename, or removed.
    pub fn sync_links(&self, state: &State) -> Result<(), OtaError> {
        let root = &self.layout.root;
        for (name, version) in [
            (
                "current",
                state.current.as_ref().map(|s| s.version.as_str()),
            ),
            ("previous", state.previous.as_deref()),
        ] {
            let link = root.join(name);
            match version {
                Some(v) => {
                    let target = Path::new("versions").join(v);
                    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                        let tmp = root.join(format!(".{name}.new"));
                        let _ = std::fs::remove_file(&tmp);
                        std::os::unix::fs::symlink(&target, &tmp).map_err(io(&tmp))?;
                        std::fs::rename(&tmp, &link).map_err(io(&link))?;
                    }
                }
                None => match std::fs::remove_file(&link) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io(&link)(e));
                    }
                    _ => {}
                },
            }
        }
        fsync_dir(root)?;
        self.collect_garbage(state);
        Ok(())
    }

    /// Removes versions that are neither current nor previous (leftovers
    /// of an interrupted install or of older updates). Best effort.
    fn collect_garbage(&self, state: &State) {
        let keep: Vec<&str> = state
            .current
            .iter()
            .map(|s| s.version.as_str())
            .chain(state.previous.as_deref())
            .collect();
        let Ok(entries) = std::fs::read_dir(self.layout.versions()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if !keep.iter().any(|k| name.as_bytes() == k.as_bytes()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), OtaError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OtaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    fsync_dir(dir)
}

/// Run as root (`sudo sitelink update`), the files made under `ota/` would
/// be root's and the service could not take the lock or write the state:
/// they are given to the owner of `data_dir` (the service's user).
pub fn give_to_data_dir_owner(data_dir: &Path) -> Result<(), OtaError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let owner = std::fs::metadata(data_dir).map_err(io(data_dir))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    if uid == 0 {
        return Ok(());
    }
    let root = Layout::new(data_dir).root;
    // ota/, versions/ (and the files in ota/), versions/VERSION/, the binary.
    let mut level = vec![root];
    for _ in 0..4 {
        let mut next = Vec::new();
        for path in level {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io(&path))?;
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let entries = std::fs::read_dir(&path).map_err(io(&path))?;
                next.extend(entries.flatten().map(|e| e.path()));
            }
        }
        level = next;
    }
    Ok(())
}

/// The version running now, for the downgrade check.
pub fn running_version(state: Option<&State>) -> String {
    state
        .and_then(|s| s.current.as_ref())
        .map_or(env!("CARGO_PKG_VERSION").to_string(), |s| s.version.clone())
}

/// The trusted keys of `[update]`, already validated by the config reader.
pub fn trusted_keys(cfg: &UpdateConfig) -> Vec<ed25519_dalek::VerifyingKey> {
    cfg.trusted_keys
        .iter()
        .filter_map(|k| release::parse_public(k).ok())
        .collect()
}

/// Verifies a release and installs it as the current version, in trial.
/// On any refusal nothing under `ota/` changes except `downloads/`.
pub fn install(
    data_dir: &Path,
    cfg: &UpdateConfig,
    manifest_path: &Path,
    binary: &Path,
    downloaded_from: Option<&str>,
) -> Result<Manifest, OtaError> {
    // Offered by the upstream: it was reachable, so the new version must reach it too.
    let needs_upstream = downloaded_from.is_some();
    let layout = Layout::new(data_dir);
    let manifest = release::read_manifest(manifest_path)?;
    let lock = layout.lock()?;
    let mut state = match lock.load()? {
        Some(s) => s,
        None => State {
            package: package_fingerprint()?,
            current: None,
            previous: None,
            pending: Vec::new(),
            rolled_back: Vec::new(),
        },
    };
    let running = running_version(Some(&state));
    let trusted = trusted_keys(cfg);
    release::check_manifest(
        manifest_path,
        &manifest,
        &release::Policy {
            trusted: &trusted,
            running: &running,
            allow_downgrade: cfg.allow_downgrade,
            max_bytes: cfg.max_bytes,
        },
    )?;
    if state.current.as_ref().map(|s| s.version.as_str()) == Some(manifest.version.as_str()) {
        return Err(OtaError::AlreadyCurrent(manifest.version));
    }
    // Copy first, then check the copy: what is verified is what runs.
    let dir = layout.versions().join(&manifest.version);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let part = dir.join(".sitelink.part");
    std::fs::copy(binary, &part).map_err(io(binary))?;
    if let Err(e) = release::check_binary(&part, &manifest) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(match e {
            ReleaseError::Refused { why, .. } => ReleaseError::Refused {
                manifest: binary.to_path_buf(),
                why,
            },
            e => e,
        }
        .into());
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&part))?;
        std::fs::File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(io(&part))?;
    }
    let final_path = layout.binary(&manifest.version);
    std::fs::rename(&part, &final_path).map_err(io(&final_path))?;
    fsync_dir(&dir)?;
    fsync_dir(&layout.versions())?;
    // A committed current becomes the fallback; a version still in trial
    // does not (it never proved itself), so the older fallback stays.
    if let Some(cur) = state.current.take()
        && !cur.trial
    {
        state.previous = Some(cur.version);
    }
    state.current = Some(Slot {
        version: manifest.version.clone(),
        trial: true,
        attempts: 0,
        installed_ms: crate::clock::wall_ms(),
        needs_upstream,
    });
    if let Some(url) = downloaded_from {
        state.push(
            "update.downloaded",
            &manifest.version,
            Some(url.to_string()),
        );
    }
    state.push(
        "update.verified",
        &manifest.version,
        Some(format!("signed by key {}", manifest.key_id)),
    );
    state.push("update.installed", &manifest.version, None);
    lock.store(&state)?;
    tracing::info!(version = %manifest.version, "update installed; it runs at the next start, in trial");
    Ok(manifest)
}

/// The packaged binary: the one running, unless the launcher started us.
fn package_fingerprint() -> Result<Fingerprint, OtaError> {
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    Fingerprint::of(&exe)
}

/// The launcher: before anything else, pick the binary to run and exec it.
/// Returns only when this binary is the one to run (or exec failed, which
/// is a rollback): with the OTA version it runs as, `None` for the package's.
pub fn launch(data_dir: &Path, cfg: &UpdateConfig) -> Result<Option<String>, OtaError> {
    if let Some(v) = std::env::var_os(LAUNCHED_ENV) {
        return Ok(Some(v.to_string_lossy().into_owned()));
    }
    let layout = Layout::new(data_dir);
    if !layout.state().exists() {
        return Ok(None);
    }
    let lock = layout.lock()?;
    let Some(mut state) = lock.load()? else {
        return Ok(None);
    };
    let package = package_fingerprint()?;
    if state.package != package {
        // apt installed another package (or the same again): it wins.
        let reason = format!(
            "the package binary changed (now {}); its version runs and OTA versions were removed",
            package.version
        );
        if let Some(cur) = state.current.take() {
            tracing::warn!(version = %cur.version, "{reason}");
            state.push("update.superseded", &cur.version, Some(reason));
        }
        state.previous = None;
        state.package = package;
        lock.store(&state)?;
        return Ok(None);
    }
    // Each round either execs or removes a version from the state, so two
    // rounds (current, previous) end it.
    for _ in 0..3 {
        let Some(slot) = state.current.as_mut() else {
            lock.store(&state)?;
            return Ok(None);
        };
        if slot.trial {
            slot.attempts += 1;
            if slot.attempts > cfg.max_attempts {
                let reason = format!(
                    "started {} times without passing the health check (max_attempts = {})",
                    slot.attempts - 1,
                    cfg.max_attempts
                );
                state.roll_back(reason);
                continue;
            }
        }
        let version = slot.version.clone();
        let binary = layout.binary(&version);
        if !binary.is_file() {
            state.roll_back(format!("{} is missing", binary.display()));
            continue;
        }
        lock.store(&state)?;
        drop(lock);
        let err = exec(&binary, &version);
        // Only a failed exec comes back.
        let lock = layout.lock()?;
        let mut state = lock.load()?.unwrap_or(state);
        state.roll_back(format!("cannot run {}: {err}", binary.display()));
        lock.store(&state)?;
        return Ok(None);
    }
    lock.store(&state)?;
    Ok(None)
}

/// execv with the same arguments; returns only on failure.
fn exec(binary: &Path, version: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    tracing::info!(%version, binary = %binary.display(), "launching the OTA version");
    std::process::Command::new(binary)
        .args(args)
        .env(LAUNCHED_ENV, version)
        .exec()
}

/// Takes the outcomes not yet recorded (for the store's event records).
pub fn take_pending(data_dir: &Path) -> Result<Vec<Outcome>, OtaError> {
    let layout = Layout::new(data_dir);
    let refused = layout.root.join(REFUSED_FILE);
    if !layout.state().exists() && !refused.exists() {
        return Ok(Vec::new());
    }
    let lock = layout.lock()?;
    let mut pending = Vec::new();
    if let Some(mut state) = lock.load()? {
        pending = std::mem::take(&mut state.pending);
        if !pending.is_empty() {
            lock.store(&state)?;
        }
    }
    pending.extend(read_refused(&refused)?);
    match std::fs::remove_file(&refused) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&refused)(e)),
        _ => {}
    }
    Ok(pending)
}

/// Notes a refused `sitelink update --file` for the daemon to record as an
/// `update.refused` event (and so for `sitelink status` and the journal).
pub fn note_refusal(data_dir: &Path, version: &str, reason: &str) -> Result<(), OtaError> {
    let layout = Layout::new(data_dir);
    let _lock = layout.lock()?;
    let path = layout.root.join(REFUSED_FILE);
    let mut refused = read_refused(&path)?;
    refused.push(Outcome {
        kind: "update.refused".into(),
        version: version.to_string(),
        reason: Some(reason.to_string()),
        at_ms: crate::clock::wall_ms(),
    });
    let text = serde_json::to_vec(&refused).map_err(|e| OtaError::BadState {
        path: path.clone(),
        error: e.to_string(),
    })?;
    write_atomic(&path, &text)
}

fn read_refused(path: &Path) -> Result<Vec<Outcome>, OtaError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OtaError::BadState {
            path: path.to_path_buf(),
            error: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path)(e)),
    }
}

/// What `sitelink status` shows of the OTA state.
pub fn summary(data_dir: &Path) -> Option<State> {
    let bytes = std::fs::read(Layout::new(data_dir).state()).ok()?;
    serde_json::from_slice(&bytes).ok()
}
