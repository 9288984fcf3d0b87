//! Serving simulated TVs over TCP: one listener per TV on consecutive ports,
//! one task per connection, all on one current-thread tokio runtime on its
//! own thread (`sim-tv`), so a test, the demo or the benchmark runs TVs
//! in-process beside the host without sharing its runtime.
//!
//! Each connection is an [`adb::proto::Device`](crate::adb::proto::Device)
//! fed from the socket. Services run against the TV's [`TvModel`]; their
//! output is queued as timed steps, so `sleep`, slow answers and a reboot's
//! delay need no extra tasks. Faults reach the connections through a watch
//! channel per TV: a drop closes them, a stall stops them reading and
//! answering, a reboot or an unreachable spell also closes the listener so
//! new connections are refused.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::adb::proto::message::{
    LEGACY_MAX_PAYLOAD, MAX_PAYLOAD, VERSION_MIN, VERSION_SKIP_CHECKSUM,
};
use crate::adb::proto::{
    AndroidPublicKey, Banner, Device, DeviceConfig, DeviceEvent, Features, LocalId, ShellPacket,
};

use super::commands::screenshot_png;
use super::filesync::SyncSession;
use super::model::{Identity, SplitMix, TvModel, TvState};
use super::sh::{self, Chunk};

/// What a modern TV lists in its banner: only what this simulator serves
/// (`stat_v2` for adb's pull, `fixed_push_mkdir` because a push creates its
/// directories).
pub const MODERN_FEATURES: &str = "shell_v2,cmd,stat_v2,fixed_push_mkdir";

/// How long a `reboot:` keeps the TV unreachable by default.
pub const REBOOT_DOWNTIME: Duration = Duration::from_secs(3);

/// How a TV answers a host key it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Someone presses "Allow" (with "Always allow from this computer"):
    /// the key is trusted from then on, by this TV.
    Allow,
    /// Nobody answers "Allow USB debugging?": the host stays unauthorized.
    Deny,
    /// `ro.adb.secure=0`: no authentication at all.
    Off,
}

/// One simulated TV.
#[derive(Clone, Debug)]
pub struct TvConfig {
    pub auth: Auth,
    /// An Android 6.0 adbd: CNXN version `0x01000000`, 4 KiB payloads, no
    /// features (so only `shell:` and `exec:`, no shell v2), sums checked,
    /// and `shell:` through a PTY (`\n` becomes `\r\n`).
    pub legacy: bool,
    /// Keys trusted from the start, as in the TV's `adb_keys`.
    pub trusted: Vec<AndroidPublicKey>,
    /// `ro.product.model`.
    pub model: String,
    /// The music stream's highest index (`Max:` in `dumpsys audio`).
    pub max_volume: u32,
}

impl Default for TvConfig {
    fn default() -> TvConfig {
        TvConfig {
            auth: Auth::Allow,
            legacy: false,
            trusted: Vec::new(),
            model: "SIM TV 55".into(),
            max_volume: 100,
        }
    }
}

/// Faults every TV suffers on a schedule; each TV's schedule starts at its
/// own (seeded) point, so they do not all drop at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Drop every connection this often.
    pub drop_every: Option<Duration>,
    /// Stall this often: read nothing and answer nothing for `stall_for`.
    pub stall_every: Option<Duration>,
    pub stall_for: Duration,
    /// Delay before each stream's answer (the OKAY and the output).
    pub slow: Duration,
}

#[derive(Clone, Debug)]
pub struct TvSimConfig {
    /// The first TV's address; the others take the next ports. Port 0
    /// gives each TV a free port.
    pub listen: SocketAddr,
    pub tvs: Vec<TvConfig>,
    pub faults: FaultPlan,
    /// Serial numbers, figures, tokens and fault phases follow from it.
    pub seed: u64,
    /// How long a rebooting TV is unreachable.
    pub reboot_downtime: Duration,
}

impl TvSimConfig {
    /// `count` default TVs from `listen`, no faults.
    pub fn new(listen: SocketAddr, count: usize) -> TvSimConfig {
        TvSimConfig {
            listen,
            tvs: vec![TvConfig::default(); count],
            faults: FaultPlan::default(),
            seed: 0,
            reboot_downtime: REBOOT_DOWNTIME,
        }
    }
}

/// A fault set on one TV at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drop the TV's connections now (a Wi-Fi blip).
    Drop,
    /// Stop reading and answering for this long (the host's timeouts fire).
    Stall(Duration),
    /// Delay each stream's answer by this much from now on (zero: off).
    Slow(Duration),
    /// Drop the connections and refuse new ones for this long (standby with
    /// the network off, a power cut).
    Unreachable(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum SimTvError {
    #[error("no TVs to simulate (--count must be at least 1)")]
    NoTvs,
    #[error("{count} TVs from {addr} run past port 65535")]
    PortRange { addr: SocketAddr, count: usize },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("stall every {every:?} for {lasting:?}: a stall must end before the next one")]
    StallPlan { every: Duration, lasting: Duration },
    #[error("{what} {secs}: not a duration in seconds")]
    Duration { what: &'static str, secs: f64 },
    #[error("trusted key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> SimTvError {
    move |source| SimTvError::Io { what, source }
}

/// What the connections of one TV obey.
#[derive(Clone, Debug, Default)]
struct Control {
    /// Bumped to drop every connection.
    drops: u64,
    stalled_until: Option<Instant>,
    /// Unreachable (rebooting, or a fault) until then.
    down_until: Option<Instant>,
    slow: Duration,
}

impl Control {
    fn stalled(&self, now: Instant) -> Option<Instant> {
        self.stalled_until.filter(|t| *t > now)
    }

    fn down(&self, now: Instant) -> Option<Instant> {
        self.down_until.filter(|t| *t > now)
    }
}

struct Tv {
    addr: SocketAddr,
    config: TvConfig,
    model: Mutex<TvModel>,
    control: watch::Sender<Control>,
    /// Whether the port is open; a TV going down closes it before its
    /// connections drop, so a host that reconnects at once is refused.
    listening: watch::Sender<bool>,
    reboot_downtime: Duration,
}

impl Tv {
    /// The model; a panic elsewhere leaves it usable (it holds no invariant
    /// a half-done command could break badly enough to matter in a simulator).
    fn model(&self) -> MutexGuard<'_, TvModel> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, fault: Fault) {
        let now = Instant::now();
        self.control.send_modify(|c| match fault {
            Fault::Drop => c.drops += 1,
            Fault::Stall(d) => c.stalled_until = Some(now + d),
            Fault::Slow(d) => c.slow = d,
            Fault::Unreachable(d) => {
                c.drops += 1;
                c.down_until = Some(now + d);
            }
        });
    }

    fn device_config(&self) -> DeviceConfig {
        let mut model = self.model();
        let id = &model.identity;
        let features = if self.config.legacy {
            Features::default()
        } else {
            Features::parse(MODERN_FEATURES)
        };
        let banner = Banner::device(&id.name, &id.model, &id.device, features);
        let (version, max_payload) = if self.config.legacy {
            (VERSION_MIN, LEGACY_MAX_PAYLOAD)
        } else {
            (VERSION_SKIP_CHECKSUM, MAX_PAYLOAD)
        };
        DeviceConfig {
            banner,
            version,
            max_payload,
            auth: self.config.auth != Auth::Off,
            trusted_keys: model.trusted().to_vec(),
            tls_only: false,
            token_seed: model.token_seed(),
        }
    }
}

const READY: &str = "ready tv";

/// The TVs' addresses from a ready line, for whoever started the CLI.
pub fn parse_ready_line(line: &str) -> Option<Vec<SocketAddr>> {
    line.trim()
        .strip_prefix(READY)?
        .split_whitespace()
        .map(|a| a.parse().ok())
        .collect()
}

/// TVs served by [`spawn`]; dropping the handle stops them.
pub struct SimTvs {
    tvs: Vec<Arc<Tv>>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimTvs {
    /// Where each TV listens, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.tvs.iter().map(|t| t.addr).collect()
    }

    pub fn len(&self) -> usize {
        self.tvs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tvs.is_empty()
    }

    /// `ready tv ADDR1 ADDR2 ...`, the CLI's ready line.
    pub fn ready_line(&self) -> String {
        let addrs: Vec<String> = self.tvs.iter().map(|t| t.addr.to_string()).collect();
        format!("{READY} {}", addrs.join(" "))
    }

    fn tv(&self, i: usize) -> &Tv {
        match self.tvs.get(i) {
            Some(tv) => tv,
            None => panic!("TV {i} of {}: no such TV", self.tvs.len()),
        }
    }

    /// A snapshot of TV `i` (panics if there is no such TV, like indexing).
    pub fn state(&self, i: usize) -> TvState {
        let tv = self.tv(i);
        let now = Instant::now();
        let mut state = tv.model().snapshot(now.into_std());
        state.reachable = tv.control.borrow().down(now).is_none();
        state
    }

    /// The PNG `screencap -p` gives on TV `i` now.
    pub fn screenshot(&self, i: usize) -> Vec<u8> {
        screenshot_png(&self.tv(i).model())
    }

    /// Applies a fault to TV `i` now.
    pub fn set_fault(&self, i: usize, fault: Fault) {
        self.tv(i).set(fault);
    }

    /// Trusts a host key on TV `i`, as if accepted there earlier.
    pub fn trust(&self, i: usize, key: AndroidPublicKey) {
        self.tv(i).model().trust(key);
    }

    /// Stops every TV: listeners closed, connections dropped, thread joined.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            // A panicked thread has nothing left to clean up.
            let _ = t.join();
        }
    }
}

impl Drop for SimTvs {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The identity of TV `index`: serials and names differ per TV and seed.
fn identity(cfg: &TvConfig, index: usize, rng: &mut SplitMix) -> Identity {
    let (release, sdk) = if cfg.legacy {
        ("6.0.1", 23)
    } else {
        ("11", 30)
    };
    Identity {
        manufacturer: "Sitelink".into(),
        model: cfg.model.clone(),
        name: "simtv_55".into(),
        device: "simtv".into(),
        serial: format!("SIMTV{index:03}{:06X}", rng.below(0x100_0000)),
        release: release.into(),
        sdk,
    }
}

/// Starts the TVs on their own thread and returns once every listener is
/// bound: the host may connect at once.
pub fn spawn(cfg: TvSimConfig) -> Result<SimTvs, SimTvError> {
    if cfg.tvs.is_empty() {
        return Err(SimTvError::NoTvs);
    }
    if let Some(every) = cfg.faults.stall_every
        && cfg.faults.stall_for >= every
    {
        return Err(SimTvError::StallPlan {
            every,
            lasting: cfg.faults.stall_for,
        });
    }
    let mut listeners = Vec::with_capacity(cfg.tvs.len());
    let mut tvs = Vec::with_capacity(cfg.tvs.len());
    let mut rng = SplitMix::new(cfg.seed);
    let now = Instant::now();
    for (i, tv_cfg) in cfg.tvs.iter().enumerate() {
        let mut addr = cfg.listen;
        if addr.port() != 0 {
            let port =
                u16::try_from(usize::from(addr.port()) + i).map_err(|_| SimTvError::PortRange {
                    addr: cfg.listen,
                    count: cfg.tvs.len(),
                })?;
            addr.set_port(port);
        }
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| SimTvError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| SimTvError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimTvError::Bind { addr, source })?;
        let mut model = TvModel::new(
            identity(tv_cfg, i, &mut rng),
            tv_cfg.max_volume,
            rng.next_u64(),
            now.into_std(),
        );
        tv_cfg.trusted.iter().for_each(|k| model.trust(k.clone()));
        let (control, _) = watch::channel(Control {
            slow: cfg.faults.slow,
            ..Control::default()
        });
        tvs.push(Arc::new(Tv {
            addr,
            config: tv_cfg.clone(),
            model: Mutex::new(model),
            control,
            listening: watch::Sender::new(true),
            reboot_downtime: cfg.reboot_downtime,
        }));
        listeners.push(listener);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("cannot start the simulator's runtime"))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let served = tvs.clone();
    let plan = cfg.faults.clone();
    let phases: Vec<u64> = tvs.iter().map(|_| rng.next_u64()).collect();
    let thread = std::thread::Builder::new()
        .name("sim-tv".into())
        .spawn(move || {
            runtime.block_on(async move {
                for ((tv, listener), phase) in served.into_iter().zip(listeners).zip(phases) {
                    // from_std needs the runtime: it registers the socket.
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            tracing::warn!(addr = %tv.addr, "sim tv: listener lost: {e}");
                            None
                        }
                    };
                    tokio::spawn(schedule_faults(
                        tv.clone(),
                        plan.clone(),
                        phase,
                        shutdown_rx.clone(),
                    ));
                    tokio::spawn(listen(tv, listener, shutdown_rx.clone()));
                }
                let mut rx = shutdown_rx;
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            });
            // Dropping the runtime drops every task and so every socket.
            runtime.shutdown_timeout(Duration::from_millis(500));
        })
        .map_err(io_err("cannot start the simulator thread"))?;
    Ok(SimTvs {
        tvs,
        shutdown,
        thread: Some(thread),
    })
}

/// Runs the TVs until SIGTERM or SIGINT, after writing the ready line.
pub async fn run(cfg: TvSimConfig, ready: &mut (dyn Write + Send)) -> Result<(), SimTvError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a test may signal as soon as it reads the ready line.
    let sig = |kind| signal(kind).map_err(io_err("cannot install a signal handler"));
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let tvs = spawn(cfg)?;
    writeln!(ready, "{}", tvs.ready_line()).map_err(io_err("stdout"))?;
    ready.flush().map_err(io_err("stdout"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tvs.stop();
    Ok(())
}

/// The first fire of a schedule: somewhere in the first period.
fn first_fire(now: Instant, every: Duration, phase: u64) -> Instant {
    let frac = (phase % 1000) as f64 / 1000.0;
    now + every.mul_f64(frac.max(0.05))
}

async fn schedule_faults(
    tv: Arc<Tv>,
    plan: FaultPlan,
    phase: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let mut next_drop = plan.drop_every.map(|e| first_fire(now, e, phase));
    let mut next_stall = plan.stall_every.map(|e| first_fire(now, e, phase / 1000));
    loop {
        let Some(at) = [next_drop, next_stall].into_iter().flatten().min() else {
            return;
        };
        tokio::select! {
            _ = sleep_until(at) => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        if let (Some(t), Some(every)) = (next_drop, plan.drop_every)
            && t <= now
        {
            tv.set(Fault::Drop);
            next_drop = Some(t + every);
        }
        if let (Some(t), Some(every)) = (next_stall, plan.stall_every)
            && t <= now
        {
            tv.set(Fault::Stall(plan.stall_for));
            next_stall = Some(t + every);
        }
    }
}

/// Accepts connections; closes the port while the TV is down and opens it
/// again after.
async fn listen(
    tv: Arc<Tv>,
    mut listener: Option<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut control = tv.control.subscribe();
    loop {
        let down = control.borrow_and_update().down(Instant::now());
        if let Some(until) = down {
            listener = None;
            tv.listening.send_replace(false);
            tokio::select! {
                _ = sleep_until(until) => {}
                _ = control.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let Some(l) = &listener else {
            match TcpListener::bind(tv.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    tv.listening.send_replace(true);
                }
                Err(e) => {
                    tracing::debug!(addr = %tv.addr, "sim tv: cannot listen again yet: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((stream, _)) => {
                    tv.model().connections += 1;
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(Connection::serve(tv.clone(), stream, shutdown.clone()));
                }
                Err(e) => {
                    tracing::debug!(addr = %tv.addr, "sim tv: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = control.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One timed piece of a stream's answer.
#[derive(Debug)]
enum Step {
    /// Start the service: decide what it answers.
    Start(String),
    Write(Vec<u8>),
    Wait(Duration),
    Close,
    /// The `reboot:` service, after its OKAY has gone out.
    Reboot,
}

#[derive(Debug)]
struct Job {
    due: Instant,
    steps: VecDeque<Step>,
}

/// The delay between a `reboot:` OKAY and the connection dropping, so the
/// host sees the stream accepted first, as from a real TV.
const REBOOT_AFTER: Duration = Duration::from_millis(50);

struct Connection {
    tv: Arc<Tv>,
    dev: Device,
    jobs: BTreeMap<LocalId, Job>,
    syncs: BTreeMap<LocalId, SyncSession>,
}

impl Connection {
    async fn serve(tv: Arc<Tv>, stream: TcpStream, shutdown: watch::Receiver<bool>) {
        let peer = stream.peer_addr().ok();
        let dev = Device::new(tv.device_config());
        let mut conn = Connection {
            tv,
            dev,
            jobs: BTreeMap::new(),
            syncs: BTreeMap::new(),
        };
        conn.run(stream, shutdown).await;
        tracing::debug!(tv = %conn.tv.addr, ?peer, "sim tv: connection closed");
    }

    /// Serves the connection until the host or a fault ends it.
    async fn run(&mut self, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let (mut rd, mut wr) = stream.into_split();
        let mut control = self.tv.control.subscribe();
        let drops = control.borrow_and_update().drops;
        let gone = |c: &Control, now| c.drops != drops || c.down(now).is_some();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            let c = control.borrow_and_update().clone();
            if gone(&c, now) {
                if c.down(now).is_some() {
                    self.port_closed().await;
                }
                return;
            }
            if let Some(until) = c.stalled(now) {
                tokio::select! {
                    _ = sleep_until(until) => {}
                    _ = control.changed() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            self.run_due(now);
            let mut out = Vec::new();
            while let Some(bytes) = self.dev.poll_transmit() {
                out.extend(bytes);
            }
            if !out.is_empty() {
                let write = wr.write_all(&out);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        r = &mut write => match r {
                            Ok(()) => break,
                            Err(_) => return,
                        },
                        // A host that reads nothing must not keep a
                        // dropped TV's connection alive.
                        r = control.changed() => {
                            let c = control.borrow().clone();
                            let now = Instant::now();
                            if r.is_err() || gone(&c, now) {
                                if c.down(now).is_some() {
                                    self.port_closed().await;
                                }
                                return;
                            }
                        }
                        _ = shutdown.changed() => return,
                    }
                }
                continue;
            }
            let next = self.jobs.values().map(|j| j.due).min();
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if let Err(e) = self.dev.handle_bytes(buf.get(..n).unwrap_or_default()) {
                            tracing::debug!(tv = %self.tv.addr, "sim tv: host broke the protocol: {e}");
                            return;
                        }
                        self.events(Instant::now());
                    }
                },
                _ = sleep_until(next.unwrap_or(now + Duration::from_secs(3600))), if next.is_some() => {}
                _ = control.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Waits (briefly) for the listener to close the port.
    async fn port_closed(&self) {
        let mut listening = self.tv.listening.subscribe();
        let closed = listening.wait_for(|open| !open);
        let _ = tokio::time::timeout(Duration::from_millis(500), closed).await;
    }

    fn events(&mut self, now: Instant) {
        while let Some(event) = self.dev.poll_event() {
            match event {
                DeviceEvent::KeyOffered { key, comment } => {
                    tracing::debug!(tv = %self.tv.addr, %comment, "sim tv: host offers its key");
                    if self.tv.config.auth == Auth::Allow {
                        self.tv.model().trust(key.clone());
                        self.dev.accept_key(key);
                    }
                }
                DeviceEvent::OpenRequested { id, service } => {
                    let slow = self.tv.control.borrow().slow;
                    let mut steps = VecDeque::new();
                    if !slow.is_zero() {
                        steps.push_back(Step::Wait(slow));
                    }
                    steps.push_back(Step::Start(service));
                    self.jobs.insert(id, Job { due: now, steps });
                }
                DeviceEvent::Data { id, data } => {
                    if let Some(session) = self.syncs.get_mut(&id) {
                        let out = session.feed(&mut self.tv.model(), &data, now.into_std());
                        let _ = self.dev.write(id, &out.reply);
                        if out.end {
                            self.syncs.remove(&id);
                            let _ = self.dev.close(id);
                        }
                    }
                    // Shell stdin is read by no simulated command.
                }
                DeviceEvent::Closed(id) => {
                    self.jobs.remove(&id);
                    self.syncs.remove(&id);
                }
                DeviceEvent::StreamFailed(e) => {
                    tracing::debug!(tv = %self.tv.addr, "sim tv: {e}");
                    self.jobs.remove(&e.id);
                    self.syncs.remove(&e.id);
                }
                DeviceEvent::Online(_)
                | DeviceEvent::SignatureRejected
                | DeviceEvent::BadKey(_)
                | DeviceEvent::Ignored(_) => {}
            }
        }
    }

    /// Runs every step that is due, up to each job's next wait.
    fn run_due(&mut self, now: Instant) {
        let due: Vec<LocalId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.due <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            while let Some(step) = self.jobs.get_mut(&id).and_then(|j| j.steps.pop_front()) {
                match step {
                    Step::Wait(d) => {
                        if let Some(j) = self.jobs.get_mut(&id) {
                            j.due = now + d;
                        }
                        break;
                    }
                    Step::Start(service) => {
                        let steps = self.start(id, &service, now);
                        if let Some(j) = self.jobs.get_mut(&id) {
                            j.steps = steps;
                        }
                    }
                    Step::Write(bytes) => {
                        let _ = self.dev.write(id, &bytes);
                    }
                    Step::Close => {
                        let _ = self.dev.close(id);
                    }
                    Step::Reboot => {
                        let downtime = self.tv.reboot_downtime;
                        self.tv.model().reboot(now.into_std());
                        self.tv.set(Fault::Unreachable(downtime));
                    }
                }
            }
            if self.jobs.get(&id).is_some_and(|j| j.steps.is_empty()) {
                self.jobs.remove(&id);
            }
        }
    }

    /// Accepts or refuses a service and returns the steps of its answer.
    fn start(&mut self, id: LocalId, service: &str, now: Instant) -> VecDeque<Step> {
        let legacy = self.tv.config.legacy;
        let refuse = |dev: &mut Device| {
            let _ = dev.refuse(id);
            VecDeque::new()
        };
        let (kind, rest) = service.split_once(':').unwrap_or((service, ""));
        let mut options = kind.split(',');
        let name = options.next().unwrap_or_default();
        let v2 = options.any(|o| o == "v2");
        let steps = match name {
            // ≤ 6.0 adbd knows no `shell,` options: the OPEN fails.
            "shell" if legacy && kind != "shell" => return refuse(&mut self.dev),
            "shell" if v2 => self.command(rest, now, Framing::V2),
            "shell" if legacy => self.command(rest, now, Framing::Pty),
            "shell" | "exec" => self.command(rest, now, Framing::Raw),
            "sync" => {
                self.syncs.insert(id, SyncSession::new());
                VecDeque::new()
            }
            "reboot" => VecDeque::from([Step::Wait(REBOOT_AFTER), Step::Reboot]),
            _ => return refuse(&mut self.dev),
        };
        if self.dev.accept(id).is_err() {
            self.syncs.remove(&id);
            return VecDeque::new();
        }
        steps
    }

    /// Runs a command line and frames what it printed.
    fn command(&mut self, line: &str, now: Instant, framing: Framing) -> VecDeque<Step> {
        let finished = {
            let mut model = self.tv.model();
            model.commands += 1;
            sh::run(&mut model, line, now.into_std())
        };
        let mut steps = VecDeque::new();
        for chunk in finished.chunks {
            steps.push_back(match (chunk, framing) {
                (Chunk::Sleep(d), _) => Step::Wait(d),
                (Chunk::Out(b), Framing::V2) => Step::Write(ShellPacket::Stdout(b).encode()),
                (Chunk::Err(b), Framing::V2) => Step::Write(ShellPacket::Stderr(b).encode()),
                (Chunk::Out(b) | Chunk::Err(b), Framing::Raw) => Step::Write(b),
                (Chunk::Out(b) | Chunk::Err(b), Framing::Pty) => Step::Write(crlf(&b)),
            });
        }
        if framing == Framing::V2 {
            steps.push_back(Step::Write(ShellPacket::Exit(finished.status).encode()));
        }
        steps.push_back(Step::Close);
        steps
    }
}

/// How a command's output goes into its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Shell v2 packets: stdout, stderr, exit status.
    V2,
    /// `exec:` and `shell:` on 7.0+: the bytes, stdout and stderr merged.
    Raw,
    /// `shell:` on ≤ 6.0: through a PTY, so `\n` goes out as `\r\n`.
    Pty,
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
