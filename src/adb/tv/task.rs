//! One task per TV: keeps the ADB connection up (backoff with full jitter),
//! samples telemetry on the configured period, takes screenshots, runs
//! commands, drives the power relay, and records what it saw. A technician
//! reads the TV's state in `sitelink status`: `connected`, `unauthorized`
//! (waiting for someone to accept the key on the TV), `offline` or
//! `refused` with the reason, `tls-required`.

use super::control::{Action, Plan, RelayOp, VolumeOp};
use super::telemetry::{Identity, Probe, Sample, changes, parse_props};
use crate::adb::proto::AdbKey;
use crate::adb::transport::{ConnectError, Done, Handshake, OpError, Reply, Request, Session};
use crate::config::TvConfig;
use crate::daemon::task::{DeviceCommand, TaskContext};
use crate::relay::{Relay, RelayError, RelayLine};
use crate::store::{Class, CommandOutcome, NewRecord};
use base64::Engine as _;
use rand::RngExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// The handshake's budget after TCP is up (§6: CNXN/AUTH 5 s).
const HANDSHAKE: Duration = Duration::from_secs(5);
/// How long a socket is held open while the key waits for "Allow" (§6).
const AUTH_HOLD: Duration = Duration::from_secs(120);
/// Reconnect backoff: doubling from 1 s to 60 s, full jitter; reset after a
/// minute online (§6).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
const STABLE: Duration = Duration::from_secs(60);
/// Timed-out requests in a row that mean the connection is dead.
const TIMEOUTS_TO_RECONNECT: u32 = 3;
/// Output kept per telemetry probe and per command.
const PROBE_LIMIT: usize = 512 * 1024;
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Output quoted in a command's result.
const RESULT_TEXT: usize = 4096;
/// The screencap budget (§6: 30 s).
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(30);
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// Why requests in flight fail at shutdown.
const STOPPING: &str = "the agent is stopping";
/// How often the TV's state is written when nothing changed.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// What a request was for.
enum Tag {
    Probe(Probe),
    Command(DeviceCommand),
    Screenshot(Option<DeviceCommand>),
}

/// The connection as `sitelink status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LinkState {
    word: &'static str,
    reason: Option<String>,
}

impl LinkState {
    fn new(word: &'static str, reason: Option<String>) -> LinkState {
        LinkState { word, reason }
    }
}

enum Conn {
    Down {
        retry_at: Instant,
    },
    Unauthorized {
        session: Session<Tag>,
        until: Instant,
    },
    Online {
        session: Session<Tag>,
        since: Instant,
    },
}

/// A power cycle runs in its own task so the TV's task keeps serving; the
/// relay comes back when it ends (and a cancelled cycle powers on).
type Cycle = JoinHandle<Cycled>;
/// The relay back, the cycle's result, and the command that asked for it.
type Cycled = (
    Relay<Box<dyn RelayLine>>,
    Result<(), RelayError>,
    DeviceCommand,
);

struct Tv {
    cfg: TvConfig,
    key: AdbKey,
    comment: String,
    link: LinkState,
    attempts: u32,
    identity: Option<Identity>,
    props: BTreeMap<String, String>,
    last: Option<Sample>,
    round: Option<Round>,
    queue: VecDeque<(Tag, Request, Duration)>,
    timeouts: u32,
    relay: Option<Relay<Box<dyn RelayLine>>>,
    relay_error: Option<String>,
    cycle: Option<Cycle>,
    records: Vec<NewRecord>,
    counters: Counters,
    dirty: bool,
}

/// A telemetry round in progress.
struct Round {
    sample: Sample,
    waiting: usize,
}

#[derive(Default, serde::Serialize)]
struct Counters {
    connects: u64,
    disconnects: u64,
    samples: u64,
    timeouts: u64,
    commands: u64,
    screenshots: u64,
    screenshots_too_big: u64,
}

/// Runs one TV until shutdown. `relay` is the TV's power relay, already
/// opened, or the reason it could not be.
pub async fn run(
    cfg: TvConfig,
    key: Arc<AdbKey>,
    comment: String,
    relay: Option<Result<Relay<Box<dyn RelayLine>>, RelayError>>,
    mut ctx: TaskContext,
) {
    let (relay, relay_error) = match relay {
        Some(Ok(r)) => (Some(r), None),
        Some(Err(e)) => {
            tracing::error!(device = %cfg.name, error = %e, "TV relay not available");
            (None, Some(e.to_string()))
        }
        None => (None, None),
    };
    let mut tv = Tv {
        key: (*key).clone(),
        comment,
        link: LinkState::new("connecting", None),
        attempts: 0,
        identity: None,
        props: BTreeMap::new(),
        last: None,
        round: None,
        queue: VecDeque::new(),
        timeouts: 0,
        relay,
        relay_error,
        cycle: None,
        records: Vec::new(),
        counters: Counters::default(),
        dirty: true,
        cfg,
    };
    let mut conn = Conn::Down {
        retry_at: Instant::now(),
    };
    let mut next_sample = Instant::now();
    let mut next_shot = tv.cfg.screenshot_every.map(|p| Instant::now() + p);
    let mut state_written = Instant::now();
    tracing::info!(device = %tv.cfg.name, host = %tv.cfg.host, port = tv.cfg.port, "TV task started");
    loop {
        ctx.heartbeat.beat();
        if *ctx.shutdown.borrow() {
            if let Conn::Online { mut session, .. } | Conn::Unauthorized { mut session, .. } = conn
            {
                tv.end_session(&mut session, STOPPING);
            }
            break;
        }
        let beat = Instant::now() + Duration::from_secs(1);
        conn = match conn {
            Conn::Down { retry_at } => {
                tokio::select! {
                    _ = ctx.shutdown.changed() => break,
                    cmd = ctx.commands.recv() => match cmd {
                        Some(cmd) => { tv.offline_command(cmd); Conn::Down { retry_at } }
                        None => break,
                    },
                    cycled = wait_cycle(&mut tv.cycle) => {
                        // Our relay just powered the TV: try at once.
                        tv.cycle_done(cycled);
                        Conn::Down { retry_at: Instant::now() }
                    }
                    _ = sleep_until(retry_at.min(beat)) => {
                        if Instant::now() < retry_at {
                            Conn::Down { retry_at }
                        } else {
                            // Connecting may take the connect timeout plus
                            // the handshake: keep beating meanwhile.
                            let connecting = tv.connect();
                            tokio::pin!(connecting);
                            loop {
                                tokio::select! {
                                    c = &mut connecting => break c,
                                    _ = ctx.shutdown.changed() => break Conn::Down { retry_at },
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => ctx.heartbeat.beat(),
                                }
                            }
                        }
                    }
                }
            }
            Conn::Unauthorized { mut session, until } => {
                tokio::select! {
                    _ = ctx.shutdown.changed() => {
                        tv.end_session(&mut session, STOPPING);
                        break;
                    }
                    cmd = ctx.commands.recv() => match cmd {
                        Some(cmd) => { tv.offline_command(cmd); Conn::Unauthorized { session, until } }
                        None => break,
                    },
                    cycled = wait_cycle(&mut tv.cycle) => {
                        tv.cycle_done(cycled);
                        Conn::Unauthorized { session, until }
                    }
                    accepted = session.wait_accepted(until.min(beat)) => match accepted {
                        Ok(true) => tv.online(session),
                        Ok(false) if Instant::now() >= until => {
                            let why = "nobody accepted the key on the TV in time; trying again later".to_string();
                            tv.down(LinkState::new("unauthorized", tv.link.reason.clone()), &why)
                        }
                        Ok(false) => Conn::Unauthorized { session, until },
                        Err(e) => tv.lost(session, &e),
                    },
                }
            }
            Conn::Online { mut session, since } => {
                if Instant::now() >= next_sample && tv.round.is_none() {
                    next_sample = Instant::now() + tv.cfg.telemetry_every;
                    tv.start_round();
                }
                if let Some(at) = next_shot
                    && Instant::now() >= at
                {
                    next_shot = tv.cfg.screenshot_every.map(|p| Instant::now() + p);
                    tv.queue.push_back((
                        Tag::Screenshot(None),
                        screenshot_request(&tv.cfg),
                        SCREENSHOT_TIMEOUT,
                    ));
                }
                tv.pump(&mut session);
                let wake = beat.min(next_sample).min(next_shot.unwrap_or(beat));
                tokio::select! {
                    _ = ctx.shutdown.changed() => {
                        tv.end_session(&mut session, STOPPING);
                        break;
                    }
                    cmd = ctx.commands.recv() => match cmd {
                        Some(cmd) => { tv.online_command(cmd); Conn::Online { session, since } }
                        None => break,
                    },
                    cycled = wait_cycle(&mut tv.cycle) => {
                        tv.cycle_done(cycled);
                        Conn::Online { session, since }
                    }
                    done = session.next() => match done {
                        Ok(done) => {
                            tv.finished(done);
                            if tv.timeouts >= TIMEOUTS_TO_RECONNECT {
                                let why = format!("{TIMEOUTS_TO_RECONNECT} requests in a row got no answer");
                                tv.end_session(&mut session, &why);
                                if since.elapsed() >= STABLE { tv.attempts = 0; }
                                tv.down(LinkState::new("offline", Some(why.clone())), &why)
                            } else {
                                Conn::Online { session, since }
                            }
                        }
                        Err(e) => {
                            if since.elapsed() >= STABLE { tv.attempts = 0; }
                            tv.lost(session, &e)
                        }
                    },
                    _ = sleep_until(wake) => Conn::Online { session, since },
                }
            }
        };
        tv.flush(&ctx, &mut state_written).await;
    }
    if let Some(cycle) = tv.cycle.take() {
        // Dropping the cycle powers the TV back on (Relay::cycle).
        cycle.abort();
    }
    tv.flush(&ctx, &mut state_written).await;
    tracing::info!(device = %tv.cfg.name, "TV task stopped");
}

/// The end of a running power cycle; pending forever without one.
async fn wait_cycle(cycle: &mut Option<Cycle>) -> Result<Cycled, tokio::task::JoinError> {
    match cycle.as_mut() {
        Some(handle) => {
            let r = handle.await;
            *cycle = None;
            r
        }
        None => std::future::pending().await,
    }
}

fn screenshot_request(cfg: &TvConfig) -> Request {
    Request::Exec {
        command: "screencap -p".into(),
        // One byte over the limit tells "too big" from "exactly the limit".
        limit: cfg.screenshot_max_bytes + 1,
    }
}

impl Tv {
    fn record(&mut self, class: Class, kind: &str, payload: Value) {
        self.records.push(NewRecord::new(
            class,
            &self.cfg.name,
            kind,
            payload.to_string(),
        ));
    }

    /// Changes the state a technician sees; a new state word is an event.
    fn set_link(&mut self, link: LinkState) {
        if link.word != self.link.word {
            tracing::info!(device = %self.cfg.name, state = link.word, reason = link.reason.as_deref().unwrap_or(""), "TV state");
            let payload = json!({
                "host": self.cfg.host, "port": self.cfg.port,
                "state": link.word, "reason": link.reason,
            });
            self.record(Class::Event, &format!("tv.{}", link.word), payload);
        }
        if link != self.link {
            self.dirty = true;
        }
        self.link = link;
    }

    async fn connect(&mut self) -> Conn {
        let mut session = match Session::connect(
            &self.cfg.host,
            self.cfg.port,
            self.key.clone(),
            &self.comment,
            self.cfg.connect_timeout,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => return self.unreachable(&e),
        };
        match session.handshake(HANDSHAKE).await {
            Ok(Handshake::Online) => self.online(session),
            Ok(Handshake::Unauthorized { fingerprint }) => {
                tracing::warn!(device = %self.cfg.name, %fingerprint, "TV asks to accept our ADB key: answer \"Allow USB debugging?\" on its screen, or pre-install adbkey.pub (sitelink adb pubkey)");
                self.set_link(LinkState::new(
                    "unauthorized",
                    Some(format!(
                        "waiting for someone to accept \"Allow USB debugging?\" on the TV (key {fingerprint}); or put the output of `sitelink adb pubkey` in the TV's adb_keys"
                    )),
                ));
                Conn::Unauthorized {
                    session,
                    until: Instant::now() + AUTH_HOLD,
                }
            }
            Err(e) => self.unreachable(&e),
        }
    }

    fn unreachable(&mut self, e: &ConnectError) -> Conn {
        let why = e.to_string();
        self.down(LinkState::new(e.state(), Some(why.clone())), &why)
    }

    /// Schedules the next attempt after backoff.
    fn down(&mut self, link: LinkState, why: &str) -> Conn {
        tracing::debug!(device = %self.cfg.name, reason = why, "TV not connected");
        self.set_link(link);
        self.round = None;
        let wait = backoff(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        Conn::Down {
            retry_at: Instant::now() + wait,
        }
    }

    fn online(&mut self, session: Session<Tag>) -> Conn {
        self.counters.connects += 1;
        self.timeouts = 0;
        let banner_model = session
            .peer()
            .and_then(|p| p.banner.model().map(str::to_string));
        self.set_link(LinkState::new("connected", None));
        tracing::info!(device = %self.cfg.name, model = banner_model.as_deref().unwrap_or("?"), "TV connected");
        // Who it is, once per connection.
        self.queue.push_front((
            Tag::Probe(Probe::Props),
            probe_request(Probe::Props),
            self.cfg.request_timeout,
        ));
        Conn::Online {
            session,
            since: Instant::now(),
        }
    }

    /// The connection broke: fail what was in flight, back off.
    fn lost(&mut self, mut session: Session<Tag>, e: &ConnectError) -> Conn {
        let why = e.to_string();
        self.end_session(&mut session, &why);
        self.counters.disconnects += 1;
        self.down(LinkState::new(e.state(), Some(why.clone())), &why)
    }

    fn end_session(&mut self, session: &mut Session<Tag>, why: &str) {
        for done in session.fail_all(why) {
            self.finished(done);
        }
        let queued: Vec<_> = self.queue.drain(..).collect();
        for (tag, _, _) in queued {
            self.finished(Done {
                tag,
                result: Err(OpError::Lost(why.to_string())),
            });
        }
        self.round = None;
    }

    fn start_round(&mut self) {
        let probes: Vec<Probe> = Probe::ALL
            .into_iter()
            .filter(|p| !p.once_per_connection())
            .collect();
        self.round = Some(Round {
            sample: Sample::default(),
            waiting: probes.len(),
        });
        for p in probes {
            self.queue
                .push_back((Tag::Probe(p), probe_request(p), self.cfg.request_timeout));
        }
    }

    /// Starts queued requests while streams are free.
    fn pump(&mut self, session: &mut Session<Tag>) {
        while session.in_flight() < self.cfg.max_streams {
            let Some((tag, request, timeout)) = self.queue.pop_front() else {
                break;
            };
            if let Err((tag, e)) = session.start(tag, request, timeout) {
                self.finished(Done {
                    tag,
                    result: Err(OpError::Use(e)),
                });
            }
        }
    }

    /// A request ended: fold a probe into the round, answer a command.
    fn finished(&mut self, done: Done<Tag>) {
        match &done.result {
            Err(OpError::Timeout(_)) => {
                self.timeouts += 1;
                self.counters.timeouts += 1;
            }
            Ok(_) => self.timeouts = 0,
            Err(_) => {}
        }
        match done.tag {
            Tag::Probe(probe) => self.probe_done(probe, done.result),
            Tag::Command(cmd) => self.command_done(cmd, done.result),
            Tag::Screenshot(cmd) => self.screenshot_done(cmd, done.result),
        }
    }

    fn probe_done(&mut self, probe: Probe, result: Result<Reply, OpError>) {
        let text = match &result {
            Ok(Reply::Shell(out)) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Ok(Reply::Rebooting) => Err("unexpected reply".to_string()),
            Err(e) => Err(e.to_string()),
        };
        if probe == Probe::Props {
            if let Ok(text) = text {
                self.props = parse_props(&text);
                let identity = Identity::from_props(&self.props);
                if self.identity.as_ref() != Some(&identity) {
                    self.record(Class::Event, "tv.identity", json!(identity));
                    self.identity = Some(identity);
                    self.dirty = true;
                }
            }
            return;
        }
        let Some(round) = self.round.as_mut() else {
            return;
        };
        match text {
            Ok(t) => round.sample.absorb(probe, &t),
            Err(why) => {
                round.sample.failed.insert(probe.command().to_string(), why);
            }
        }
        round.waiting = round.waiting.saturating_sub(1);
        if round.waiting > 0 {
            return;
        }
        let Some(round) = self.round.take() else {
            return;
        };
        let sample = round.sample;
        self.counters.samples += 1;
        if let Some(before) = &self.last {
            for c in changes(before, &sample) {
                let kind = format!("tv.{}", c.kind);
                self.record(Class::Event, &kind, json!({ "from": c.from, "to": c.to }));
            }
        }
        self.record(Class::Metric, "telemetry", json!(sample));
        self.last = Some(sample);
        self.dirty = true;
    }

    /// A command while the TV is not connected: a relay works without ADB;
    /// anything else fails at once with the reason.
    fn offline_command(&mut self, cmd: DeviceCommand) {
        let Some((action, cmd)) = self.check(cmd) else {
            return;
        };
        if let Action::Relay(op) = action {
            return self.relay_command(cmd, op);
        }
        let why = format!(
            "not sent to {}: the TV is {}{}; it can be sent again once it is connected",
            cmd.device,
            self.link.word,
            self.link
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let _ = cmd.reply.send(CommandOutcome::failed(why));
    }

    fn online_command(&mut self, cmd: DeviceCommand) {
        let Some((action, cmd)) = self.check(cmd) else {
            return;
        };
        self.counters.commands += 1;
        // Android sets no volume above the stream's maximum, and says so on
        // stderr with exit status 0: check it here, where it can be said.
        let max = self.last.as_ref().and_then(|s| s.volume.max);
        if let (Action::Volume(VolumeOp::Set(n)), Some(max)) = (&action, max)
            && *n > max
        {
            let _ = cmd.reply.send(CommandOutcome::rejected(format!(
                "TV {}: volume {n} is above this TV's maximum, {max}",
                cmd.device
            )));
            return;
        }
        let sdk = self.identity.as_ref().and_then(|i| i.sdk);
        let timeout = self.cfg.request_timeout;
        match action.plan(sdk) {
            Plan::Relay(op) => self.relay_command(cmd, op),
            Plan::Screenshot => self.queue.push_back((
                Tag::Screenshot(Some(cmd)),
                screenshot_request(&self.cfg),
                SCREENSHOT_TIMEOUT,
            )),
            Plan::Reboot => self
                .queue
                .push_back((Tag::Command(cmd), Request::Reboot, timeout)),
            Plan::Shell(command) => self.queue.push_back((
                Tag::Command(cmd),
                Request::Shell {
                    command,
                    limit: OUTPUT_LIMIT,
                },
                timeout,
            )),
        }
    }

    /// The action, or `None` after answering a bad one.
    fn check(&self, cmd: DeviceCommand) -> Option<(Action, DeviceCommand)> {
        match Action::parse(
            &cmd.action,
            &cmd.args,
            self.cfg.allow_shell,
            self.cfg.relay.is_some(),
        ) {
            Ok(a) => Some((a, cmd)),
            Err(e) => {
                let why = format!("TV {}: {e}", cmd.device);
                let _ = cmd.reply.send(CommandOutcome::rejected(why));
                None
            }
        }
    }

    fn command_done(&mut self, cmd: DeviceCommand, result: Result<Reply, OpError>) {
        let reboot = cmd.action == "reboot";
        let outcome = match result {
            Ok(Reply::Shell(out)) => {
                let stdout = text(&out.stdout);
                let stderr = text(&out.stderr);
                match out.exit {
                    Some(0) | None => CommandOutcome::done(json!({
                        "exit": out.exit, "stdout": stdout, "stderr": stderr,
                        "truncated": out.truncated,
                    })),
                    Some(code) => CommandOutcome::failed(format!(
                        "exit status {code}{}",
                        if stderr.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", stderr.trim_end())
                        }
                    )),
                }
            }
            Ok(Reply::Rebooting) => CommandOutcome::done(json!({ "result": "rebooting" })),
            // The TV drops the connection when it reboots.
            Err(OpError::Lost(_)) if reboot => {
                CommandOutcome::done(json!({ "result": "rebooting" }))
            }
            Err(e) => CommandOutcome::failed(format!("TV {}: {e}", cmd.device)),
        };
        let _ = cmd.reply.send(outcome);
    }

    fn screenshot_done(&mut self, cmd: Option<DeviceCommand>, result: Result<Reply, OpError>) {
        let outcome = match result {
            Ok(Reply::Shell(out))
                if out.truncated || out.stdout.len() > self.cfg.screenshot_max_bytes =>
            {
                self.counters.screenshots_too_big += 1;
                let why = format!(
                    "the screenshot is over screenshot_max_kb ({} KB) and was not stored",
                    self.cfg.screenshot_max_bytes / 1024
                );
                self.record(
                    Class::Event,
                    "screenshot.too_big",
                    json!({ "limit_bytes": self.cfg.screenshot_max_bytes }),
                );
                Err(why)
            }
            Ok(Reply::Shell(out)) if out.stdout.starts_with(&PNG_SIGNATURE) => {
                let (width, height) = png_size(&out.stdout).unzip();
                self.counters.screenshots += 1;
                let payload = json!({
                    "format": "png",
                    "bytes": out.stdout.len(),
                    "width": width, "height": height,
                    "data": base64::engine::general_purpose::STANDARD.encode(&out.stdout),
                });
                self.record(Class::Metric, "screenshot", payload);
                Ok(json!({ "bytes": out.stdout.len(), "width": width, "height": height }))
            }
            Ok(Reply::Shell(out)) => Err(format!(
                "screencap did not return a PNG ({} bytes{})",
                out.stdout.len(),
                if out.stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text(&out.stderr).trim_end())
                }
            )),
            Ok(Reply::Rebooting) => Err("unexpected reply".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match (cmd, outcome) {
            (Some(cmd), Ok(v)) => {
                let _ = cmd.reply.send(CommandOutcome::done(v));
            }
            (Some(cmd), Err(why)) => {
                let _ = cmd
                    .reply
                    .send(CommandOutcome::failed(format!("TV {}: {why}", cmd.device)));
            }
            (None, Err(why)) => {
                tracing::warn!(device = %self.cfg.name, reason = %why, "scheduled screenshot failed")
            }
            (None, Ok(_)) => {}
        }
    }

    fn relay_command(&mut self, cmd: DeviceCommand, op: RelayOp) {
        if self.cycle.is_some() {
            let _ = cmd.reply.send(CommandOutcome::rejected(format!(
                "TV {}: a power cycle is running; try again when it ends",
                cmd.device
            )));
            return;
        }
        let Some(mut relay) = self.relay.take() else {
            let why = self
                .relay_error
                .clone()
                .unwrap_or_else(|| "no relay".into());
            let _ = cmd.reply.send(CommandOutcome::failed(format!(
                "TV {}: relay: {why}",
                cmd.device
            )));
            return;
        };
        let result = match op {
            RelayOp::On => relay.on(),
            RelayOp::Off => relay.off(),
            RelayOp::Cycle => {
                let off_for = self
                    .cfg
                    .relay
                    .as_ref()
                    .map_or(Duration::from_secs(10), |r| r.cycle_off);
                self.record(
                    Class::Event,
                    "tv.relay",
                    json!({ "op": "cycle", "off_s": off_for.as_secs() }),
                );
                self.cycle = Some(tokio::spawn(async move {
                    let r = relay.cycle(off_for).await;
                    (relay, r, cmd)
                }));
                return;
            }
        };
        self.relay = Some(relay);
        self.relay_result(cmd, op, result);
    }

    fn cycle_done(&mut self, cycled: Result<Cycled, tokio::task::JoinError>) {
        match cycled {
            Ok((relay, result, cmd)) => {
                self.relay = Some(relay);
                self.relay_result(cmd, RelayOp::Cycle, result);
            }
            Err(e) => {
                tracing::error!(device = %self.cfg.name, error = %e, "power cycle task failed");
                self.relay_error = Some(format!("the power cycle task failed: {e}"));
            }
        }
    }

    fn relay_result(&mut self, cmd: DeviceCommand, op: RelayOp, result: Result<(), RelayError>) {
        let outcome = match result {
            Ok(()) => {
                if op != RelayOp::Cycle {
                    self.record(Class::Event, "tv.relay", json!({ "op": op.to_string() }));
                }
                CommandOutcome::done(json!({ "relay": op.to_string() }))
            }
            Err(e) => CommandOutcome::failed(format!("TV {}: relay {op}: {e}", cmd.device)),
        };
        let _ = cmd.reply.send(outcome);
    }

    /// Stores what this turn produced and, when it changed (or every few
    /// seconds), the TV's state for `sitelink status`.
    async fn flush(&mut self, ctx: &TaskContext, written: &mut Instant) {
        if !self.records.is_empty() {
            let records = std::mem::take(&mut self.records);
            ctx.heartbeat.set_waiting_on_store(true);
            let stored = ctx.store.append_batch(records).await;
            ctx.heartbeat.set_waiting_on_store(false);
            if let Err(e) = stored {
                tracing::error!(device = %self.cfg.name, error = %e, "TV records not stored");
            }
        }
        if self.dirty || written.elapsed() >= STATE_EVERY {
            self.dirty = false;
            *written = Instant::now();
            let state = json!({
                "host": self.cfg.host,
                "port": self.cfg.port,
                "tv": self.link.word,
                "reason": self.link.reason,
                "identity": self.identity,
                "last": self.last,
                "relay": self.cfg.relay.as_ref().map(|r| json!({
                    "chip": r.chip, "line": r.line, "error": self.relay_error,
                })),
                "counters": self.counters,
            });
            if let Err(e) = ctx
                .store
                .set_device_state(&self.cfg.name, state.to_string())
                .await
            {
                tracing::error!(device = %self.cfg.name, error = %e, "TV state not stored");
            }
        }
    }
}

fn probe_request(p: Probe) -> Request {
    Request::Shell {
        command: p.command().to_string(),
        limit: PROBE_LIMIT,
    }
}

/// Full jitter: a random wait up to the doubled step, capped.
fn backoff(attempts: u32) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << attempts.min(16))
        .min(BACKOFF_CAP);
    let ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Output for a result, lossy and bounded.
fn text(bytes: &[u8]) -> String {
    let cut = bytes.get(..RESULT_TEXT).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let ihdr = png.get(12..24)?;
    if &ihdr[..4] != b"IHDR" {
        return None;
    }
    let n = |b: &[u8]| Some(u32::from_be_bytes(b.try_into().ok()?));
    Some((n(&ihdr[4..8])?, n(&ihdr[8..12])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        for attempts in 0..40 {
            let cap = BACKOFF_BASE
                .saturating_mul(1u32 << attempts.min(16))
                .min(BACKOFF_CAP);
            for _ in 0..20 {
                assert!(backoff(attempts) <= cap);
            }
        }
        // Jitter: not always the same wait.
        let waits: std::collections::BTreeSet<Duration> = (0..50).map(|_| backoff(6)).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn png_size_reads_ihdr() {
        let mut png = PNG_SIGNATURE.to_vec();
        png.extend([0, 0, 0, 13]);
        png.extend(b"IHDR");
        png.extend(320u32.to_be_bytes());
        png.extend(180u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((320, 180)));
        assert_eq!(png_size(&png[..20]), None);
        assert_eq!(png_size(b"not a png at all, not at all"), None);
    }
}
