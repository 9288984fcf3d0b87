//! `adb::transport`: one TCP connection to one TV, driving the sans-IO
//! [`proto::Connection`](super::proto::Connection). It connects with a
//! timeout, sets keep-alive and a user timeout (a TV whose power was cut
//! leaves a half-open socket that would otherwise hang for minutes), runs
//! the handshake, and carries requests on streams, each with its own
//! deadline. The TV's task owns it; nothing in here is shared.
//!
//! [`Session::next`] is cancel-safe: unsent bytes and half-read input live in
//! the session, never in the future, so the task may `select!` it against
//! its commands and timers.
//!
//! The session runs over any byte stream ([`Session::over`]): plain TCP
//! today. Android 11+ wireless debugging wraps the same stream in TLS after
//! STLS, which then goes in as another stream; until that is built the
//! handshake reports such a TV ([`ConnectError::TlsRequired`]).

use super::proto::{
    AdbKey, Config, Connection, ConnectionError, Event, LocalId, Peer, ShellCollector, ShellError,
    ShellOutput, ShellRequest, State, StreamError, UseError,
};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Keep-alive and user timeout on the socket (§6): idle 15 s, probe every
/// 5 s, 3 probes; unacknowledged data fails the socket after 20 s.
const KEEPALIVE_IDLE_S: i32 = 15;
const KEEPALIVE_INTERVAL_S: i32 = 5;
const KEEPALIVE_PROBES: i32 = 3;
const USER_TIMEOUT_MS: u32 = 20_000;

/// Why a connection could not be made or ended; the words a technician
/// reads in `sitelink status`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "connection refused: network debugging is off on the TV (it turns off at every reboot on some models), or the port is wrong"
    )]
    Refused,
    #[error(
        "no answer within {0:?}: the TV is off or in deep standby (network card off), or the address is wrong"
    )]
    Timeout(Duration),
    #[error("cannot reach the TV: {0}")]
    Unreachable(io::Error),
    #[error(
        "the TV accepted the connection but did not answer ADB within {0:?}: it is booting, or (Android 4.4 to 7.1) serves another ADB host already"
    )]
    NoAnswer(Duration),
    #[error(
        "the TV closed the connection: it went to sleep, restarted adbd or rebooted, or revoked our key"
    )]
    Closed,
    #[error(
        "this TV wants TLS (Android 11+ wireless debugging); not supported yet: enable plain network debugging (port 5555) on the TV"
    )]
    TlsRequired,
    #[error("ADB protocol error: {0}")]
    Protocol(#[from] ConnectionError),
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

impl ConnectError {
    /// `refused` or `offline`, the state words of `sitelink status`.
    pub fn state(&self) -> &'static str {
        match self {
            ConnectError::Refused => "refused",
            ConnectError::TlsRequired => "tls-required",
            _ => "offline",
        }
    }
}

/// What one stream carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A shell command; `limit` caps the output kept.
    Shell { command: String, limit: usize },
    /// `exec:` for binary output.
    Exec { command: String, limit: usize },
    /// The `reboot:` service: the TV drops the connection.
    Reboot,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Shell(ShellOutput),
    /// The TV accepted the reboot.
    Rebooting,
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("the TV does not offer the service `{0}`")]
    Refused(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Stream(StreamError),
    #[error("unreadable shell output: {0}")]
    Shell(ShellError),
    #[error("{0}")]
    Use(#[from] UseError),
    #[error("the connection to the TV was lost: {0}")]
    Lost(String),
}

/// A finished request and the tag it was started with.
#[derive(Debug)]
pub struct Done<T> {
    pub tag: T,
    pub result: Result<Reply, OpError>,
}

struct Op<T> {
    tag: T,
    request: Request,
    shell: Option<ShellRequest>,
    collector: Option<ShellCollector>,
    deadline: Instant,
    timeout: Duration,
}

/// Where the handshake ended while the socket is still open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    Online,
    /// Our key was offered; someone must accept it on the TV.
    Unauthorized {
        fingerprint: String,
    },
}

/// Bytes read from the TV in one go.
const READ_CHUNK: usize = 64 * 1024;

/// One connection to one TV, over `S` (TCP unless said otherwise).
pub struct Session<T, S = TcpStream> {
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    buf: Box<[u8]>,
    conn: Connection,
    out: VecDeque<u8>,
    ops: HashMap<LocalId, Op<T>>,
    done: VecDeque<Done<T>>,
    /// The TV refused `shell,v2`: plain `shell:` from now on.
    no_v2: bool,
}

impl<T> Session<T, TcpStream> {
    /// Opens the TCP connection and sends CNXN.
    pub async fn connect(
        host: &str,
        port: u16,
        key: AdbKey,
        comment: &str,
        timeout: Duration,
    ) -> Result<Session<T>, ConnectError> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Err(_) => return Err(ConnectError::Timeout(timeout)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Refused);
            }
            Ok(Err(e)) => return Err(ConnectError::Unreachable(e)),
            Ok(Ok(s)) => s,
        };
        sock.set_nodelay(true)?;
        keepalive(&sock)?;
        Ok(Session::over(sock, key, comment))
    }
}

impl<T, S: AsyncRead + AsyncWrite> Session<T, S> {
    /// A session over an open stream; the first thing it sends is CNXN.
    pub fn over(stream: S, key: AdbKey, comment: &str) -> Session<T, S> {
        let (rd, wr) = tokio::io::split(stream);
        let mut s = Session {
            rd,
            wr,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            conn: Connection::new(Config::new(vec![key], comment)),
            out: VecDeque::new(),
            ops: HashMap::new(),
            done: VecDeque::new(),
            no_v2: false,
        };
        s.fill_out();
        s
    }

    /// Runs the handshake until the TV is online or has been shown our key,
    /// for at most `within`.
    pub async fn handshake(&mut self, within: Duration) -> Result<Handshake, ConnectError> {
        let deadline = Instant::now() + within;
        loop {
            match self.conn.state() {
                State::Online => return Ok(Handshake::Online),
                State::Unauthorized { fingerprint } => {
                    return Ok(Handshake::Unauthorized {
                        fingerprint: fingerprint.clone(),
                    });
                }
                State::TlsRequired => return Err(ConnectError::TlsRequired),
                _ => {}
            }
            if !self.io_until(deadline).await? {
                return Err(ConnectError::NoAnswer(within));
            }
            self.drain_events();
        }
    }

    /// While unauthorised: waits until `deadline` for someone to accept the
    /// key on the TV. `Ok(false)`: nobody did. Cancel-safe.
    pub async fn wait_accepted(&mut self, deadline: Instant) -> Result<bool, ConnectError> {
        while *self.conn.state() != State::Online {
            if !self.io_until(deadline).await? {
                return Ok(false);
            }
            self.drain_events();
        }
        Ok(true)
    }

    /// The TV's banner and agreed terms, once online.
    pub fn peer(&self) -> Option<&Peer> {
        self.conn.peer()
    }

    /// Requests in flight (each holds a stream).
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Starts a request; its [`Done`] comes from [`Session::next`]. A
    /// request that cannot start gives its tag back.
    pub fn start(
        &mut self,
        tag: T,
        request: Request,
        timeout: Duration,
    ) -> Result<(), (T, UseError)> {
        let shell = match &request {
            Request::Shell { command, .. } => Some(ShellRequest::new(
                command,
                !self.no_v2 && self.conn.has_feature("shell_v2"),
            )),
            Request::Exec { command, .. } => Some(ShellRequest::exec(command)),
            Request::Reboot => None,
        };
        let service = shell.as_ref().map_or("reboot:", |s| s.service.as_str());
        let id = match self.conn.open(service) {
            Ok(id) => id,
            Err(e) => return Err((tag, e)),
        };
        if let Some(s) = &shell {
            let input = s.initial_input();
            if !input.is_empty()
                && let Err(e) = self.conn.write(id, &input)
            {
                let _ = self.conn.abort(id);
                return Err((tag, e));
            }
        }
        let limit = match &request {
            Request::Shell { limit, .. } | Request::Exec { limit, .. } => *limit,
            Request::Reboot => 0,
        };
        self.ops.insert(
            id,
            Op {
                tag,
                collector: shell.as_ref().map(|s| s.collector(limit)),
                shell,
                request,
                deadline: Instant::now() + timeout,
                timeout,
            },
        );
        self.fill_out();
        Ok(())
    }

    /// The next finished request. An error means the connection is gone;
    /// [`Session::fail_all`] then hands back the requests that were in flight.
    pub async fn next(&mut self) -> Result<Done<T>, ConnectError> {
        loop {
            if let Some(d) = self.done.pop_front() {
                return Ok(d);
            }
            let deadline = self.ops.values().map(|o| o.deadline).min();
            let far = Instant::now() + Duration::from_secs(3600);
            if !self.io_until(deadline.unwrap_or(far)).await? {
                self.expire(Instant::now());
            }
            self.drain_events();
        }
    }

    /// The requests in flight, failed: for a connection that is gone.
    pub fn fail_all(&mut self, why: &str) -> Vec<Done<T>> {
        let mut out: Vec<Done<T>> = self.done.drain(..).collect();
        out.extend(self.ops.drain().map(|(_, op)| Done {
            tag: op.tag,
            result: Err(OpError::Lost(why.to_string())),
        }));
        out
    }

    /// One round of socket I/O: writes what is queued, reads what came.
    /// Returns false when `deadline` passed first. Cancel-safe: a future
    /// dropped at any await has lost nothing.
    async fn io_until(&mut self, deadline: Instant) -> Result<bool, ConnectError> {
        self.fill_out();
        // `read` and `write` lose nothing when dropped before they finish:
        // a read that finishes has put its bytes in `buf`, a write that
        // finishes says how many of `out` went.
        let (front, _) = self.out.as_slices();
        let writing = !front.is_empty();
        tokio::select! {
            r = self.rd.read(&mut self.buf) => match r? {
                0 => return Err(ConnectError::Closed),
                n => self.conn.handle_bytes(&self.buf[..n])?,
            },
            w = self.wr.write(front), if writing => {
                let n = w?;
                self.out.drain(..n);
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(false),
        }
        self.fill_out();
        Ok(true)
    }

    fn fill_out(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.out.extend(bytes);
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Data { id, data } => {
                    if let Some(op) = self.ops.get_mut(&id)
                        && let Some(c) = op.collector.as_mut()
                        && let Err(e) = c.push(&data)
                    {
                        let _ = self.conn.abort(id);
                        self.finish(id, Err(OpError::Shell(e)));
                    }
                }
                Event::Closed(id) => {
                    let reply = self.ops.get_mut(&id).map(|op| match op.collector.take() {
                        Some(c) => Reply::Shell(c.finish()),
                        None => Reply::Rebooting,
                    });
                    if let Some(reply) = reply {
                        self.finish(id, Ok(reply));
                    }
                }
                Event::Refused(id) => self.refused(id),
                Event::StreamFailed(e) => {
                    let id = e.id;
                    self.finish(id, Err(OpError::Stream(e)));
                }
                Event::Ignored(e) => tracing::debug!(error = %e, "ADB message for no stream"),
                Event::Opened(_)
                | Event::AuthRequired
                | Event::Unauthorized { .. }
                | Event::TlsRequired
                | Event::Connected(_) => {}
            }
        }
        self.fill_out();
    }

    /// CLSE in answer to OPEN: a `shell,v2` the TV lacks is asked again as
    /// `shell:` (remembered for the session); anything else fails.
    fn refused(&mut self, id: LocalId) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        if let Some(legacy) = op.shell.as_ref().and_then(ShellRequest::fallback) {
            self.no_v2 = true;
            let remaining = op.deadline.saturating_duration_since(Instant::now());
            if let Ok(new_id) = self.conn.open(&legacy.service) {
                let limit = match &op.request {
                    Request::Shell { limit, .. } => *limit,
                    _ => 0,
                };
                self.ops.insert(
                    new_id,
                    Op {
                        collector: Some(legacy.collector(limit)),
                        shell: Some(legacy),
                        deadline: Instant::now() + remaining,
                        ..op
                    },
                );
                return;
            }
        }
        let service = op
            .shell
            .as_ref()
            .map_or_else(|| "reboot:".to_string(), |s| s.service.clone());
        self.done.push_back(Done {
            tag: op.tag,
            result: Err(OpError::Refused(service)),
        });
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<LocalId> = self
            .ops
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let _ = self.conn.abort(id);
            let timeout = self.ops.get(&id).map_or(Duration::ZERO, |o| o.timeout);
            self.finish(id, Err(OpError::Timeout(timeout)));
        }
    }

    fn finish(&mut self, id: LocalId, result: Result<Reply, OpError>) {
        if let Some(op) = self.ops.remove(&id) {
            self.done.push_back(Done {
                tag: op.tag,
                result,
            });
        }
    }
}

/// TCP keep-alive and user timeout, which tokio does not set.
fn keepalive(sock: &TcpStream) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt on a socket we own, with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_S)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES)?;
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        USER_TIMEOUT_MS as libc::c_int,
    )
}
