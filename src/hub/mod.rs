//! `sitelink hub`: the reference upstream. TLS with client certificates
//! required and checked against the site CA; the agent id comes from the
//! certificate and must match the hello; records stored (deduplicated by
//! agent and sequence) before they are acknowledged; commands and configs
//! sent to connected agents through a Unix socket in the data directory
//! (`sitelink hub command`, `sitelink hub push-config`).

pub mod store;

use crate::pki;
use crate::uplink::proto::{
    self, AgentMessage, Batch, Command, ConfigPush, Incoming, Outcome, UpdateOffer,
    UpstreamMessage, Welcome,
};
use crate::uplink::tls;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{HubStore, HubStoreError, SqliteHub};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The control socket in the hub's data directory.
pub const SOCKET_FILE: &str = "hub.sock";
/// TLS, the upgrade and the hello must all be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent for this long is closed (agents ping more often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages waiting to go out to one agent.
const OUTBOX: usize = 64;
/// The longest control request line.
const MAX_REQUEST: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{source}: the hub needs ca.pem, hub.pem and hub.key in {dir} \
         (`sitelink pki init --dir {dir}` and `sitelink pki issue-hub --dir {dir} --name NAME` make them)"
    )]
    Pki {
        dir: PathBuf,
        #[source]
        source: tls::TlsError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] HubStoreError),
    #[error("{0}")]
    Request(String),
}

/// What the hub is started with.
#[derive(Clone, Debug)]
pub struct HubOptions {
    pub listen: SocketAddr,
    /// `ca.pem`, `hub.pem`, `hub.key` (from `sitelink pki`).
    pub pki: PathBuf,
    pub data: PathBuf,
}

/// Connected agents: how to reach each one.
type Agents = Arc<Mutex<HashMap<String, mpsc::Sender<UpstreamMessage>>>>;
/// Requests sent to agents, waiting for their `result`, by id.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

struct Shared<S> {
    store: Arc<Mutex<S>>,
    agents: Agents,
    pending: Pending,
    ids: AtomicU64,
}

/// A running hub.
pub struct Hub {
    pub addr: SocketAddr,
    pub data: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Hub {
    /// Binds, opens the store and serves until `stop`. Must run in tokio.
    pub async fn start(opts: HubOptions) -> Result<Hub, HubError> {
        let store = SqliteHub::open(&opts.data)?;
        Hub::start_with(opts, store).await
    }

    /// `start` with another storage (tests, a fleet's database).
    pub async fn start_with<S: HubStore>(opts: HubOptions, store: S) -> Result<Hub, HubError> {
        let settings = tls::server_config(
            &opts.pki.join(pki::CA_CERT),
            &opts.pki.join(pki::HUB_CERT),
            &opts.pki.join(pki::HUB_KEY),
        )
        .map_err(|source| HubError::Pki {
            dir: opts.pki.clone(),
            source,
        })?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| HubError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| HubError::Listen {
            addr: opts.listen,
            source,
        })?;
        let control = bind_control(&opts.data)?;
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(store)),
            agents: Agents::default(),
            pending: Pending::default(),
            ids: AtomicU64::new(1),
        });
        let (stop, stopped) = watch::channel(false);
        let acceptor = TlsAcceptor::from(settings);
        let serve = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), stopped));
        let ctl = tokio::spawn(control_loop(control, shared));
        tracing::info!(%addr, data = %opts.data.display(), "hub listening");
        Ok(Hub {
            addr,
            data: opts.data,
            stop,
            tasks: vec![serve, ctl],
        })
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let _ = std::fs::remove_file(self.data.join(SOCKET_FILE));
    }
}

fn bind_control(data: &Path) -> Result<UnixListener, HubError> {
    let path = data.join(SOCKET_FILE);
    let err = |source| HubError::Control {
        path: path.clone(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another hub is running on this data directory",
            )));
        }
        std::fs::remove_file(&path).map_err(err)?;
    }
    let listener = UnixListener::bind(&path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

async fn accept_loop<S: HubStore>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(connection(tcp, peer, acceptor.clone(), shared.clone(), stopped.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hub: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Answers the upgrade: only `sitelink.v1` is spoken here.
#[allow(clippy::result_large_err)] // the signature tungstenite asks for
fn choose_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == proto::SUBPROTOCOL);
    if !offered {
        let mut e = ErrorResponse::new(Some(format!(
            "this upstream speaks the WebSocket subprotocol {}; offer it in Sec-WebSocket-Protocol",
            proto::SUBPROTOCOL
        )));
        *e.status_mut() = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    resp.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(proto::SUBPROTOCOL),
    );
    Ok(resp)
}

async fn connection<S: HubStore>(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    let setup = async {
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| match tls::rustls_error(&e) {
                Some(t) => tls::explain_server(t),
                None => format!("TLS handshake failed: {e}"),
            })?;
        let id = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| pki::agent_id_of(c))
            .ok_or("the client certificate names no agent (no common name)")?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(proto::MAX_MESSAGE_BYTES))
            .max_frame_size(Some(proto::MAX_MESSAGE_BYTES));
        let ws =
            tokio_tungstenite::accept_hdr_async_with_config(tls, choose_subprotocol, Some(config))
                .await
                .map_err(|e| format!("agent {id}: WebSocket upgrade failed: {e}"))?;
        Ok::<_, String>((id, ws))
    };
    let (id, mut ws) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, setup).await {
        Ok(Ok(v)) => v,
        Ok(Err(why)) => {
            tracing::warn!(%peer, "hub: refused a connection: {why}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "hub: refused a connection: no TLS and upgrade within {} s", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => match proto::decode_agent(&t) {
            Ok(Incoming::Known(AgentMessage::Hello(h))) => h,
            other => {
                let error = format!("the first message must be a hello, got {other:?}");
                let _ = ws
                    .send(Message::text(proto::encode(&UpstreamMessage::Error {
                        error: error.clone(),
                    })))
                    .await;
                tracing::warn!(%peer, agent = %id, "hub: {error}");
                return;
            }
        },
        _ => {
            tracing::warn!(%peer, agent = %id, "hub: no hello within {} s", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    if hello.agent != id {
        let error = format!(
            "the hello says agent {:?} but the certificate is for {id:?}: set [agent] id = \"{id}\" or use the agent's own certificate",
            hello.agent
        );
        tracing::warn!(%peer, "hub: refused: {error}");
        let _ = ws
            .send(Message::text(proto::encode(&UpstreamMessage::Error {
                error,
            })))
            .await;
        let _ = ws.close(None).await;
        return;
    }
    let acked = {
        let store = shared.store.clone();
        let (h, p) = (hello.clone(), peer.to_string());
        tokio::task::spawn_blocking(move || lock(&store).hello(&h, &p)).await
    };
    let acked = match acked {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::error!(agent = %id, error = %e, "hub: cannot record the hello");
            return;
        }
        Err(_) => return,
    };
    let welcome = UpstreamMessage::Welcome(Welcome {
        version: proto::VERSION.min(hello.version),
        upstream: format!("sitelink-hub {}", env!("CARGO_PKG_VERSION")),
        clock_ms: crate::clock::wall_ms(),
        acked_seq: acked,
    });
    if ws
        .send(Message::text(proto::encode(&welcome)))
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(agent = %id, %peer, software = %hello.software, acked, highest = hello.highest_seq, "hub: agent connected");
    let (tx, mut rx) = mpsc::channel(OUTBOX);
    lock(&shared.agents).insert(id.clone(), tx.clone());
    let mut idle = tokio::time::interval(IDLE_TIMEOUT / 4);
    let mut heard = tokio::time::Instant::now();
    let why = loop {
        tokio::select! {
            _ = stopped.changed() => {
                let _ = ws.close(None).await;
                break "the hub is stopping".to_string();
            }
            out = rx.recv() => {
                let Some(m) = out else { break "replaced".to_string() };
                if let Err(e) = ws.send(Message::text(proto::encode(&m))).await {
                    break e.to_string();
                }
            }
            _ = idle.tick() => {
                if heard.elapsed() > IDLE_TIMEOUT {
                    let _ = ws.close(None).await;
                    break format!("silent for {} s", IDLE_TIMEOUT.as_secs());
                }
            }
            m = ws.next() => {
                heard = tokio::time::Instant::now();
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break "closed by the agent".to_string(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e.to_string(),
                };
                match proto::decode_agent(&text) {
                    Ok(Incoming::Known(AgentMessage::Batch(b))) => {
                        match take_batch(&shared, &id, b).await {
                            Ok(answer) => {
                                if let Err(e) = ws.send(Message::text(proto::encode(&answer))).await {
                                    break e.to_string();
                                }
                            }
                            Err(e) => {
                                // Not acknowledged: the agent sends it again.
                                tracing::error!(agent = %id, error = %e, "hub: cannot store a batch; closing so the agent resends");
                                let _ = ws.close(None).await;
                                break e.to_string();
                            }
                        }
                    }
                    Ok(Incoming::Known(AgentMessage::Result(o))) => {
                        match lock(&shared.pending).remove(&o.id) {
                            Some(waiter) => { let _ = waiter.send(o); }
                            None => tracing::info!(agent = %id, id = %o.id, "hub: a result nobody waits for"),
                        }
                    }
                    Ok(Incoming::Known(AgentMessage::Hello(_))) => {
                        tracing::warn!(agent = %id, "hub: a second hello; ignored");
                    }
                    Ok(Incoming::Unknown { kind, .. }) => {
                        tracing::debug!(agent = %id, %kind, "hub: unknown message type; ignored");
                    }
                    Err(e) => {
                        let error = format!("undecodable message: {e}");
                        let _ = ws.send(Message::text(proto::encode(&UpstreamMessage::Error { error: error.clone() }))).await;
                        let _ = ws.close(None).await;
                        break error;
                    }
                }
            }
        }
    };
    {
        let mut agents = lock(&shared.agents);
        if agents.get(&id).is_some_and(|t| t.same_channel(&tx)) {
            agents.remove(&id);
        }
    }
    tracing::info!(agent = %id, %peer, "hub: agent disconnected: {why}");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; go on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks and stores a batch; the answer is `ack` or `reject`.
async fn take_batch<S: HubStore>(
    shared: &Arc<Shared<S>>,
    agent: &str,
    batch: Batch,
) -> Result<UpstreamMessage, HubStoreError> {
    let store = shared.store.clone();
    let agent = agent.to_string();
    let joined = tokio::task::spawn_blocking(move || {
        if let Err(error) = batch.check() {
            tracing::warn!(%agent, first = batch.first, last = batch.last, %error, "hub: rejected a malformed batch");
            lock(&store).skip(&agent, batch.last)?;
            return Ok(UpstreamMessage::Reject {
                first: batch.first,
                last: batch.last,
                error,
            });
        }
        let stored = lock(&store).store(&agent, &batch)?;
        if stored.repeats > 0 {
            tracing::debug!(%agent, repeats = stored.repeats, "hub: repeats ignored");
        }
        Ok(UpstreamMessage::Ack { up_to: batch.last })
    })
    .await;
    joined.unwrap_or_else(|e| {
        Err(HubStoreError::Io {
            path: PathBuf::from("hub store"),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// A request through the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Command {
        agent: String,
        device: String,
        action: String,
        #[serde(default)]
        args: Vec<String>,
    },
    Config {
        agent: String,
        toml: String,
    },
    /// Offer an update: the agent fetches `url` and checks it against `manifest`.
    Update {
        agent: String,
        url: String,
        manifest: crate::ota::release::Manifest,
    },
    /// Agents connected now.
    Connected,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlResponse {
    Result(Outcome),
    Connected { agents: Vec<String> },
    Error { error: String },
}

async fn control_loop<S: HubStore>(listener: UnixListener, shared: Arc<Shared<S>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(control(stream, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "hub: control accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn control<S: HubStore>(stream: UnixStream, shared: Arc<Shared<S>>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let response = match BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await
    {
        Err(e) => ControlResponse::Error {
            error: format!("cannot read the request: {e}"),
        },
        Ok(_) => match serde_json::from_str::<ControlRequest>(&line) {
            Err(e) => ControlResponse::Error {
                error: format!("bad request: {e}"),
            },
            Ok(ControlRequest::Connected) => {
                let mut agents: Vec<String> = lock(&shared.agents).keys().cloned().collect();
                agents.sort();
                ControlResponse::Connected { agents }
            }
            Ok(ControlRequest::Command {
                agent,
                device,
                action,
                args,
            }) => {
                let id = next_id(&shared, "cmd");
                let m = UpstreamMessage::Command(Command {
                    id: id.clone(),
                    device,
                    action,
                    args,
                });
                ask(&shared, &agent, id, m).await
            }
            Ok(ControlRequest::Update {
                agent,
                url,
                manifest,
            }) => {
                let id = next_id(&shared, "upd");
                let m = UpstreamMessage::Update(UpdateOffer {
                    id: id.clone(),
                    url,
                    manifest,
                });
                ask(&shared, &agent, id, m).await
            }
            Ok(ControlRequest::Config { agent, toml }) => {
                let id = next_id(&shared, "cfg");
                let m = UpstreamMessage::Config(ConfigPush {
                    id: id.clone(),
                    toml,
                });
                ask(&shared, &agent, id, m).await
            }
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

fn next_id<S>(shared: &Shared<S>, prefix: &str) -> String {
    let n = shared.ids.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", crate::clock::wall_ms())
}

/// Sends a request to a connected agent and waits for its result.
async fn ask<S>(
    shared: &Shared<S>,
    agent: &str,
    id: String,
    m: UpstreamMessage,
) -> ControlResponse {
    let Some(tx) = lock(&shared.agents).get(agent).cloned() else {
        let mut connected: Vec<String> = lock(&shared.agents).keys().cloned().collect();
        connected.sort();
        return ControlResponse::Error {
            error: format!(
                "agent {agent} is not connected; connected: {}",
                if connected.is_empty() {
                    "none".to_string()
                } else {
                    connected.join(", ")
                }
            ),
        };
    };
    let (done, answer) = oneshot::channel();
    lock(&shared.pending).insert(id.clone(), done);
    if tx.send(m).await.is_err() {
        lock(&shared.pending).remove(&id);
        return ControlResponse::Error {
            error: format!("agent {agent} disconnected"),
        };
    }
    // The agent's own device timeout is 30 s; a config reload as long.
    match tokio::time::timeout(Duration::from_secs(45), answer).await {
        Ok(Ok(o)) => ControlResponse::Result(o),
        Ok(Err(_)) => ControlResponse::Error {
            error: format!("agent {agent} went away before it answered"),
        },
        Err(_) => {
            lock(&shared.pending).remove(&id);
            ControlResponse::Error {
                error: format!("agent {agent} did not answer within 45 s"),
            }
        }
    }
}

/// Sends one request to the hub serving `data` (the CLI side).
pub async fn call(data: &Path, req: &ControlRequest) -> Result<ControlResponse, HubError> {
    let path = data.join(SOCKET_FILE);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        HubError::Request(format!(
            "no hub is running on {} (nothing answers at {}: {e}); start it with `sitelink hub --listen ADDR --pki DIR --data {}`",
            data.display(),
            path.display(),
            data.display()
        ))
    })?;
    let mut line = serde_json::to_string(req).map_err(|e| HubError::Request(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| HubError::Request(format!("{}: {e}", path.display())))?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_line(&mut answer)
        .await
        .map_err(|e| HubError::Request(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&answer)
        .map_err(|e| HubError::Request(format!("the hub answered {answer:?}: {e}")))
}

/// `sitelink hub --listen ...`: serves until SIGTERM or SIGINT.
pub async fn run(opts: HubOptions) -> Result<(), HubError> {
    use tokio::signal::unix::{SignalKind, signal};
    let hub = Hub::start(opts).await?;
    println!("sitelink hub listening on {}", hub.addr);
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return Err(HubError::Request("cannot install signal handlers".into()));
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    hub.stop().await;
    Ok(())
}
