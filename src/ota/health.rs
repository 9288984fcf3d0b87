//! The health gate of a version in trial: healthy for a whole `health_s`
//! window commits it; not managing that by the deadline rolls it back.

use super::{Layout, OtaError};
use crate::config::UpdateConfig;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a trial may take to find one healthy window, in windows: a
/// slow start (a TV that takes a minute) must not fail it, a never-healthy
/// version must not run for ever.
const DEADLINE_WINDOWS: u32 = 3;

/// What one check of the daemon found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub store_ok: bool,
    pub tasks_ok: bool,
    /// Whether the uplink is connected (true when no uplink is configured).
    pub upstream_ok: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Commit,
    RollBack(String),
}

/// A version in trial, watched by the service loop.
#[derive(Debug)]
pub struct Trial {
    data_dir: PathBuf,
    pub version: String,
    window: Duration,
    started: Instant,
    healthy_since: Option<Instant>,
    needs_upstream: bool,
    last_problem: String,
}

impl Trial {
    /// The trial this process runs, if the launcher started it as the
    /// current version in trial.
    pub fn detect(data_dir: &Path, ota_version: Option<&str>, cfg: &UpdateConfig) -> Option<Trial> {
        let v = ota_version?;
        let state = super::summary(data_dir)?;
        let slot = state.current.filter(|s| s.version == v && s.trial)?;
        Some(Trial {
            data_dir: data_dir.to_path_buf(),
            version: slot.version,
            window: cfg.health,
            started: Instant::now(),
            healthy_since: None,
            needs_upstream: slot.needs_upstream,
            last_problem: "no check yet".into(),
        })
    }

    pub fn observe(&mut self, h: Health, now: Instant) -> Verdict {
        let problem = if !h.store_ok {
            Some("the store is not writable")
        } else if !h.tasks_ok {
            Some("a task is stuck or has ended")
        } else if self.needs_upstream && !h.upstream_ok {
            Some("the upstream is not reached (it was when the update was installed)")
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.healthy_since = None;
                self.last_problem = p.to_string();
            }
            None => {
                let since = *self.healthy_since.get_or_insert(now);
                if now.duration_since(since) >= self.window {
                    return Verdict::Commit;
                }
            }
        }
        if now.duration_since(self.started) >= self.window * DEADLINE_WINDOWS {
            return Verdict::RollBack(format!(
                "not healthy for {} s within {} s: {}",
                self.window.as_secs(),
                (self.window * DEADLINE_WINDOWS).as_secs(),
                self.last_problem
            ));
        }
        Verdict::Wait
    }

    /// Marks the version committed (it stays current; `previous` is kept).
    pub fn commit(&self) -> Result<(), OtaError> {
        let lock = Layout::new(&self.data_dir).lock()?;
        let Some(mut state) = lock.load()? else {
            return Ok(());
        };
        if let Some(cur) = state.current.as_mut()
            && cur.version == self.version
            && cur.trial
        {
            cur.trial = false;
            state.push("update.committed", &self.version, None);
            lock.store(&state)?;
            tracing::info!(version = %self.version, "update committed: healthy for the whole window");
        }
        Ok(())
    }

    /// Rolls this version back; the caller exits non-zero so systemd
    /// restarts the launcher, which runs the previous one.
    pub fn roll_back(&self, reason: String) -> Result<(), OtaError> {
        let lock = Layout::new(&self.data_dir).lock()?;
        let Some(mut state) = lock.load()? else {
            return Ok(());
        };
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.version == self.version)
        {
            state.roll_back(reason);
            lock.store(&state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(needs_upstream: bool) -> Trial {
        Trial {
            data_dir: PathBuf::from("/nonexistent"),
            version: "9.9.9".into(),
            window: Duration::from_secs(10),
            started: Instant::now(),
            healthy_since: None,
            needs_upstream,
            last_problem: String::new(),
        }
    }

    const GOOD: Health = Health {
        store_ok: true,
        tasks_ok: true,
        upstream_ok: true,
    };

    #[test]
    fn a_whole_healthy_window_commits_and_a_gap_restarts_it() {
        let mut t = trial(false);
        let t0 = t.started;
        assert_eq!(t.observe(GOOD, t0), Verdict::Wait);
        assert_eq!(t.observe(GOOD, t0 + Duration::from_secs(9)), Verdict::Wait);
        let bad = Health {
            tasks_ok: false,
            ..GOOD
        };
        assert_eq!(t.observe(bad, t0 + Duration::from_secs(9)), Verdict::Wait);
        assert_eq!(t.observe(GOOD, t0 + Duration::from_secs(10)), Verdict::Wait);
        assert_eq!(
            t.observe(GOOD, t0 + Duration::from_secs(20)),
            Verdict::Commit
        );
    }

    #[test]
    fn never_healthy_rolls_back_at_the_deadline_with_the_reason() {
        let mut t = trial(true);
        let t0 = t.started;
        let offline = Health {
            upstream_ok: false,
            ..GOOD
        };
        assert_eq!(
            t.observe(offline, t0 + Duration::from_secs(29)),
            Verdict::Wait
        );
        match t.observe(offline, t0 + Duration::from_secs(30)) {
            Verdict::RollBack(why) => assert!(why.contains("upstream"), "{why}"),
            v => panic!("{v:?}"),
        }
        // Without needs_upstream the same readings are healthy.
        let mut t = trial(false);
        let t0 = t.started;
        assert_eq!(t.observe(offline, t0), Verdict::Wait);
        assert_eq!(
            t.observe(offline, t0 + Duration::from_secs(10)),
            Verdict::Commit
        );
    }
}
