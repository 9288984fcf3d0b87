//! The agent's uplink task: connects to the upstream over mutual TLS, says
//! hello, drains the store's outbox in batches through the ack window,
//! acknowledges in the store what the upstream acknowledged, and takes
//! commands, configuration and update offers. One task; it reconnects with
//! capped exponential backoff and full jitter, and never stops collection:
//! the store is the buffer.

use super::proto::window::Window;
use super::proto::{
    self, AgentMessage, Batch, Hello, Incoming, Outcome, Status, UpdateOffer, UpstreamMessage,
    WireRecord,
};
use super::{UplinkState, tls};
use crate::config::UpstreamConfig;
use crate::daemon::dispatch::{CommandRequest, Dispatcher};
use crate::daemon::task::Heartbeat;
use crate::store::{Class, NewRecord, Reader, Record, StoreError, StoreHandle};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// How long the TCP connect, TLS and WebSocket handshakes may take together,
/// and the wait for the `welcome`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Outbox reads when nothing was waiting last time, at most this far apart.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// A batch stops growing at this many bytes of payload, far below the limit.
const BATCH_BYTES: usize = proto::MAX_MESSAGE_BYTES / 4;
/// Results waiting to go out (they wait across a reconnect).
const RESULTS_QUEUE: usize = 64;
/// How long a pushed config may take to apply.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The span over which the drain rate is measured.
const RATE_SPAN: Duration = Duration::from_secs(10);
/// How often the task shows the watchdog it is alive while it waits.
const BEAT: Duration = Duration::from_secs(1);
/// The device name of the uplink's own records (set-aside batches).
pub const UPLINK_DEVICE: &str = "uplink";

/// A pushed configuration, written to disk, to be applied by the daemon's
/// reload; the answer is the new summary, or why it was not applied.
pub struct ReloadRequest {
    pub done: oneshot::Sender<Result<String, String>>,
}

/// An update offered by the upstream, for the daemon to fetch and install;
/// the answer is the `result` to send.
pub struct UpdateRequest {
    pub offer: UpdateOffer,
    pub done: oneshot::Sender<Outcome>,
}

/// Everything the uplink task is started with.
pub struct UplinkContext {
    pub agent: String,
    pub store: StoreHandle,
    pub db_path: PathBuf,
    pub dispatcher: Dispatcher,
    /// The running config file: pushed configs replace it.
    pub config_path: PathBuf,
    /// The daemon's reload; `None`: config pushes are refused.
    pub reloads: Option<mpsc::Sender<ReloadRequest>>,
    /// The daemon's updater; `None`: update offers are refused.
    pub updates: Option<mpsc::Sender<UpdateRequest>>,
    /// `[upstream]` as in force; a change (reload) means reconnect.
    pub config: watch::Receiver<UpstreamConfig>,
    pub shutdown: watch::Receiver<bool>,
    pub state: UplinkState,
    pub heartbeat: Arc<Heartbeat>,
}

/// Why a connection attempt or a session ended.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Tls(String),
    #[error("the upstream at {url} broke the protocol: {detail}")]
    Protocol { url: String, detail: String },
    #[error("the connection to {url} was lost: {detail}")]
    Lost { url: String, detail: String },
    #[error("the upstream at {url} said: {error}")]
    Upstream { url: String, error: String },
    #[error("{0}")]
    Settings(String),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// Capped exponential backoff with full jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let cap = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // Full jitter: anywhere from nothing to the cap, so agents that lost
        // the upstream together do not come back together.
        cap.mul_f64(rand::random::<f64>())
            .max(Duration::from_millis(1))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs the uplink until shutdown.
pub async fn run(mut ctx: UplinkContext) {
    let cfg = ctx.config.borrow().clone();
    let mut backoff = Backoff {
        min: cfg.backoff_min,
        max: cfg.backoff_max,
        attempt: 0,
    };
    let (results_tx, mut results_rx) = mpsc::channel(RESULTS_QUEUE);
    let mut client = Client {
        ack: None,
        rates: VecDeque::new(),
        results: results_tx,
        reader: None,
    };
    set_state(&ctx.state, &cfg.url, "connecting", None);
    tracing::info!(url = %cfg.url, "uplink started");
    loop {
        ctx.heartbeat.beat();
        if stopping(&ctx) {
            break;
        }
        let cfg = ctx.config.borrow_and_update().clone();
        backoff.min = cfg.backoff_min;
        backoff.max = cfg.backoff_max;
        set_state(&ctx.state, &cfg.url, "connecting", None);
        let started = Instant::now();
        let connected = tokio::select! {
            c = beating(&ctx.heartbeat, connect(&cfg)) => c,
            _ = ctx.shutdown.changed() => break,
        };
        let end = match connected {
            Ok(ws) => client.session(&mut ctx, &cfg, ws, &mut results_rx).await,
            Err(e) => Err(e),
        };
        if stopping(&ctx) {
            break;
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff.reset();
        }
        let error = match end {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(url = %cfg.url, "uplink: {e}");
                Some(e.to_string())
            }
        };
        let wait = backoff.next();
        ctx.state.update(|s| {
            s.state = "waiting".into();
            s.since_ms = crate::clock::wall_ms();
            s.retry_in_ms = Some(wait.as_millis() as u64);
            if error.is_some() {
                s.last_error = error;
            }
        });
        let until = Instant::now() + wait;
        loop {
            ctx.heartbeat.beat();
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(Instant::now() + Duration::from_secs(1))) => {
                    if Instant::now() >= until { break; }
                }
                _ = ctx.shutdown.changed() => break,
                _ = ctx.config.changed() => {
                    backoff.reset();
                    break;
                }
            }
        }
    }
    if let Some(ack) = client.ack.take() {
        ack.finish().await;
    }
    set_state(&ctx.state, &cfg.url, "stopped", None);
    tracing::info!("uplink stopped");
}

/// Whether the task must end: asked to, or its daemon side is gone.
fn stopping(ctx: &UplinkContext) -> bool {
    *ctx.shutdown.borrow()
        || ctx.shutdown.has_changed().is_err()
        || ctx.config.has_changed().is_err()
}

/// Awaits `f`, beating the heartbeat meanwhile: a slow connection attempt
/// is not a stuck task.
async fn beating<T>(heartbeat: &Heartbeat, f: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(f);
    let mut beat = tokio::time::interval(BEAT);
    loop {
        tokio::select! {
            out = &mut f => return out,
            _ = beat.tick() => heartbeat.beat(),
        }
    }
}

fn set_state(state: &UplinkState, url: &str, what: &str, error: Option<String>) {
    state.update(|s| {
        s.url = url.to_string();
        s.state = what.to_string();
        s.since_ms = crate::clock::wall_ms();
        s.retry_in_ms = None;
        if error.is_some() {
            s.last_error = error;
        }
    });
}

/// Commits acknowledgements to the store in the background, newest first:
/// the store only needs the highest.
struct Acker {
    tx: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Acker {
    fn start(store: StoreHandle, from: u64, state: UplinkState) -> Acker {
        let (tx, mut rx) = watch::channel(from);
        let task = tokio::spawn(async move {
            let mut done = from;
            loop {
                let up_to = *rx.borrow_and_update();
                if up_to > done {
                    match store.ack(up_to).await {
                        Ok(()) => {
                            done = up_to;
                            state.update(|s| s.last_sync_ms = Some(crate::clock::wall_ms()));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, up_to, "uplink: the acknowledgement could not be stored; the records will be sent again");
                        }
                    }
                    continue;
                }
                if rx.changed().await.is_err() {
                    // The sender is gone: one last look, then stop.
                    let last = *rx.borrow();
                    if last > done {
                        let _ = store.ack(last).await;
                    }
                    return;
                }
            }
        });
        Acker { tx, task }
    }

    fn ack(&self, up_to: u64) {
        self.tx.send_if_modified(|v| {
            let moved = up_to > *v;
            *v = (*v).max(up_to);
            moved
        });
    }

    async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

struct Client {
    ack: Option<Acker>,
    /// Records acknowledged, with when, for the drain rate.
    rates: VecDeque<(Instant, usize)>,
    results: mpsc::Sender<Outcome>,
    reader: Option<Reader>,
}

/// A session's view of time against the upstream's clock.
struct Clock {
    /// The upstream's clock at our monotonic `at`.
    upstream_ms: i64,
    at_mono_ms: i64,
    boot_id: String,
}

impl Clock {
    /// For a record taken with an unsynchronised clock in this boot: its time
    /// by the upstream's clock.
    fn estimate(&self, r: &Record) -> Option<i64> {
        (!r.clock_synced && r.boot_id == self.boot_id)
            .then(|| self.upstream_ms + (r.mono_ms - self.at_mono_ms))
    }
}

async fn connect(cfg: &UpstreamConfig) -> Result<Ws, UplinkError> {
    let settings = tls::client_config(&cfg.ca, &cfg.cert, &cfg.key)
        .map_err(|e| UplinkError::Settings(format!("[upstream] certificates: {e}")))?;
    let url = &cfg.url;
    let attempt = async {
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|e| UplinkError::Connect(explain_connect(&e, cfg)))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from(cfg.host.clone()).map_err(|_| {
            UplinkError::Settings(format!(
                "{url}: {:?} is neither a DNS name nor an IP address",
                cfg.host
            ))
        })?;
        let stream = TlsConnector::from(settings)
            .connect(name, tcp)
            .await
            .map_err(|e| tls_failure(&e, cfg))?;
        let mut request = url.as_str().into_client_request().map_err(|e| {
            UplinkError::Settings(format!("{url} is not a usable WebSocket URL: {e}"))
        })?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(proto::SUBPROTOCOL),
        );
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(proto::MAX_MESSAGE_BYTES))
            .max_frame_size(Some(proto::MAX_MESSAGE_BYTES));
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
                .await
                .map_err(|e| ws_failure(e, cfg))?;
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if chosen != Some(proto::SUBPROTOCOL) {
            return Err(UplinkError::Protocol {
                url: url.clone(),
                detail: format!(
                    "it did not agree to {} (it answered {chosen:?}): it is not a sitelink upstream, \
                     or it speaks only another version",
                    proto::SUBPROTOCOL
                ),
            });
        }
        Ok(ws)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            UplinkError::Connect(format!(
                "no answer from {url} within {} s: check the address and that the hub is running and reachable",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })?
}

fn explain_connect(e: &std::io::Error, cfg: &UpstreamConfig) -> String {
    let at = format!("{}:{}", cfg.host, cfg.port);
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!(
            "{}: connection refused at {at}: is the hub running and listening on that port?",
            cfg.url
        ),
        std::io::ErrorKind::TimedOut => format!(
            "{}: no answer from {at}: check the network and firewall",
            cfg.url
        ),
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => format!(
            "{}: cannot resolve {:?} ({e}): check the host name and DNS",
            cfg.url, cfg.host
        ),
        _ => format!("{}: cannot connect to {at}: {e}", cfg.url),
    }
}

fn tls_failure(e: &std::io::Error, cfg: &UpstreamConfig) -> UplinkError {
    match tls::rustls_error(e) {
        Some(t) => UplinkError::Tls(tls::explain_client(
            t,
            &cfg.url,
            &cfg.ca,
            &cfg.cert,
            crate::clock::wall_clock_synced(),
        )),
        None => UplinkError::Lost {
            url: cfg.url.clone(),
            detail: format!("during the TLS handshake: {e}"),
        },
    }
}

fn ws_failure(e: tungstenite::Error, cfg: &UpstreamConfig) -> UplinkError {
    match e {
        // With TLS 1.3 the upstream's verdict on our certificate arrives
        // after the handshake, as the first thing read.
        tungstenite::Error::Io(io) => tls_failure(&io, cfg),
        tungstenite::Error::Tls(t) => UplinkError::Tls(format!("{}: {t}", cfg.url)),
        tungstenite::Error::Http(r) => UplinkError::Protocol {
            url: cfg.url.clone(),
            detail: format!(
                "it refused the WebSocket upgrade with HTTP {}{}",
                r.status(),
                r.body()
                    .as_ref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(|b| format!(": {}", b.trim()))
                    .unwrap_or_default()
            ),
        },
        other => UplinkError::Lost {
            url: cfg.url.clone(),
            detail: other.to_string(),
        },
    }
}

/// Where a session sends: the socket, its URL for messages, and the
/// watchdog's heartbeat, kept beating while a send waits on a slow link.
struct Link<'a> {
    ws: &'a mut Ws,
    url: &'a str,
    heartbeat: &'a Heartbeat,
    /// A send that waits longer than this means the connection is dead.
    timeout: Duration,
}

impl Link<'_> {
    /// Sends one message; a failure ends the session.
    async fn send(&mut self, m: &AgentMessage) -> Result<(), UplinkError> {
        self.frame(Message::text(proto::encode(m))).await
    }

    async fn frame(&mut self, frame: Message) -> Result<(), UplinkError> {
        let lost = |detail: String| UplinkError::Lost {
            url: self.url.to_string(),
            detail,
        };
        match tokio::time::timeout(self.timeout, beating(self.heartbeat, self.ws.send(frame))).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(lost(e.to_string())),
            Err(_) => Err(lost(format!(
                "a send waited {} s (timeout_s): the connection is dead",
                self.timeout.as_secs()
            ))),
        }
    }
}

impl Client {
    /// The outbox reader, opened on first use (the daemon made the file).
    async fn read<T: Send + 'static>(
        &mut self,
        db: &Path,
        f: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, UplinkError> {
        let reader = self.reader.take();
        let db = db.to_path_buf();
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let reader = match reader {
                Some(r) => r,
                None => match Reader::open(&db) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&reader);
            (Some(reader), result)
        })
        .await
        .map_err(|e| UplinkError::Store(StoreError::Invalid(e.to_string())))?;
        self.reader = reader;
        Ok(result?)
    }

    fn record_rate(&mut self, state: &UplinkState, records: usize) {
        let now = Instant::now();
        self.rates.push_back((now, records));
        while self
            .rates
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN)
        {
            self.rates.pop_front();
        }
        let span = self
            .rates
            .front()
            .map_or(RATE_SPAN, |(t, _)| now.duration_since(*t))
            .max(Duration::from_secs(1));
        let total: usize = self.rates.iter().map(|(_, n)| n).sum();
        state.update(|s| {
            s.delivered += records as u64;
            s.drain_per_s = total as f64 / span.as_secs_f64();
        });
    }

    async fn session(
        &mut self,
        ctx: &mut UplinkContext,
        cfg: &UpstreamConfig,
        mut ws: Ws,
        results: &mut mpsc::Receiver<Outcome>,
    ) -> Result<(), UplinkError> {
        let url = cfg.url.as_str();
        let (highest, acked) = self
            .read(&ctx.db_path, |r| Ok((r.highest_seq()?, r.acked()?)))
            .await?;
        let boot_id = crate::clock::boot_id();
        let hello_mono = crate::clock::mono_ms();
        let hello = Hello {
            version: proto::VERSION,
            agent: ctx.agent.clone(),
            software: format!("sitelink {}", env!("CARGO_PKG_VERSION")),
            boot_id: boot_id.clone(),
            clock_ms: crate::clock::wall_ms(),
            clock_synced: crate::clock::wall_clock_synced(),
            mono_ms: hello_mono,
            highest_seq: highest,
            acked_seq: acked,
        };
        let mut link = Link {
            ws: &mut ws,
            url,
            heartbeat: &ctx.heartbeat,
            timeout: cfg.dead_after,
        };
        link.send(&AgentMessage::Hello(hello)).await?;
        let welcome = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            beating(&ctx.heartbeat, async {
                loop {
                    match link.ws.next().await {
                        Some(Ok(Message::Text(t))) => return decode(url, &t),
                        Some(Ok(Message::Close(f))) => {
                            return Err(UplinkError::Lost {
                                url: url.to_string(),
                                detail: format!(
                                    "closed before its welcome{}",
                                    f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                                ),
                            });
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(ws_failure(e, cfg)),
                        None => {
                            return Err(UplinkError::Lost {
                                url: url.to_string(),
                                detail: "closed before its welcome".into(),
                            });
                        }
                    }
                }
            }),
        )
        .await
        .map_err(|_| UplinkError::Protocol {
            url: url.to_string(),
            detail: format!("no welcome within {} s", HANDSHAKE_TIMEOUT.as_secs()),
        })??;
        let welcome = match welcome {
            Incoming::Known(UpstreamMessage::Welcome(w)) => w,
            Incoming::Known(UpstreamMessage::Error { error }) => {
                return Err(UplinkError::Upstream {
                    url: url.to_string(),
                    error,
                });
            }
            other => {
                return Err(UplinkError::Protocol {
                    url: url.to_string(),
                    detail: format!("expected its welcome, got {other:?}"),
                });
            }
        };
        let now_mono = crate::clock::mono_ms();
        let rtt = (now_mono - hello_mono).max(0);
        let clock = Clock {
            upstream_ms: welcome.clock_ms + rtt / 2,
            at_mono_ms: now_mono,
            boot_id,
        };
        let offset = clock.upstream_ms - crate::clock::wall_ms();
        if welcome.acked_seq > highest {
            // New records must not reuse numbers the upstream already holds:
            // it would take them for resends.
            let next = ctx.store.move_past(welcome.acked_seq).await?;
            tracing::error!(
                upstream_acked = welcome.acked_seq,
                highest,
                next,
                "the upstream holds records of agent {} beyond any in this store: the data \
                 directory was restored or replaced, or another machine uses this id; \
                 new records are numbered above the upstream's",
                ctx.agent
            );
        }
        let mut window = Window::new(cfg.window, acked);
        if let Some(moved) = window.resume(welcome.acked_seq, highest) {
            tracing::info!(
                up_to = moved,
                "uplink: the upstream already holds these records"
            );
        }
        let acker = match self.ack.take() {
            Some(a) => a,
            None => Acker::start(ctx.store.clone(), acked, ctx.state.clone()),
        };
        acker.ack(window.acked());
        self.ack = Some(acker);
        tracing::info!(url, upstream = %welcome.upstream, offset_ms = offset, "uplink connected");
        ctx.state.update(|s| {
            s.state = "connected".into();
            s.since_ms = crate::clock::wall_ms();
            s.upstream = Some(welcome.upstream.clone());
            s.clock_offset_ms = Some(offset);
            s.retry_in_ms = None;
            s.last_error = None;
        });

        let mut ping = tokio::time::interval(cfg.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(BEAT);
        let mut heard = Instant::now();
        let mut next_read = Instant::now();
        let mut pending_since: Option<Instant> = None;
        loop {
            ctx.heartbeat.beat();
            let room = window.read_after().is_some();
            tokio::select! {
                _ = ctx.shutdown.changed() => {
                    let _ = link.ws.close(None).await;
                    return Ok(());
                }
                changed = ctx.config.changed() => {
                    let _ = link.ws.close(None).await;
                    if changed.is_ok() {
                        tracing::info!("uplink: [upstream] changed, reconnecting");
                    }
                    return Ok(());
                }
                m = link.ws.next() => {
                    heard = Instant::now();
                    let text = match m {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(f))) => {
                            return Err(UplinkError::Lost {
                                url: url.to_string(),
                                detail: format!("the upstream closed the connection{}", f.map(|f| format!(": {} {}", f.code, f.reason)).unwrap_or_default()),
                            });
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(ws_failure(e, cfg)),
                        None => return Err(UplinkError::Lost { url: url.to_string(), detail: "the connection closed".into() }),
                    };
                    self.handle(ctx, &mut link, &mut window, decode(url, &text)?).await?;
                }
                _ = beat.tick() => {}
                Some(outcome) = results.recv() => {
                    link.send(&AgentMessage::Result(outcome)).await?;
                }
                _ = ping.tick() => {
                    let now = Instant::now();
                    if now.duration_since(heard) > cfg.dead_after || window.overdue(now.into_std(), cfg.dead_after) {
                        return Err(UplinkError::Lost {
                            url: url.to_string(),
                            detail: format!("nothing heard for {} s (timeout_s): the connection is dead", cfg.dead_after.as_secs()),
                        });
                    }
                    link.frame(Message::Ping(Vec::new().into())).await?;
                }
                _ = tokio::time::sleep_until(next_read), if room => {
                    let Some(after) = window.read_after() else { continue };
                    let limit = cfg.batch_records;
                    let records = self.read(&ctx.db_path, move |r| r.read_batch(after, limit)).await?;
                    let now = Instant::now();
                    let waited = pending_since.is_some_and(|t| now.duration_since(t) >= cfg.batch_wait);
                    if records.is_empty() {
                        pending_since = None;
                        next_read = now + IDLE_POLL.min(cfg.batch_wait);
                    } else if records.len() >= limit || waited {
                        pending_since = None;
                        let batch = to_batch(records, &clock);
                        let (first, last, n) = (batch.first, batch.last, batch.records.len());
                        link.send(&AgentMessage::Batch(batch)).await?;
                        window.sent(first, last, n, now.into_std());
                        next_read = now;
                    } else {
                        let since = *pending_since.get_or_insert(now);
                        next_read = since + cfg.batch_wait;
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        ctx: &UplinkContext,
        link: &mut Link<'_>,
        window: &mut Window,
        m: Incoming<UpstreamMessage>,
    ) -> Result<(), UplinkError> {
        let url = link.url;
        let protocol = |detail: String| UplinkError::Protocol {
            url: url.to_string(),
            detail,
        };
        match m {
            Incoming::Known(UpstreamMessage::Ack { up_to }) => {
                let settled = window.ack(up_to).map_err(|e| protocol(e.to_string()))?;
                self.settled(ctx, settled.acked, settled.records);
            }
            Incoming::Known(UpstreamMessage::Reject { first, last, error }) => {
                let settled = window
                    .reject(first, last)
                    .map_err(|e| protocol(e.to_string()))?;
                let records = settled.records;
                tracing::error!(first, last, records, %error, "uplink: the upstream rejected a batch as malformed; it is set aside and not sent again");
                ctx.state.update(|s| {
                    s.set_aside_batches += 1;
                    s.set_aside_records += records as u64;
                });
                // Kept in the store too, so the loss is on record upstream.
                let note = NewRecord::new(
                    Class::Event,
                    UPLINK_DEVICE,
                    "uplink.set_aside",
                    serde_json::json!({ "first_seq": first, "last_seq": last, "records": records, "error": error })
                        .to_string(),
                );
                let store = ctx.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.append(note).await {
                        tracing::error!(error = %e, "uplink: cannot record the set-aside batch");
                    }
                });
                self.settled(ctx, settled.acked, 0);
            }
            Incoming::Known(UpstreamMessage::Command(c)) => {
                let dispatcher = ctx.dispatcher.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    let reply = dispatcher
                        .run(CommandRequest {
                            device: c.device,
                            action: c.action,
                            args: c.args,
                            source: "upstream".into(),
                        })
                        .await;
                    let status = match reply.status {
                        crate::store::CommandStatus::Done => Status::Done,
                        crate::store::CommandStatus::Failed => Status::Failed,
                        crate::store::CommandStatus::Rejected => Status::Rejected,
                    };
                    let _ = results
                        .send(Outcome {
                            id: c.id,
                            status,
                            detail: reply.detail,
                        })
                        .await;
                });
            }
            Incoming::Known(UpstreamMessage::Config(push)) => {
                let path = ctx.config_path.clone();
                let reloads = ctx.reloads.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    let outcome = apply_config(&path, &push.toml, reloads).await;
                    let (status, detail) = match outcome {
                        Ok(summary) => (Status::Done, serde_json::json!({ "summary": summary })),
                        Err((status, errors)) => (status, serde_json::json!({ "errors": errors })),
                    };
                    let _ = results
                        .send(Outcome {
                            id: push.id,
                            status,
                            detail,
                        })
                        .await;
                });
            }
            Incoming::Known(UpstreamMessage::Update(offer)) => {
                tracing::info!(version = %offer.manifest.version, url = %offer.url, "uplink: an update was offered");
                let id = offer.id.clone();
                let Some(updates) = ctx.updates.clone() else {
                    let outcome = Outcome {
                        id,
                        status: Status::Rejected,
                        detail: serde_json::json!({
                            "error": "this agent runs without an updater (not as `sitelink run`)"
                        }),
                    };
                    link.send(&AgentMessage::Result(outcome)).await?;
                    return Ok(());
                };
                let results = self.results.clone();
                // The download may take minutes: the session goes on meanwhile.
                tokio::spawn(async move {
                    let (done, answer) = oneshot::channel();
                    let outcome = match updates.send(UpdateRequest { offer, done }).await {
                        Ok(()) => answer.await.ok(),
                        Err(_) => None,
                    };
                    let outcome = outcome.unwrap_or_else(|| Outcome {
                        id,
                        status: Status::Failed,
                        detail: serde_json::json!({"error": "the daemon is stopping"}),
                    });
                    let _ = results.send(outcome).await;
                });
            }
            Incoming::Known(UpstreamMessage::Error { error }) => {
                return Err(UplinkError::Upstream {
                    url: url.to_string(),
                    error,
                });
            }
            Incoming::Known(UpstreamMessage::Welcome(_)) => {
                return Err(protocol("a second welcome".into()));
            }
            Incoming::Unknown { kind, id } => {
                tracing::debug!(%kind, "uplink: a message type this version does not know");
                if let Some(id) = id {
                    let outcome = Outcome {
                        id,
                        status: Status::Rejected,
                        detail: serde_json::json!({
                            "error": format!("unknown message type `{kind}` (this agent speaks {})", proto::SUBPROTOCOL)
                        }),
                    };
                    link.send(&AgentMessage::Result(outcome)).await?;
                }
            }
        }
        Ok(())
    }

    fn settled(&mut self, ctx: &UplinkContext, acked: Option<u64>, records: usize) {
        if let (Some(up_to), Some(acker)) = (acked, &self.ack) {
            acker.ack(up_to);
        }
        if records > 0 {
            self.record_rate(&ctx.state, records);
        }
    }
}

fn decode(url: &str, text: &str) -> Result<Incoming<UpstreamMessage>, UplinkError> {
    proto::decode_upstream(text).map_err(|e| UplinkError::Protocol {
        url: url.to_string(),
        detail: e.to_string(),
    })
}

fn to_batch(records: Vec<Record>, clock: &Clock) -> Batch {
    let mut out = Vec::with_capacity(records.len());
    let mut bytes = 0;
    for r in records {
        bytes += r.payload.len();
        // Never an empty batch: the first record goes whatever its size.
        if bytes > BATCH_BYTES && !out.is_empty() {
            break;
        }
        let est_time_ms = clock.estimate(&r);
        out.push(WireRecord {
            seq: r.seq,
            class: r.class.as_str().to_string(),
            payload: proto::payload(&r.payload),
            device: r.device,
            kind: r.kind,
            time_ms: r.wall_ms,
            mono_ms: r.mono_ms,
            boot_id: r.boot_id,
            clock_synced: r.clock_synced,
            est_time_ms,
        });
    }
    let first = out.first().map_or(0, |r| r.seq);
    let last = out.last().map_or(0, |r| r.seq);
    Batch {
        first,
        last,
        records: out,
    }
}

/// Validates a pushed config as `check-config` does, writes it over the
/// running file atomically and has the daemon reload it. The error says
/// whether it was refused (`Rejected`, the old config stays) or failed.
async fn apply_config(
    path: &Path,
    text: &str,
    reloads: Option<mpsc::Sender<ReloadRequest>>,
) -> Result<String, (Status, Vec<String>)> {
    let Some(reloads) = reloads else {
        return Err((
            Status::Rejected,
            vec!["this agent runs without a config file to replace (not as `sitelink run`)".into()],
        ));
    };
    let config = match crate::config::parse(path, text) {
        Ok(c) => c,
        Err(e) => {
            return Err((
                Status::Rejected,
                e.diagnostics.iter().map(|d| d.to_string()).collect(),
            ));
        }
    };
    if config.upstream.is_none() {
        return Err((
            Status::Rejected,
            vec![
                "the new config has no [upstream]: applying it would cut this agent off; refused"
                    .into(),
            ],
        ));
    }
    let (p, t) = (path.to_path_buf(), text.to_string());
    let written = tokio::task::spawn_blocking(move || write_atomically(&p, &t)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err((
                Status::Failed,
                vec![format!("cannot write {}: {e}", path.display())],
            ));
        }
        Err(e) => return Err((Status::Failed, vec![e.to_string()])),
    }
    tracing::info!(path = %path.display(), "uplink: a new config was pushed and written; reloading");
    let (done, answer) = oneshot::channel();
    if reloads.send(ReloadRequest { done }).await.is_err() {
        return Err((Status::Failed, vec!["the daemon is stopping".into()]));
    }
    match tokio::time::timeout(RELOAD_TIMEOUT, answer).await {
        Ok(Ok(Ok(summary))) => Ok(summary),
        Ok(Ok(Err(e))) => Err((Status::Failed, vec![e])),
        Ok(Err(_)) => Err((Status::Failed, vec!["the daemon is stopping".into()])),
        Err(_) => Err((
            Status::Failed,
            vec![format!(
                "written, but not applied within {} s",
                RELOAD_TIMEOUT.as_secs()
            )],
        )),
    }
}

/// Replaces `path` with `text` so that a crash leaves the old or the new
/// file, never half of one; keeps the old file's permissions.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempt: 0,
        };
        for _ in 0..10 {
            assert!(b.next() <= Duration::from_secs(2));
        }
        assert_eq!(b.attempt, 10);
        b.reset();
        for _ in 0..50 {
            let mut fresh = Backoff { attempt: 0, ..b };
            assert!(fresh.next() <= Duration::from_millis(100));
        }
    }

    #[test]
    fn unsynced_records_of_this_boot_get_the_upstreams_time() {
        let clock = Clock {
            upstream_ms: 1_000_000,
            at_mono_ms: 5000,
            boot_id: "b1".into(),
        };
        let mut r = Record {
            seq: 1,
            agent: "a".into(),
            class: Class::Event,
            device: "d".into(),
            kind: "k".into(),
            payload: "{}".into(),
            wall_ms: 12,
            mono_ms: 3000,
            boot_id: "b1".into(),
            clock_synced: false,
        };
        assert_eq!(clock.estimate(&r), Some(998_000));
        r.boot_id = "b0".into();
        assert_eq!(clock.estimate(&r), None, "another boot: no common clock");
        r.boot_id = "b1".into();
        r.clock_synced = true;
        assert_eq!(clock.estimate(&r), None);
    }
}
