//! The synthetic device: produces records at a configured rate, with a
//! counter in every payload so a lost record shows as a missing number. It
//! is the load generator for tests, benchmarks and the demo.

use crate::config::GeneratorConfig;
use crate::daemon::task::{DeviceCommand, TaskContext};
use crate::store::{CommandOutcome, NewRecord, StoreError};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The record kind a generator writes.
pub const KIND: &str = "generator.tick";
/// Most records handed to the store in one message.
const MAX_BATCH: u64 = 5000;
/// The generator's clock tick: fast enough to spread records over time,
/// slow enough to batch at high rates.
const TICK: Duration = Duration::from_millis(10);

/// Counters shared with whoever started the generator (the demo, tests).
#[derive(Debug, Default)]
pub struct GeneratorStats {
    /// Records made and handed to the store.
    pub produced: AtomicU64,
    /// Records whose commit was confirmed.
    pub stored: AtomicU64,
    /// Records the store refused (each one logged).
    pub failed: AtomicU64,
}

/// The payload of one generated record, as readers parse it back.
#[derive(Debug, Deserialize)]
pub struct Tick {
    pub n: u64,
}

/// A payload of `size` bytes (or the shortest possible) carrying `n`.
pub fn payload(n: u64, size: usize) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// Runs one generator until shutdown. `first` is the counter to start from
/// (one past the last stored, so a restart does not reuse numbers).
pub async fn run(
    cfg: GeneratorConfig,
    first: u64,
    mut ctx: TaskContext,
    stats: Arc<GeneratorStats>,
) {
    let mut next = first;
    let mut rate = cfg.rate;
    let mut paused = false;
    // Records are due at `rate` per second since `origin`; `due_base` is the
    // counter at `origin`. Rate changes and pauses restart the reckoning.
    let mut origin = Instant::now();
    let mut due_base = next;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tracing::info!(device = %cfg.name, class = %cfg.class, rate, size = cfg.size, first, "generator started");
    loop {
        ctx.heartbeat.beat();
        tokio::select! {
            _ = ctx.shutdown.changed() => break,
            cmd = ctx.commands.recv() => {
                let Some(cmd) = cmd else { break };
                let burst = handle(&cfg, cmd, next, &mut rate, &mut paused);
                origin = Instant::now();
                if burst > 0 && !emit(&cfg, &mut ctx, &stats, &mut next, burst).await {
                    break;
                }
                due_base = next;
            }
            _ = tick.tick() => {
                if paused {
                    continue;
                }
                let due = due_base + (origin.elapsed().as_secs_f64() * rate) as u64;
                let n = due.saturating_sub(next).min(MAX_BATCH);
                if n > 0 && !emit(&cfg, &mut ctx, &stats, &mut next, n).await {
                    break;
                }
            }
        }
        if *ctx.shutdown.borrow() {
            break;
        }
    }
    tracing::info!(device = %cfg.name, next, "generator stopped");
}

/// Makes `n` records and waits for their commit. Returns false if the store is gone.
async fn emit(
    cfg: &GeneratorConfig,
    ctx: &mut TaskContext,
    stats: &GeneratorStats,
    next: &mut u64,
    n: u64,
) -> bool {
    let records: Vec<NewRecord> = (*next..*next + n)
        .map(|i| NewRecord::new(cfg.class, &cfg.name, KIND, payload(i, cfg.size)))
        .collect();
    *next += n;
    stats.produced.fetch_add(n, Ordering::Relaxed);
    ctx.heartbeat.set_waiting_on_store(true);
    let result = ctx.store.append_batch(records).await;
    ctx.heartbeat.set_waiting_on_store(false);
    match result {
        Ok(_) => {
            stats.stored.fetch_add(n, Ordering::Relaxed);
            let state = serde_json::json!({ "next": *next }).to_string();
            ctx.store.set_device_state(&cfg.name, state).await.is_ok()
        }
        Err(StoreError::Closed) => {
            stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(device = %cfg.name, count = n, first = *next - n, "store closed: these records were not taken");
            false
        }
        Err(e) => {
            stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(device = %cfg.name, count = n, first = *next - n, error = %e, "records were not taken");
            true
        }
    }
}

/// Applies a command; returns how many records to emit at once (`burst`).
fn handle(
    cfg: &GeneratorConfig,
    cmd: DeviceCommand,
    next: u64,
    rate: &mut f64,
    paused: &mut bool,
) -> u64 {
    let mut burst = 0;
    let outcome = match (cmd.action.as_str(), cmd.args.as_slice()) {
        ("ping", []) => CommandOutcome::done(
            serde_json::json!({ "next": next, "rate": *rate, "paused": *paused }),
        ),
        ("pause", []) => {
            *paused = true;
            CommandOutcome::done(serde_json::json!({ "paused": true }))
        }
        ("resume", []) => {
            *paused = false;
            CommandOutcome::done(serde_json::json!({ "paused": false }))
        }
        ("rate", [r]) => match r.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 1_000_000.0 => {
                *rate = r;
                CommandOutcome::done(serde_json::json!({ "rate": r }))
            }
            _ => CommandOutcome::rejected(format!(
                "rate `{r}` is not a number of records per second in (0, 1000000]"
            )),
        },
        ("burst", [n]) => match n.parse::<u64>() {
            Ok(n) if (1..=MAX_BATCH).contains(&n) => {
                burst = n;
                CommandOutcome::done(serde_json::json!({ "burst": n, "first": next }))
            }
            _ => CommandOutcome::rejected(format!("burst `{n}` is not a count in 1..={MAX_BATCH}")),
        },
        // A device whose task stops answering: the watchdog must notice.
        ("hang", [secs]) => match secs.parse::<u64>() {
            Ok(secs) if (1..=3600).contains(&secs) => {
                tracing::warn!(device = %cfg.name, secs, "generator hangs on request");
                std::thread::sleep(Duration::from_secs(secs));
                CommandOutcome::done(serde_json::json!({ "hung_s": secs }))
            }
            _ => CommandOutcome::rejected(format!(
                "hang `{secs}` is not a number of seconds in 1..=3600"
            )),
        },
        // A device that answers "no": lets tests and technicians see the failure path.
        ("fail", _) => CommandOutcome::failed(format!("generator {} was asked to fail", cfg.name)),
        (action, args) => CommandOutcome::rejected(format!(
            "generator {} has no action `{action}` with {} argument(s); actions: ping, pause, resume, rate RECORDS_PER_S, burst COUNT, hang SECONDS, fail",
            cfg.name,
            args.len()
        )),
    };
    tracing::info!(device = %cfg.name, id = cmd.id, action = %cmd.action, status = outcome.status.as_str(), "command");
    let _ = cmd.reply.send(outcome);
    burst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_configured_size_and_counter() {
        for size in [0, 10, 200, 4096] {
            let p = payload(12345, size);
            if size >= 23 {
                assert_eq!(p.len(), size);
            }
            let t: Tick = serde_json::from_str(&p).expect("valid JSON");
            assert_eq!(t.n, 12345);
        }
    }
}
