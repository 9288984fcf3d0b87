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

/// How often a version in trial is checked.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// A task or the store writer silent this long is unhealthy (a trial does
/// not wait for the watchdog's verdict).
const HEALTH_SILENT_MS: i64 = 10_000;
/// After an install, how long the loop waits before it stops.
const RESULT_GRACE: Duration = Duration::from_secs(1);

/// Writes the OTA outcomes not yet recorded as `event` records of device
/// `update`, so they reach `sitelink status`, the journal and the upstream.
async fn record_update_outcomes(daemon: &Daemon) {
    let data_dir = daemon.config().agent.data_dir.clone();
    let pending =
        match tokio::task::spawn_blocking(move || crate::ota::take_pending(&data_dir)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the OTA state");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "OTA state task failed");
                return;
            }
        };
    for o in pending {
        tracing::info!(kind = %o.kind, version = %o.version, reason = o.reason.as_deref().unwrap_or(""), "update outcome");
        let payload =
            serde_json::json!({"version": o.version, "reason": o.reason, "at_ms": o.at_ms});
        let record = crate::store::NewRecord::new(
            crate::store::Class::Event,
            "update",
            o.kind,
            payload.to_string(),
        );
        if let Err(e) = daemon.store().append(record).await {
            tracing::error!(error = %e, "cannot store an update outcome");
        }
    }
}

fn health(daemon: &Daemon) -> crate::ota::health::Health {
    let store = daemon.store_health();
    let (up, all) = daemon.devices_running();
    crate::ota::health::Health {
        store_ok: !store.disk_full() && store.silent_for_ms() < HEALTH_SILENT_MS,
        tasks_ok: up == all && daemon.stuck(HEALTH_SILENT_MS).is_empty(),
        upstream_ok: daemon
            .uplink_state()
            .get()
            .is_none_or(|u| u.state == "connected"),
    }
}

/// Runs until SIGTERM or SIGINT. Returns the process exit code.
/// `ota_version`: the OTA version this process is (the launcher's), if any.
pub async fn run(
    config_path: &Path,
    config: Config,
    logs: LogControl,
    ota_version: Option<String>,
) -> i32 {
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
    record_update_outcomes(&daemon).await;
    let mut trial = crate::ota::health::Trial::detect(
        &daemon.config().agent.data_dir,
        ota_version.as_deref(),
        &daemon.config().update,
    );
    if let Some(t) = &trial {
        tracing::info!(version = %t.version, "running an update in trial");
    }
    let mut health_tick = tokio::time::interval(HEALTH_EVERY);
    let mut offers = daemon.take_update_requests();
    // An installed update: the loop ends so systemd starts it (Restart=always).
    let (installed_tx, mut installed) = tokio::sync::mpsc::channel::<String>(1);
    // `[update] url`: checked at start, then every check_s; one poll at a time.
    let mut poll_tick = tokio::time::interval(daemon.config().update.check_every);
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut exit_code = 0;
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
            Some(req) = next_offer(&mut offers) => {
                let data_dir = daemon.config().agent.data_dir.clone();
                let cfg = daemon.config().update.clone();
                let installed_tx = installed_tx.clone();
                let store = daemon.store();
                tokio::spawn(async move {
                    let version = req.offer.manifest.version.clone();
                    let outcome = apply_offer(data_dir, cfg, req.offer).await;
                    let ok = outcome.status == crate::uplink::proto::Status::Done;
                    if !ok {
                        let kind = if outcome.status == crate::uplink::proto::Status::Rejected {
                            "update.refused"
                        } else {
                            "update.failed"
                        };
                        // A refusal changes nothing on disk, so it is recorded here.
                        let payload = serde_json::json!({"version": version, "reason": outcome.detail["error"]});
                        let record = crate::store::NewRecord::new(
                            crate::store::Class::Event,
                            "update",
                            kind,
                            payload.to_string(),
                        );
                        if let Err(e) = store.append(record).await {
                            tracing::error!(error = %e, "cannot store an update refusal");
                        }
                    }
                    let _ = req.done.send(outcome);
                    if ok {
                        let _ = installed_tx.send(version).await;
                    }
                });
            }
            _ = poll_tick.tick(), if daemon.config().update.url.is_some() && trial.is_none() => {
                if !polling.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    let data_dir = daemon.config().agent.data_dir.clone();
                    let cfg = daemon.config().update.clone();
                    let installed_tx = installed_tx.clone();
                    let store = daemon.store();
                    let polling = polling.clone();
                    tokio::spawn(async move {
                        poll_release(data_dir, cfg, installed_tx, store).await;
                        polling.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
            }
            Some(version) = installed.recv() => {
                record_update_outcomes(&daemon).await;
                tracing::info!(%version, "update installed: restarting into it");
                // Time for the uplink to put the `result` on the wire.
                tokio::time::sleep(RESULT_GRACE).await;
                break;
            }
            _ = health_tick.tick(), if trial.is_some() => {
                let verdict = match trial.as_mut() {
                    Some(t) => t.observe(health(&daemon), std::time::Instant::now()),
                    None => crate::ota::health::Verdict::Wait,
                };
                match (verdict, trial.take()) {
                    (crate::ota::health::Verdict::Commit, Some(t)) => {
                        if let Err(e) = t.commit() {
                            tracing::error!(error = %e, "cannot commit the update; it stays in trial");
                        }
                        record_update_outcomes(&daemon).await;
                    }
                    (crate::ota::health::Verdict::RollBack(reason), Some(t)) => {
                        if let Err(e) = t.roll_back(reason) {
                            tracing::error!(error = %e, "cannot roll the update back");
                        }
                        // Non-zero: systemd restarts the launcher, which runs the previous version.
                        exit_code = 1;
                        break;
                    }
                    (_, t) => trial = t,
                }
            }
            _ = status_tick.tick() => {
                // A `sitelink update --file` refused meanwhile.
                record_update_outcomes(&daemon).await;
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
    exit_code
}

/// The next update offered by the upstream.
async fn next_offer(
    rx: &mut Option<tokio::sync::mpsc::Receiver<crate::uplink::client::UpdateRequest>>,
) -> Option<crate::uplink::client::UpdateRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One check of `[update] url`; an install ends the service loop.
async fn poll_release(
    data_dir: std::path::PathBuf,
    cfg: crate::config::UpdateConfig,
    installed: tokio::sync::mpsc::Sender<String>,
    store: crate::store::StoreHandle,
) {
    let Some(url) = cfg.url.clone() else {
        return;
    };
    let polled =
        tokio::task::spawn_blocking(move || crate::ota::fetch::poll(&data_dir, &cfg, &url)).await;
    let error = match polled {
        Ok(Ok(Some(m))) => {
            let _ = installed.send(m.version).await;
            return;
        }
        Ok(Ok(None)) => return,
        // Offline is normal at a venue: logged, not an event every check_s.
        Ok(Err(
            e @ crate::ota::OtaError::Fetch(
                crate::ota::fetch::FetchError::Http { .. }
                | crate::ota::fetch::FetchError::Status { .. },
            ),
        )) => {
            tracing::warn!(error = %e, "cannot check the release URL");
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(%error, "the release URL's update was not installed");
    let payload = serde_json::json!({"reason": error});
    let record = crate::store::NewRecord::new(
        crate::store::Class::Event,
        "update",
        "update.failed",
        payload.to_string(),
    );
    if let Err(e) = store.append(record).await {
        tracing::error!(error = %e, "cannot store an update failure");
    }
}

/// Fetches, verifies and installs an offered release; the `result` for the upstream.
async fn apply_offer(
    data_dir: std::path::PathBuf,
    cfg: crate::config::UpdateConfig,
    offer: crate::uplink::proto::UpdateOffer,
) -> crate::uplink::proto::Outcome {
    use crate::ota::OtaError;
    use crate::uplink::proto::{Outcome, Status};
    let id = offer.id.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::ota::fetch::apply_offer(&data_dir, &cfg, &offer.url, &offer.manifest)
    })
    .await;
    let (status, detail) = match done {
        Ok(Ok(m)) => (
            Status::Done,
            serde_json::json!({"version": m.version, "installed": true, "detail": "installed in trial; the agent restarts into it"}),
        ),
        Ok(Err(e)) => {
            let status = match e {
                OtaError::Release(_) | OtaError::AlreadyCurrent(_) => Status::Rejected,
                _ => Status::Failed,
            };
            tracing::warn!(error = %e, "the offered update was not installed");
            (status, serde_json::json!({"error": e.to_string()}))
        }
        Err(e) => (Status::Failed, serde_json::json!({"error": e.to_string()})),
    };
    Outcome { id, status, detail }
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
