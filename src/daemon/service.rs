//! `sitelink run`: the daemon as a systemd service. Signals (SIGTERM drains
//! and exits, SIGHUP reloads), sd-notify (READY, STATUS, WATCHDOG, STOPPING).

use super::Daemon;
use super::logging::LogControl;
use crate::config::{self, Config};
use sd_notify::NotifyState;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// The drain after SIGTERM must fit in systemd's stop timeout with room to spare.
const STOP_BUDGET: Duration = Duration::from_millis(4500);

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs until SIGTERM or SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path, config: Config, logs: LogControl) -> i32 {
    let mut term = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return 1;
        }
    };
    let mut daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "sitelink cannot start");
            eprintln!("sitelink: cannot start: {e}");
            return 1;
        }
    };
    let status = daemon.status_line().await;
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let mut pushed = daemon.take_reload_requests();
    let watchdog = sd_notify::watchdog_enabled();
    // Ping at a quarter of the period; a task silent for half of it is stuck.
    let ping_every = watchdog.map_or(Duration::from_secs(3600), |w| w / 4);
    let stuck_after_ms = watchdog.map_or(i64::MAX, |w| (w / 2).as_millis() as i64);
    let mut ping = tokio::time::interval(ping_every);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut reported_stuck = false;
    loop {
        tokio::select! {
            _ = term.0.recv() => break,
            _ = term.1.recv() => break,
            _ = term.2.recv() => {
                notify(&[NotifyState::Reloading]);
                let _ = reload(&mut daemon, config_path, &logs).await;
                let status = daemon.status_line().await;
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
            Some(req) = next_push(&mut pushed) => {
                notify(&[NotifyState::Reloading]);
                let applied = reload(&mut daemon, config_path, &logs).await;
                let _ = req.done.send(applied);
                let status = daemon.status_line().await;
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
            _ = ping.tick(), if watchdog.is_some() => {
                let stuck = daemon.stuck(stuck_after_ms);
                if stuck.is_empty() {
                    notify(&[NotifyState::Watchdog]);
                    reported_stuck = false;
                } else if !reported_stuck {
                    reported_stuck = true;
                    for s in &stuck {
                        tracing::error!(task = %s.task, silent_ms = s.silent_ms, "task is stuck: the watchdog is no longer pinged, systemd will restart sitelink");
                    }
                }
            }
            _ = status_tick.tick() => {
                let status = daemon.status_line().await;
                notify(&[NotifyState::Status(&status)]);
            }
        }
    }
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: committing pending records"),
    ]);
    tracing::info!("stopping");
    if tokio::time::timeout(STOP_BUDGET, daemon.shutdown())
        .await
        .is_err()
    {
        tracing::error!("shutdown took longer than {} ms", STOP_BUDGET.as_millis());
    }
    0
}

/// The next config pushed by the upstream, already written to the file.
async fn next_push(
    rx: &mut Option<tokio::sync::mpsc::Receiver<crate::uplink::client::ReloadRequest>>,
) -> Option<crate::uplink::client::ReloadRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Re-reads the config file and applies it; the new summary, or every error.
async fn reload(daemon: &mut Daemon, path: &Path, logs: &LogControl) -> Result<String, String> {
    let path = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
    match loaded {
        Ok(Ok(new)) => {
            let level_changed = new.agent.log_level != daemon.config().agent.log_level;
            let level = new.agent.log_level.clone();
            let summary = new.summary();
            let plan = daemon.reload(new).await;
            if level_changed {
                logs.set_level(&level);
            }
            tracing::info!(
                summary = %summary,
                added = plan.generators.added.len() + plan.sas.added.len(),
                removed = plan.generators.removed.len() + plan.sas.removed.len(),
                changed = plan.generators.changed.len() + plan.sas.changed.len(),
                "configuration reloaded"
            );
            Ok(summary)
        }
        Ok(Err(errors)) => {
            for d in &errors.diagnostics {
                tracing::error!("{d}");
            }
            tracing::error!("the new configuration is invalid: still running on the previous one");
            Err(errors.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            Err(e.to_string())
        }
    }
}
