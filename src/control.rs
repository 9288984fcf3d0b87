//! The control socket: how `sitelink command` reaches the running daemon.
//! A Unix stream socket in `data_dir`; one JSON line in, one JSON line out.

use crate::daemon::dispatch::{CommandReply, CommandRequest, Dispatcher};
use crate::uplink::{UplinkState, UplinkStatus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name in `data_dir`.
pub const SOCKET_FILE: &str = "control.sock";
/// The longest request line taken.
const MAX_REQUEST: u64 = 64 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Is the daemon there?
    Ping,
    Command {
        device: String,
        action: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// Where the uplink stands.
    Uplink,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Response {
    Pong {
        pid: u32,
        version: String,
    },
    Command(CommandReply),
    /// `None`: no `[upstream]`.
    Uplink {
        status: Option<UplinkStatus>,
    },
    Error {
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "sitelink is not running (nothing answers at {path}: {source}); start it with `systemctl start sitelink`"
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {path} did not answer properly: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("no answer from the daemon at {path} within {secs} s")]
    Timeout { path: PathBuf, secs: u64 },
}

/// Serves the socket until the task is dropped.
pub async fn serve(listener: UnixListener, dispatcher: Dispatcher, uplink: UplinkState) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, dispatcher.clone(), uplink.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Binds the socket, replacing a stale file left by a killed daemon.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another sitelink is already running on {} (its control socket answers)",
                    data_dir.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    // The daemon's group (and root) may send commands; nobody else.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

async fn handle(stream: UnixStream, dispatcher: Dispatcher, uplink: UplinkState) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let response = match BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await
    {
        Err(e) => Response::Error {
            error: format!("cannot read the request: {e}"),
        },
        Ok(_) if !line.ends_with('\n') => Response::Error {
            error: format!("the request must be one JSON line of at most {MAX_REQUEST} bytes"),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                error: format!("bad request: {e}"),
            },
            Ok(Request::Uplink) => Response::Uplink {
                status: uplink.get(),
            },
            Ok(Request::Ping) => Response::Pong {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            Ok(Request::Command {
                device,
                action,
                args,
            }) => Response::Command(
                dispatcher
                    .run(CommandRequest {
                        device,
                        action,
                        args,
                        source: "cli".to_string(),
                    })
                    .await,
            ),
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

/// Sends one request to the daemon serving `data_dir` and waits for the answer.
pub async fn call(
    data_dir: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let path = socket_path(data_dir);
    let exchange = async {
        let mut stream =
            UnixStream::connect(&path)
                .await
                .map_err(|source| ControlError::NotRunning {
                    path: path.clone(),
                    source,
                })?;
        let protocol = |detail: String| ControlError::Protocol {
            path: path.clone(),
            detail,
        };
        let mut line = serde_json::to_string(req).map_err(|e| protocol(e.to_string()))?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let mut answer = String::new();
        BufReader::new(stream.take(MAX_REQUEST))
            .read_line(&mut answer)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        serde_json::from_str(&answer).map_err(|e| protocol(format!("{e}: {answer:?}")))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.clone(),
            secs: timeout.as_secs(),
        })?
}
