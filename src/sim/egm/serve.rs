//! Serving a simulated [`Line`] over a PTY or TCP.
//!
//! One dedicated thread owns the line and the device and waits in `poll(2)`
//! with a timeout from the line's next deadline, so a reply leaves within
//! microseconds of its poll; the async side only turns signals into control
//! messages. Neither a PTY nor TCP carries SAS's 9th bit, so a frame starts
//! after the line was idle for longer than the inter-byte limit (§1.3, §4):
//! the thread tells the line with [`Line::idle`].
//!
//! "Unplugging" comes in two kinds: `silent` (the cable between adapter and
//! EGMs is pulled: the device stays, nobody answers) and `device` (the USB
//! adapter is pulled: the PTY is closed and its link removed, or the TCP
//! port shut, until it comes back).

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use super::journal::{Entry, JournalFile};
use super::model::{EgmConfig, FaultPlan, Line, ModelError};

/// Quiet time that ends a frame (§4: at most 5 ms between bytes of one
/// message; longer starts a new one).
pub const FRAME_GAP: Duration = Duration::from_millis(5);
/// Longest wait in `poll(2)`, so control messages are seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// Where the host finds the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A PTY whose slave path is linked at this path.
    Pty(PathBuf),
    /// A TCP listener, one host connection at a time.
    Tcp(SocketAddr),
}

/// How an unplug looks to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UnplugMode {
    /// The device stays; the EGMs hear and answer nothing.
    Silent,
    /// The device goes away: PTY closed and unlinked, or TCP port shut.
    Device,
}

/// Scheduled unplugs; SIGUSR1 toggles one by hand whatever the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnplugPlan {
    /// From the start (and from the start of each unplug) to the next one.
    pub every: Option<Duration>,
    /// How long each scheduled unplug lasts.
    pub lasting: Duration,
    pub mode: UnplugMode,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub transport: Transport,
    pub egms: Vec<EgmConfig>,
    pub faults: FaultPlan,
    pub seed: u64,
    pub journal: Option<PathBuf>,
    pub unplug: UnplugPlan,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ModelError),
    #[error("unplug every {every:?} for {lasting:?}: the unplug must end before the next")]
    UnplugPlan { every: Duration, lasting: Duration },
    #[error("cannot create a PTY: {0}")]
    Pty(io::Error),
    #[error("{path}: {source}")]
    Link { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a symbolic link; not replacing it")]
    NotALink { path: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("the simulator thread ended unexpectedly")]
    ThreadLost,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// What the line thread is told.
enum Control {
    Stop,
    ToggleUnplug,
}

/// Runs the line until SIGTERM or SIGINT; SIGUSR1 toggles an unplug.
/// Writes one line to `ready` once the host can connect:
/// `ready pty LINK SLAVE` or `ready tcp ADDR`.
pub async fn run(cfg: ServeConfig, ready: &mut (dyn Write + Send)) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a test may signal as soon as it reads the ready line.
    let sig = |kind| signal(kind).map_err(io_err("cannot install a signal handler"));
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut usr1 = sig(SignalKind::user_defined1())?;

    let mut served = spawn(cfg)?;
    writeln!(ready, "{}", served.describe()).map_err(io_err("stdout"))?;
    ready.flush().map_err(io_err("stdout"))?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => served.toggle_unplug(),
            r = served.ended() => return r,
        }
    }
    served.stop()
}

/// Starts the line on its own thread (named `sim-egm`) and returns at once,
/// the device ready for the host. The in-process form of [`run`], for a
/// process that also runs the host: stopped by [`Served::stop`] or by
/// dropping the handle rather than by a signal.
pub fn spawn(cfg: ServeConfig) -> Result<Served, ServeError> {
    let start = Instant::now();
    let mut server = Server::start(cfg, start)?;
    let ready = server.device.describe();
    let polls = server.polls.clone();
    let (tx, rx) = mpsc::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("sim-egm".into())
        .spawn(move || {
            // The receiver is gone only if the handle has gone.
            let _ = done_tx.send(server.serve(&rx));
        })
        .map_err(io_err("cannot start the line thread"))?;
    Ok(Served {
        ready,
        start,
        polls,
        tx,
        done: Some(done),
        thread: Some(thread),
    })
}

/// A line served by [`spawn`]; dropping it stops the line.
pub struct Served {
    ready: String,
    start: Instant,
    polls: Arc<AtomicU64>,
    tx: mpsc::Sender<Control>,
    done: Option<tokio::sync::oneshot::Receiver<Result<(), ServeError>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Where the host connects, as [`run`]'s ready line says it:
    /// `ready pty LINK SLAVE` or `ready tcp ADDR` (the port it got).
    pub fn describe(&self) -> &str {
        &self.ready
    }

    /// The line's start: the journal's `t_ms` count from here.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Polls the EGMs have heard so far, all addresses together.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Unplugs the line, or plugs it back, as the plan's mode says (SIGUSR1
    /// to [`run`]).
    pub fn toggle_unplug(&self) {
        // A send fails only when the thread has ended; `stop` says why.
        let _ = self.tx.send(Control::ToggleUnplug);
    }

    /// Resolves when the line thread ends by itself (an error: it runs
    /// until stopped otherwise), with its result. Cancel-safe.
    pub async fn ended(&mut self) -> Result<(), ServeError> {
        match self.done.as_mut() {
            Some(done) => {
                let r = done.await.unwrap_or(Err(ServeError::ThreadLost));
                self.done = None;
                r
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the line (within its 20 ms wait), joins its thread and
    /// returns how it ended.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.halt();
        match self.done.take().map(|mut d| d.try_recv()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServeError::ThreadLost),
            // `ended` has already given the result.
            None => Ok(()),
        }
    }

    fn halt(&mut self) {
        let _ = self.tx.send(Control::Stop);
        if let Some(t) = self.thread.take() {
            // A panic has dropped the result's sender: `stop` says so.
            let _ = t.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Server {
    line: Line,
    device: Device,
    journal: Option<JournalFile>,
    journal_path: PathBuf,
    plan: UnplugPlan,
    unplugged: bool,
    /// Scheduled: when the next unplug starts, and when the current ends.
    next_unplug: Option<Instant>,
    replug_at: Option<Instant>,
    /// The EGMs' addresses, and the polls they have heard ([`Served::polls`]).
    addresses: Vec<u8>,
    polls: Arc<AtomicU64>,
}

impl Server {
    fn start(cfg: ServeConfig, now: Instant) -> Result<Server, ServeError> {
        if let Some(every) = cfg.unplug.every
            && cfg.unplug.lasting >= every
        {
            return Err(ServeError::UnplugPlan {
                every,
                lasting: cfg.unplug.lasting,
            });
        }
        let addresses = cfg.egms.iter().map(|e| e.address).collect();
        let line = Line::new(cfg.egms, cfg.faults, cfg.seed, now)?;
        let journal_path = cfg.journal.clone().unwrap_or_default();
        let journal = match &cfg.journal {
            Some(path) => {
                Some(
                    JournalFile::create(path).map_err(|source| ServeError::Journal {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let mut device = Device {
            transport: cfg.transport,
            open: None,
        };
        device.plug()?;
        Ok(Server {
            line,
            device,
            journal,
            journal_path,
            next_unplug: cfg.unplug.every.map(|e| now + e),
            plan: cfg.unplug,
            unplugged: false,
            replug_at: None,
            addresses,
            polls: Arc::new(AtomicU64::new(0)),
        })
    }

    fn serve(&mut self, rx: &Receiver<Control>) -> Result<(), ServeError> {
        let mut buf = [0u8; 512];
        // When the last host byte came, while a frame may be unfinished.
        let mut last_rx: Option<Instant> = None;
        let mut delayed: Option<(Instant, Vec<u8>)> = None;
        loop {
            match rx.try_recv() {
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return Ok(()),
                Ok(Control::ToggleUnplug) => {
                    let on = !self.unplugged;
                    self.set_unplugged(Instant::now(), on)?;
                }
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            self.schedule(now)?;

            let wake = [
                last_rx.map(|t| t + FRAME_GAP),
                delayed.as_ref().map(|(t, _)| *t),
                self.line.deadline(),
                self.next_unplug,
                self.replug_at,
            ]
            .into_iter()
            .flatten()
            .fold(now + MAX_WAIT, Instant::min);
            match self
                .device
                .wait(wake.saturating_duration_since(now), &mut buf)?
            {
                Input::Bytes(n) => {
                    let now = Instant::now();
                    if last_rx.is_some_and(|t| now.duration_since(t) > FRAME_GAP) {
                        self.line.idle();
                    }
                    last_rx = Some(now);
                    // An EGM abandons a late reply when the host speaks again.
                    delayed = None;
                    for out in self.line.receive(now, buf.get(..n).unwrap_or_default()) {
                        if out.delay.is_zero() {
                            self.device.send(&out.bytes);
                        } else {
                            delayed = Some((now + out.delay, out.bytes));
                        }
                    }
                    let polls = self.addresses.iter().filter_map(|&a| self.line.egm(a));
                    let polls = polls.map(|e| e.stats().polls).sum();
                    self.polls.store(polls, Ordering::Relaxed);
                }
                Input::Quiet => {}
                Input::HostGone => {
                    self.line.idle();
                    last_rx = None;
                    delayed = None;
                }
            }
            let now = Instant::now();
            if last_rx.is_some_and(|t| now.duration_since(t) >= FRAME_GAP) {
                self.line.idle();
                last_rx = None;
            }
            if let Some((_, bytes)) = delayed.take_if(|(t, _)| *t <= now) {
                self.device.send(&bytes);
            }
            let chirps = self.line.tick(now);
            if !chirps.is_empty() {
                self.device.send(&chirps);
            }
            let entries = self.line.take_journal();
            self.write_journal(&entries)?;
        }
    }

    fn write_journal(&mut self, entries: &[Entry]) -> Result<(), ServeError> {
        match self.journal.as_mut() {
            Some(j) if !entries.is_empty() => {
                j.write(entries).map_err(|source| ServeError::Journal {
                    path: self.journal_path.clone(),
                    source,
                })
            }
            _ => Ok(()),
        }
    }

    /// Starts and ends scheduled unplugs.
    fn schedule(&mut self, now: Instant) -> Result<(), ServeError> {
        if let Some(t) = self.next_unplug.filter(|&t| t <= now) {
            self.next_unplug = self.plan.every.map(|e| t + e);
            self.replug_at = Some(t + self.plan.lasting);
            if !self.unplugged {
                self.set_unplugged(now, true)?;
            }
        }
        if self.replug_at.is_some_and(|t| t <= now) {
            self.replug_at = None;
            if self.unplugged {
                self.set_unplugged(now, false)?;
            }
        }
        Ok(())
    }

    fn set_unplugged(&mut self, now: Instant, on: bool) -> Result<(), ServeError> {
        self.unplugged = on;
        match self.plan.mode {
            UnplugMode::Silent => self.line.set_silent(now, on),
            UnplugMode::Device if on => self.device.unplug(),
            UnplugMode::Device => self.device.plug()?,
        }
        let entry = Entry::Unplug {
            t_ms: self.line.t_ms(now),
            unplugged: on,
        };
        let mut entries = self.line.take_journal();
        entries.push(entry);
        self.write_journal(&entries)
    }
}

/// What one wait brought.
enum Input {
    Bytes(usize),
    Quiet,
    /// The TCP host disconnected: a frame in progress is abandoned.
    HostGone,
}

struct Device {
    transport: Transport,
    open: Option<Open>,
}

enum Open {
    Pty(Pty),
    Tcp(Tcp),
}

impl Device {
    fn describe(&self) -> String {
        match (&self.transport, &self.open) {
            (Transport::Pty(link), Some(Open::Pty(p))) => {
                format!("ready pty {} {}", link.display(), p.slave_path.display())
            }
            (Transport::Pty(link), _) => format!("unplugged pty {}", link.display()),
            (Transport::Tcp(addr), _) => format!("ready tcp {addr}"),
        }
    }

    fn plug(&mut self) -> Result<(), ServeError> {
        if self.open.is_some() {
            return Ok(());
        }
        self.open = Some(match &mut self.transport {
            Transport::Pty(link) => Open::Pty(Pty::open(link)?),
            Transport::Tcp(addr) => {
                let tcp = Tcp::bind(*addr)?;
                // Port 0 picks one; the replug must come back on the same.
                *addr = tcp.addr;
                Open::Tcp(tcp)
            }
        });
        Ok(())
    }

    fn unplug(&mut self) {
        self.open = None;
    }

    fn wait(&mut self, timeout: Duration, buf: &mut [u8]) -> Result<Input, ServeError> {
        let mut fds: Vec<libc::pollfd> = match &self.open {
            None => Vec::new(),
            Some(Open::Pty(p)) => vec![pollfd(p.master.as_raw_fd())],
            Some(Open::Tcp(t)) => {
                let mut v = vec![pollfd(t.listener.as_raw_fd())];
                v.extend(t.conn.as_ref().map(|c| pollfd(c.as_raw_fd())));
                v
            }
        };
        // Round up: a zero timeout for a deadline 0.4 ms away would spin.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for
        // the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(Input::Quiet),
                _ => Err(ServeError::Io {
                    what: "poll",
                    source: e,
                }),
            };
        }
        let ready = |i: usize| fds.get(i).is_some_and(|f| f.revents != 0);
        match &mut self.open {
            None => Ok(Input::Quiet),
            Some(Open::Pty(p)) if ready(0) => match p.master.read(buf) {
                Ok(n) => Ok(Input::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Input::Quiet),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Input::Quiet),
                Err(source) => Err(ServeError::Io {
                    what: "reading the PTY",
                    source,
                }),
            },
            Some(Open::Pty(_)) => Ok(Input::Quiet),
            Some(Open::Tcp(t)) => {
                if ready(0) {
                    t.accept();
                }
                if !ready(1) {
                    return Ok(Input::Quiet);
                }
                let Some(conn) = t.conn.as_mut() else {
                    return Ok(Input::Quiet);
                };
                match conn.read(buf) {
                    Ok(0) => {
                        t.conn = None;
                        Ok(Input::HostGone)
                    }
                    Ok(n) => Ok(Input::Bytes(n)),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        Ok(Input::Quiet)
                    }
                    Err(e) => {
                        tracing::info!("sim egm: host connection lost: {e}");
                        t.conn = None;
                        Ok(Input::HostGone)
                    }
                }
            }
        }
    }

    /// Best effort, like a UART: with no host listening the bytes are lost.
    fn send(&mut self, bytes: &[u8]) {
        match &mut self.open {
            None => {}
            Some(Open::Pty(p)) => {
                // Non-blocking: with nobody reading the slave, its buffer
                // fills and the rest is dropped rather than stalling the line.
                if let Err(e) = p.master.write_all(bytes) {
                    tracing::debug!("sim egm: PTY write dropped: {e}");
                }
            }
            Some(Open::Tcp(t)) => {
                if let Some(conn) = t.conn.as_mut()
                    && let Err(e) = conn.write_all(bytes)
                {
                    tracing::info!("sim egm: host connection lost: {e}");
                    t.conn = None;
                }
            }
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// A PTY master, its slave kept open too so the master never sees a hang-up
/// when the host closes its end, and the link to the slave.
struct Pty {
    master: File,
    _slave: File,
    link: PathBuf,
    slave_path: PathBuf,
}

impl Pty {
    fn open(link: &Path) -> Result<Pty, ServeError> {
        let (mut m, mut s): (libc::c_int, libc::c_int) = (-1, -1);
        // SAFETY: openpty writes two new descriptors into `m` and `s`; the
        // name, termios and window size arguments are optional and null.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(ServeError::Pty(io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and belong to nobody else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        for fd in [&master, &slave] {
            cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })
                .map_err(ServeError::Pty)?;
        }
        set_raw(&slave).map_err(ServeError::Pty)?;
        // SAFETY: plain fcntl calls on a descriptor we own.
        let flags = cvt(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) })
            .map_err(ServeError::Pty)?;
        cvt(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
            .map_err(ServeError::Pty)?;
        let slave_path = tty_name(&slave).map_err(ServeError::Pty)?;
        replace_link(link, &slave_path)?;
        Ok(Pty {
            master: File::from(master),
            _slave: File::from(slave),
            link: link.to_path_buf(),
            slave_path,
        })
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // Only our own link: someone may have pointed it elsewhere since.
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.slave_path) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Raw mode at 19200 8N1, so a host that sets nothing still gets bytes as
/// sent (no echo, no line editing, no CR/LF translation).
fn set_raw(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it from a valid tty fd.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    // SAFETY: cfmakeraw and cfsetspeed only edit the struct.
    unsafe {
        libc::cfmakeraw(&mut t);
        libc::cfsetspeed(&mut t, libc::B19200);
    }
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) })?;
    Ok(())
}

fn tty_name(fd: &OwnedFd) -> io::Result<PathBuf> {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: ttyname_r writes a NUL-terminated path of at most `buf.len()`
    // bytes into `buf`.
    let rc = unsafe { libc::ttyname_r(fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: on success the buffer holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

/// Points `link` at `target`, replacing a stale link but nothing else.
fn replace_link(link: &Path, target: &Path) -> Result<(), ServeError> {
    let err = |source| ServeError::Link {
        path: link.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(link).map_err(err)?,
        Ok(_) => {
            return Err(ServeError::NotALink {
                path: link.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::os::unix::fs::symlink(target, link).map_err(err)
}

/// A listener and at most one host connection.
struct Tcp {
    listener: TcpListener,
    conn: Option<TcpStream>,
    addr: SocketAddr,
}

impl Tcp {
    fn bind(addr: SocketAddr) -> Result<Tcp, ServeError> {
        let err = |source| ServeError::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(Tcp {
            listener,
            conn: None,
            addr,
        })
    }

    /// Takes a waiting connection; a second host is turned away, as a
    /// serial server set to one connection does.
    fn accept(&mut self) {
        match self.listener.accept() {
            Ok((stream, peer)) if self.conn.is_none() => {
                // Replies must leave at once, not wait for Nagle.
                if let Err(e) = stream
                    .set_nodelay(true)
                    .and_then(|()| stream.set_nonblocking(false))
                {
                    tracing::info!("sim egm: host {peer}: {e}");
                    return;
                }
                self.conn = Some(stream);
            }
            Ok((_, peer)) => tracing::info!("sim egm: {peer} turned away: a host is connected"),
            Err(e) => tracing::debug!("sim egm: accept: {e}"),
        }
    }
}

/// The configuration the command line asks for.
pub fn config(args: crate::cli::SimEgmArgs) -> Result<ServeConfig, ServeError> {
    let transport = match (args.pty, args.tcp) {
        (Some(link), _) => Transport::Pty(link),
        (None, Some(addr)) => Transport::Tcp(addr),
        // clap's group makes one of them required.
        (None, None) => {
            return Err(ModelError::BadValue("--pty or --tcp is required".into()).into());
        }
    };
    let secs = |name: &str, s: f64| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| ModelError::BadValue(format!("{name} {s}: not a duration in seconds")))
    };
    let every = args
        .unplug_every
        .map(|s| secs("--unplug-every", s))
        .transpose()?;
    let lasting = args
        .unplug_for
        .map(|s| secs("--unplug-for", s))
        .transpose()?;
    let egms = args
        .addresses
        .iter()
        .map(|&a| EgmConfig {
            game_rate: args.game_rate,
            queue_capacity: args.queue,
            jackpot_chance: args.jackpot_chance,
            fast_polling: !args.slow_polling,
            ..EgmConfig::new(a)
        })
        .collect();
    Ok(ServeConfig {
        transport,
        egms,
        faults: FaultPlan::from_percents(
            args.no_reply,
            args.corrupt,
            args.slow,
            Duration::from_millis(args.slow_ms),
        )?,
        seed: args.seed,
        journal: args.journal,
        unplug: UnplugPlan {
            every,
            lasting: lasting.unwrap_or_default(),
            mode: args.unplug_mode,
        },
    })
}
