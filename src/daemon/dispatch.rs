//! The one path for every command, from the CLI today and the upstream
//! later: record it in the command table, hand it to the task that owns the
//! device, wait for the answer, record the outcome, reply.

use super::task::DeviceCommand;
use crate::store::{CommandOutcome, CommandStatus, StoreHandle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a device has to answer a command.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// A command as it arrives from outside.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommandRequest {
    pub device: String,
    pub action: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Who asked: `cli`, `upstream`.
    pub source: String,
}

/// The answer: the command's id in the table (if it got that far) and its outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommandReply {
    pub id: Option<i64>,
    pub status: CommandStatus,
    pub detail: serde_json::Value,
}

enum Msg {
    Register(String, mpsc::Sender<DeviceCommand>),
    Unregister(String),
    Run(CommandRequest, oneshot::Sender<CommandReply>),
}

/// A handle to the dispatcher task; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Msg>,
}

impl Dispatcher {
    /// Starts the dispatcher task.
    pub fn start(store: StoreHandle) -> Dispatcher {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(rx, store));
        Dispatcher { tx }
    }

    pub async fn register(&self, device: &str, commands: mpsc::Sender<DeviceCommand>) {
        let _ = self
            .tx
            .send(Msg::Register(device.to_string(), commands))
            .await;
    }

    pub async fn unregister(&self, device: &str) {
        let _ = self.tx.send(Msg::Unregister(device.to_string())).await;
    }

    /// Runs a command to its end and returns the outcome.
    pub async fn run(&self, req: CommandRequest) -> CommandReply {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Run(req, reply)).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

fn stopped() -> CommandReply {
    let o = CommandOutcome::failed(
        "sitelink is shutting down; send the command again after it restarts",
    );
    CommandReply {
        id: None,
        status: o.status,
        detail: o.detail,
    }
}

async fn run(mut rx: mpsc::Receiver<Msg>, store: StoreHandle) {
    let mut devices: BTreeMap<String, mpsc::Sender<DeviceCommand>> = BTreeMap::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Register(name, tx) => {
                devices.insert(name, tx);
            }
            Msg::Unregister(name) => {
                devices.remove(&name);
            }
            Msg::Run(req, reply) => {
                let target = devices.get(&req.device).cloned();
                let known: Vec<String> = devices.keys().cloned().collect();
                // Each command runs on its own so a slow device delays nobody else.
                tokio::spawn(execute(store.clone(), req, target, known, reply));
            }
        }
    }
}

async fn execute(
    store: StoreHandle,
    req: CommandRequest,
    target: Option<mpsc::Sender<DeviceCommand>>,
    known: Vec<String>,
    reply: oneshot::Sender<CommandReply>,
) {
    let id = match store
        .command_new(&req.device, &req.action, &req.args, &req.source)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            let o = CommandOutcome::failed(format!("the command could not be recorded: {e}"));
            let _ = reply.send(CommandReply {
                id: None,
                status: o.status,
                detail: o.detail,
            });
            return;
        }
    };
    let outcome = match target {
        None => CommandOutcome::rejected(format!(
            "no device `{}` is running; devices: {}",
            req.device,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )),
        Some(tx) => ask(&req, id, tx).await,
    };
    if let Err(e) = store.command_done(id, outcome.clone()).await {
        tracing::error!(id, device = %req.device, error = %e, "command outcome could not be recorded");
    }
    let _ = reply.send(CommandReply {
        id: Some(id),
        status: outcome.status,
        detail: outcome.detail,
    });
}

async fn ask(req: &CommandRequest, id: i64, tx: mpsc::Sender<DeviceCommand>) -> CommandOutcome {
    let (reply, rx) = oneshot::channel();
    let cmd = DeviceCommand {
        id,
        device: req.device.clone(),
        action: req.action.clone(),
        args: req.args.clone(),
        reply,
    };
    if let Err(e) = tx.try_send(cmd) {
        return CommandOutcome::failed(match e {
            mpsc::error::TrySendError::Full(_) => format!(
                "device {} has too many commands waiting; try again shortly",
                req.device
            ),
            mpsc::error::TrySendError::Closed(_) => {
                format!("device {} stopped before it took the command", req.device)
            }
        });
    }
    match tokio::time::timeout(DEVICE_TIMEOUT, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => {
            CommandOutcome::failed(format!("device {} stopped before it answered", req.device))
        }
        Err(_) => CommandOutcome::failed(format!(
            "device {} did not answer within {} s",
            req.device,
            DEVICE_TIMEOUT.as_secs()
        )),
    }
}
