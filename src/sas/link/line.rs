//! One serial line as an async handle over a dedicated thread. The thread
//! owns the port: blocking termios work (drains, parity switches, opens and
//! connects) stays off the async runtime, and reads are timestamped where
//! they happen. It reopens a lost port with backoff by itself.

use std::io::{Read, Write};
use std::mem::{self, Discriminant};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as amp, oneshot};

use super::device::Target;
use super::error::{Cause, PortError};
use super::timing::backoff_delay;
use super::{Chunk, LinkTiming, Transport, TransportKind, fdio, open};

/// What the line reports, in order.
#[derive(Clone, Debug)]
pub enum LineEvent {
    /// The port is open: at start, or again after [`LineEvent::Down`].
    Up {
        kind: TransportKind,
    },
    /// The port could not be opened or was lost; the line keeps reopening
    /// it. Reported when the outage starts and again if its reason changes
    /// (an adapter plugged back in that cannot do mark/space, say), not for
    /// every failed attempt.
    Down(PortError),
    Bytes(Chunk),
    /// Nothing arrived for the frame gap after the last chunk, whose
    /// arrival this is: on a PTY or TCP, the end of a frame.
    Quiet {
        last: Instant,
    },
}

struct Command {
    frame: Vec<u8>,
    done: oneshot::Sender<Result<(), PortError>>,
}

/// A received-but-unread backlog above this stops reading the port, so a
/// peer that floods a consumer that lags cannot grow memory; the kernel
/// buffers and then pushes back.
const MAX_PENDING_BYTES: usize = 64 * 1024;

/// How often an open path is checked for having vanished or changed.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The async side of a line. Dropping it stops the thread and closes the
/// port.
pub struct Line {
    port: String,
    commands: mpsc::Sender<Command>,
    waker: UnixStream,
    events: amp::UnboundedReceiver<LineEvent>,
    pending: Arc<AtomicUsize>,
}

impl Line {
    /// Starts the line's thread, which opens `port` (a device path or
    /// `tcp://HOST:PORT`) and keeps it open. Only a malformed port string
    /// fails here; a missing device is a [`LineEvent::Down`] and is retried.
    pub fn spawn(port: &str, timing: LinkTiming) -> Result<Line, PortError> {
        Target::parse(port)?;
        let io = |op| move |e| PortError::io(port, op, e);
        let (waker, thread_waker) = UnixStream::pair().map_err(io("socketpair"))?;
        waker
            .set_nonblocking(true)
            .map_err(io("set non-blocking"))?;
        thread_waker
            .set_nonblocking(true)
            .map_err(io("set non-blocking"))?;
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = amp::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let worker = Worker {
            port: port.to_owned(),
            timing,
            commands: command_rx,
            waker: thread_waker,
            events: event_tx,
            pending: pending.clone(),
            transport: None,
            attempt: 0,
            next_open: now,
            up_since: None,
            down: None,
            last_rx: None,
            next_check: now,
        };
        thread::Builder::new()
            .name(format!("sas {port}"))
            .spawn(move || worker.run())
            .map_err(io("start the line's thread"))?;
        Ok(Line {
            port: port.to_owned(),
            commands,
            waker,
            events,
            pending,
        })
    }

    pub fn port(&self) -> &str {
        &self.port
    }

    /// Sends one host frame, its first byte with the wakeup bit where the
    /// medium carries it. Resolves when the bytes are written. If the
    /// future is dropped early the frame may still go out.
    pub async fn send(&self, frame: &[u8]) -> Result<(), PortError> {
        let stopped = || PortError::Stopped {
            port: self.port.clone(),
        };
        let (done, result) = oneshot::channel();
        self.commands
            .send(Command {
                frame: frame.to_vec(),
                done,
            })
            .map_err(|_| stopped())?;
        // A full socket already holds wake-ups; a closed one means the
        // thread is gone, which the reply channel reports.
        let _ = (&self.waker).write(&[1]);
        result.await.map_err(|_| stopped())?
    }

    /// The next event; `None` once the thread has stopped.
    pub async fn next_event(&mut self) -> Option<LineEvent> {
        let event = self.events.recv().await?;
        if let LineEvent::Bytes(chunk) = &event {
            self.pending.fetch_sub(chunk.bytes.len(), Ordering::Relaxed);
        }
        Some(event)
    }
}

struct Worker {
    port: String,
    timing: LinkTiming,
    commands: mpsc::Receiver<Command>,
    waker: UnixStream,
    events: amp::UnboundedSender<LineEvent>,
    pending: Arc<AtomicUsize>,
    transport: Option<Box<dyn Transport>>,
    /// Failed opens since the port last stayed up, for the backoff.
    attempt: u32,
    next_open: Instant,
    up_since: Option<Instant>,
    /// The reason last reported as `Down` in this outage.
    down: Option<(Discriminant<PortError>, Option<Cause>)>,
    /// Arrival of the last chunk not yet followed by `Quiet`.
    last_rx: Option<Instant>,
    next_check: Instant,
}

impl Worker {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            if self.transport.is_none() && now >= self.next_open {
                self.open(now);
            }
            let reading = self.pending.load(Ordering::Relaxed) < MAX_PENDING_BYTES;
            let waker = fdio::pollfd(self.waker.as_fd(), libc::POLLIN);
            let mut fds = [waker, waker];
            let n = match (&self.transport, reading) {
                (Some(t), true) => {
                    fds[1] = fdio::pollfd(t.as_fd(), libc::POLLIN);
                    2
                }
                _ => 1,
            };
            let fds = &mut fds[..n];
            if let Err(e) = fdio::wait(fds, self.wait_time(now, reading)) {
                tracing::error!(port = %self.port, error = %e, "line thread cannot wait; stopping");
                return;
            }
            let ready = |fd: &libc::pollfd| fd.revents != 0;
            // Read before sending: bytes that came before a poll must carry a
            // time before it, so the poller can tell them from its reply.
            if fds.get(1).is_some_and(ready) {
                self.read();
            }
            if fds.first().is_some_and(ready) && !self.take_commands() {
                return; // The handle is gone.
            }
            self.timers(Instant::now());
            if self.events.is_closed() {
                return;
            }
        }
    }

    fn wait_time(&self, now: Instant, reading: bool) -> Duration {
        let until = match &self.transport {
            None => self.next_open,
            Some(_) => {
                let quiet = self.last_rx.map(|t| t + self.timing.frame_gap());
                quiet.map_or(self.next_check, |q| q.min(self.next_check))
            }
        };
        let wait = until.saturating_duration_since(now);
        // Paused reading: look again soon for the consumer to catch up.
        if reading {
            wait
        } else {
            wait.min(Duration::from_millis(10))
        }
    }

    fn open(&mut self, now: Instant) {
        match open(&self.port, &self.timing) {
            Ok(t) => {
                let kind = t.kind();
                tracing::info!(port = %self.port, %kind, "SAS line open");
                self.transport = Some(t);
                self.up_since = Some(now);
                self.down = None;
                self.last_rx = None;
                self.next_check = now + CHECK_EVERY;
                let _ = self.events.send(LineEvent::Up { kind });
            }
            Err(e) => self.lost(now, e),
        }
    }

    fn lost(&mut self, now: Instant, error: PortError) {
        self.transport = None;
        self.last_rx = None;
        // A port that stayed up a while starts the backoff afresh; one that
        // fails right after opening keeps backing off.
        if self
            .up_since
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= self.timing.reconnect_max)
        {
            self.attempt = 0;
        }
        let delay = backoff_delay(
            self.timing.reconnect_min,
            self.timing.reconnect_max,
            self.attempt,
            rand::random::<f64>(),
        );
        self.attempt = self.attempt.saturating_add(1);
        self.next_open = now + delay;
        let reason = Some((mem::discriminant(&error), error.cause()));
        if self.down == reason {
            tracing::debug!(port = %self.port, error = %error, retry_in = ?delay, "SAS line still down");
        } else {
            tracing::warn!(port = %self.port, error = %error, retry_in = ?delay, "SAS line down");
            self.down = reason;
            let _ = self.events.send(LineEvent::Down(error));
        }
    }

    /// Runs the queued sends. `false` when the handle has gone.
    fn take_commands(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match (&self.waker).read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: drained.
            }
        }
        loop {
            let command = match self.commands.try_recv() {
                Ok(c) => c,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            };
            let result = match self.transport.as_mut() {
                Some(t) => t.send_frame(&command.frame),
                None => Err(PortError::Down {
                    port: self.port.clone(),
                }),
            };
            if let Err(e) = &result
                && e.is_lost()
            {
                self.lost(Instant::now(), e.clone());
            }
            let _ = command.done.send(result);
        }
    }

    fn read(&mut self) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        let (mut bytes, mut wakeup) = (Vec::new(), Vec::new());
        let result = t.read_available(&mut bytes, &mut wakeup);
        let at = Instant::now();
        if !bytes.is_empty() {
            self.pending.fetch_add(bytes.len(), Ordering::Relaxed);
            self.last_rx = Some(at);
            let _ = self
                .events
                .send(LineEvent::Bytes(Chunk { at, bytes, wakeup }));
        }
        // Any read error leaves the descriptor in doubt: reopen.
        if let Err(e) = result {
            self.lost(at, e);
        }
    }

    fn timers(&mut self, now: Instant) {
        if let Some(last) = self.last_rx
            && now >= last + self.timing.frame_gap()
        {
            self.last_rx = None;
            let _ = self.events.send(LineEvent::Quiet { last });
        }
        if let Some(t) = &self.transport
            && now >= self.next_check
        {
            self.next_check = now + CHECK_EVERY;
            if let Err(e) = t.check() {
                self.lost(now, e);
            }
        }
    }
}
