//! The uplink: what the agent stored goes to the upstream over a mutual-TLS
//! WebSocket, and commands, configuration and updates come back.
//! `proto` is the sans-IO protocol (`docs/PROTOCOL.md`), `tls` the
//! certificates and TLS settings both ends share, `client` the agent's task.

pub mod client;
pub mod proto;
pub mod tls;

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Where the uplink stands, for `sitelink status` and `systemctl status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub url: String,
    /// `connecting`, `connected`, `waiting` (to retry), `stopped`.
    pub state: String,
    /// When `state` began (wall clock ms).
    pub since_ms: i64,
    /// The last failure, as a sentence with what to do.
    pub last_error: Option<String>,
    /// Until the next attempt, while `waiting`.
    pub retry_in_ms: Option<u64>,
    /// The upstream's software, from its `welcome`.
    pub upstream: Option<String>,
    /// When the upstream last acknowledged records (wall clock ms).
    pub last_sync_ms: Option<i64>,
    /// Records acknowledged per second over the last seconds.
    pub drain_per_s: f64,
    /// Records acknowledged since the agent started.
    pub delivered: u64,
    /// Batches the upstream rejected as malformed, set aside (not resent).
    pub set_aside_batches: u64,
    pub set_aside_records: u64,
    /// The upstream's clock minus ours, from the last `welcome`.
    pub clock_offset_ms: Option<i64>,
}

/// The status shared between the uplink task and whoever reports it.
#[derive(Clone, Debug, Default)]
pub struct UplinkState(Arc<Mutex<Option<UplinkStatus>>>);

impl UplinkState {
    /// The current status; `None` when no uplink runs.
    pub fn get(&self) -> Option<UplinkStatus> {
        self.0.lock().map(|s| s.clone()).unwrap_or(None)
    }

    pub fn set(&self, status: Option<UplinkStatus>) {
        if let Ok(mut s) = self.0.lock() {
            *s = status;
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut UplinkStatus)) {
        if let Ok(mut s) = self.0.lock() {
            f(s.get_or_insert_with(UplinkStatus::default));
        }
    }
}
