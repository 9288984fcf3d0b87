//! What every device task gets from the daemon: the store, its command
//! queue, the shutdown signal and a heartbeat for the watchdog. SAS lines
//! and TVs plug in here the same way the generator does.

use crate::store::{CommandOutcome, StoreHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use tokio::sync::{mpsc, oneshot, watch};

/// Commands that may wait for one device before the dispatcher says "busy".
pub const COMMAND_QUEUE: usize = 16;

/// A command for the device that owns it; the task answers through `reply`.
#[derive(Debug)]
pub struct DeviceCommand {
    pub id: i64,
    /// The device it is for: one task may own several (a SAS line's EGMs).
    pub device: String,
    pub action: String,
    pub args: Vec<String>,
    pub reply: oneshot::Sender<CommandOutcome>,
}

/// A task's sign of life, read by the watchdog.
#[derive(Debug)]
pub struct Heartbeat {
    name: String,
    last_ms: AtomicI64,
    /// Waiting for the store to commit: the store's own health covers that
    /// wait, so a full disk does not make a device task look stuck.
    waiting_on_store: AtomicBool,
}

impl Heartbeat {
    pub fn new(name: &str) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            name: name.to_string(),
            last_ms: AtomicI64::new(crate::clock::mono_ms()),
            waiting_on_store: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn beat(&self) {
        self.last_ms
            .store(crate::clock::mono_ms(), Ordering::Relaxed);
    }

    pub fn set_waiting_on_store(&self, waiting: bool) {
        self.waiting_on_store.store(waiting, Ordering::Relaxed);
        self.beat();
    }

    /// Milliseconds since the last beat, or 0 while waiting on the store.
    pub fn silent_for_ms(&self) -> i64 {
        if self.waiting_on_store.load(Ordering::Relaxed) {
            return 0;
        }
        crate::clock::mono_ms() - self.last_ms.load(Ordering::Relaxed)
    }
}

/// Everything a device task is started with.
pub struct TaskContext {
    pub store: StoreHandle,
    pub commands: mpsc::Receiver<DeviceCommand>,
    /// Becomes `true` when the task must stop (shutdown, or its device was
    /// removed or changed by a reload).
    pub shutdown: watch::Receiver<bool>,
    pub heartbeat: Arc<Heartbeat>,
}
