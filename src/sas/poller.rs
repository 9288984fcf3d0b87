//! `sas::poller`: one task per serial line. It shares the line fairly
//! between the EGMs on it (each EGM's `proto::Link` says when it wants the
//! line next; a pending retry goes first), polls meters on their periods,
//! turns what the EGMs say into records, and runs commands between polls.
//!
//! Store first, the SAS way: any poll on the line acknowledges the previous
//! reply (implied ACK), after which the EGM forgets that exception. So the
//! records of an exchange are committed before the next poll goes out: a
//! crash may cost a repeated poll, never an exception.

use crate::config::{EgmConfig, SasLineConfig};
use crate::daemon::task::{DeviceCommand, TaskContext};
use crate::sas::link::{Line, LineEvent, LinkTiming};
use crate::sas::proto::{
    ExceptionClass, ExceptionCode, Failure, Features, HandpayInfo, Link, LinkConfig, LinkEvent,
    LinkState, LongPoll, Meter, MeterCode, MeterPoll, PollId, Reply, Response, meter_delta,
};
use crate::store::{Class, CommandOutcome, NewRecord};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The meter polls of one meter round: the basic six, games won, credits.
const METER_ROUND: [MeterPoll; 3] = [
    MeterPoll::Basic,
    MeterPoll::GamesWon,
    MeterPoll::CurrentCredits,
];
/// How often an EGM's state (link, counters, meters) is written to the store
/// when nothing else changed.
const STATE_EVERY: Duration = Duration::from_secs(5);
/// The spacing between polls to one EGM unless its LP A0 allows 40 ms (§4).
const DEFAULT_SPACING: Duration = Duration::from_millis(200);
/// Who the EGM is and what it can do: read at link-up and after exception 3C
/// (operator changed options).
const IDENTITY: [LongPoll; 3] = [
    LongPoll::MachineInfo,
    LongPoll::SasVersion,
    LongPoll::EnabledFeatures { game: 0 },
];

/// What the line task knows of an EGM from earlier runs (its device state).
pub type Remembered = HashMap<String, Value>;

/// A command waiting for the long polls it was turned into.
struct Pending {
    cmd: DeviceCommand,
    waiting: Vec<PollId>,
    results: Vec<Value>,
    failed: Option<String>,
}

struct Egm {
    cfg: EgmConfig,
    link: Link,
    /// The line's `poll_interval_ms`; LP A0 decides whether it may be used.
    configured_spacing: Duration,
    next_meters: Instant,
    /// Last value of each meter, to turn readings into deltas.
    meters: BTreeMap<u8, (u64, u32)>,
    info: Value,
    state_written: Option<Instant>,
    dirty: bool,
}

impl Egm {
    fn new(
        cfg: &EgmConfig,
        config: LinkConfig,
        now: Instant,
        remembered: Option<&Value>,
    ) -> Option<Egm> {
        let link = match Link::new(cfg.address, config, now) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(device = %cfg.name, address = cfg.address, error = %e, "EGM not polled");
                return None;
            }
        };
        // Meters from the last run, so the first reading after a restart
        // still has its delta.
        let meters = remembered
            .and_then(|v| v.get("meters"))
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some((
                            u8::try_from(m.get("code")?.as_u64()?).ok()?,
                            (
                                m.get("value")?.as_u64()?,
                                u32::try_from(m.get("digits")?.as_u64()?).ok()?,
                            ),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Egm {
            cfg: cfg.clone(),
            configured_spacing: link.poll_interval(),
            link,
            next_meters: now,
            meters,
            info: Value::Null,
            state_written: None,
            dirty: true,
        })
    }

    fn state(&self, line: &SasLineConfig) -> Value {
        let stats = self.link.stats();
        let (link, reason) = match self.link.state() {
            LinkState::Connecting => ("connecting", None),
            LinkState::Up => ("up", None),
            LinkState::Down(r) => ("down", Some(r.to_string())),
        };
        json!({
            "line": line.name,
            "port": line.port,
            "address": self.cfg.address,
            "link": link,
            "reason": reason,
            "polls": stats.polls_sent,
            "replies": stats.replies,
            "no_reply": stats.no_reply,
            "bad_replies": stats.bad_replies,
            "retries": stats.retries,
            "failed_polls": stats.failed_polls,
            "poll_interval_ms": u64::try_from(self.link.poll_interval().as_millis()).unwrap_or(u64::MAX),
            "machine": self.info,
            "meters": self.meters.iter().map(|(code, (value, digits))| json!({
                "code": code, "value": value, "digits": digits,
            })).collect::<Vec<_>>(),
        })
    }

    /// Applies what LP A0 said: below 200 ms only if the EGM allows 40 ms.
    fn features(&mut self, f: &Features) {
        let spacing = if f.fast_polling() {
            self.configured_spacing
        } else {
            self.configured_spacing.max(DEFAULT_SPACING)
        };
        if spacing != self.configured_spacing {
            tracing::warn!(
                device = %self.cfg.name,
                address = self.cfg.address,
                configured_ms = self.configured_spacing.as_millis() as u64,
                "the EGM does not allow 40 ms polling (LP A0); it is polled every 200 ms"
            );
        }
        self.link.set_poll_interval(spacing);
        self.info["fast_polling"] = json!(f.fast_polling());
        self.info["extended_meters"] = json!(f.extended_meters());
        self.dirty = true;
    }

    /// A 1B reply as a `handpay` event; all zeros is no handpay (§9).
    fn handpay_record(&self, h: &HandpayInfo) -> Option<NewRecord> {
        if h.is_none() {
            return None;
        }
        let mut payload = json!({
            "kind": h.kind(),
            "level": h.level,
            "progressive_group": h.progressive_group,
            "amount": h.amount,
            "unit": if h.amount_in_cents() { "cents" } else { "credits" },
            "partial_pay_credits": h.partial_pay,
            "reset_to_credit_meter": h.reset_id == 0x01,
        });
        // The session fields are only meaningful from SAS 6.03 on (§9).
        let version = self.info["sas_version"]
            .as_str()
            .and_then(|v| v.parse::<u16>().ok());
        if version.is_some_and(|v| v >= 603) {
            payload["session_win"] = json!(h.session_win);
            payload["session_paid"] = json!(h.session_paid);
        }
        tracing::info!(device = %self.cfg.name, amount = h.amount, kind = h.kind(), "handpay");
        Some(NewRecord::new(
            Class::Event,
            &self.cfg.name,
            "handpay",
            payload.to_string(),
        ))
    }

    /// The meter readings of a reply as one accounting record.
    fn meters_record(&mut self, poll: u8, meters: &[Meter]) -> NewRecord {
        let values: Vec<Value> = meters
            .iter()
            .map(|m| {
                let digits = m.digits();
                let delta = self
                    .meters
                    .get(&m.code.0)
                    .filter(|_| cumulative(m.code))
                    .map(|&(prev, _)| meter_delta(prev, m.value, digits));
                self.meters.insert(m.code.0, (m.value, digits));
                let info = m.code.info();
                json!({
                    "code": m.code.0,
                    "name": info.map_or_else(|| m.code.to_string(), |i| i.name.to_string()),
                    "unit": info.map(|i| i.unit.to_string()),
                    "value": m.value,
                    "delta": delta,
                })
            })
            .collect();
        self.dirty = true;
        NewRecord::new(
            Class::Accounting,
            &self.cfg.name,
            "meters",
            json!({ "poll": format!("{poll:02X}"), "meters": values }).to_string(),
        )
    }
}

/// Counters only grow (and wrap); the credit balance and the "games since"
/// meters go down or reset, so a delta of theirs would be a lie.
fn cumulative(code: MeterCode) -> bool {
    ![
        MeterCode::CURRENT_CREDITS,
        MeterCode::GAMES_SINCE_POWER_UP,
        MeterCode::GAMES_SINCE_DOOR_CLOSED,
    ]
    .contains(&code)
}

fn class_name(c: ExceptionClass) -> &'static str {
    match c {
        ExceptionClass::Door => "door",
        ExceptionClass::Tilt => "tilt",
        ExceptionClass::Money => "money",
        ExceptionClass::Game => "game",
        ExceptionClass::Other => "other",
    }
}

/// What a command action asks of the EGM.
fn polls_for(action: &str) -> Option<Vec<LongPoll>> {
    Some(match action {
        "lock" => vec![LongPoll::Shutdown],
        "unlock" => vec![LongPoll::Startup],
        "sound-off" => vec![LongPoll::SoundOff],
        "sound-on" => vec![LongPoll::SoundOn],
        "bills-off" => vec![LongPoll::DisableBillAcceptor],
        "bills-on" => vec![LongPoll::EnableBillAcceptor],
        "meters" => METER_ROUND.iter().map(|m| LongPoll::Meters(*m)).collect(),
        _ => return None,
    })
}

const ACTIONS: &str = "lock, unlock, sound-off, sound-on, bills-off, bills-on, meters";

/// Runs one line until shutdown.
pub async fn run(cfg: SasLineConfig, remembered: Remembered, mut ctx: TaskContext) {
    let timing = LinkTiming {
        reply_window: cfg.reply_timeout,
        inter_byte_gap: cfg.inter_byte,
        poll_interval: cfg.poll_interval,
        adapter_slack: Duration::ZERO,
        ..LinkTiming::default()
    };
    let mut line = match Line::spawn(&cfg.port, timing.clone()) {
        Ok(l) => l,
        Err(e) => {
            // The config checks the form; this is what it could not check.
            tracing::error!(device = %cfg.name, port = %cfg.port, error = %e, "SAS line not started");
            let _ = ctx.shutdown.changed().await;
            return;
        }
    };
    let now = Instant::now();
    let link_config = timing.apply(LinkConfig::default());
    let mut egms: Vec<Egm> = cfg
        .egms
        .iter()
        .filter_map(|e| Egm::new(e, link_config.clone(), now, remembered.get(&e.name)))
        .collect();
    let mut pending: Vec<Pending> = Vec::new();
    // When the last byte came in, whatever it was.
    let mut last_rx: Option<Instant> = None;
    // Why the port is down, while it is.
    let mut port_down: Option<String> = None;
    // The last exchange failed (or bytes came unasked): wait for quiet first.
    let mut unsettled = false;
    tracing::info!(device = %cfg.name, port = %cfg.port, egms = egms.len(), "SAS line started");
    loop {
        ctx.heartbeat.beat();
        if *ctx.shutdown.borrow() {
            break;
        }
        let now = Instant::now();
        for e in &mut egms {
            if now >= e.next_meters && matches!(e.link.state(), LinkState::Up) {
                e.next_meters = now + e.cfg.meters_every;
                for m in METER_ROUND {
                    if let Err(err) = e.link.submit(LongPoll::Meters(m)) {
                        tracing::debug!(device = %e.cfg.name, error = %err, "meter poll not queued");
                    }
                }
            }
        }
        // A pending retry has the line first; otherwise whoever is due
        // first, except that a due poll to another EGM goes before a link's
        // acknowledging global: it acknowledges that link too.
        let pick = egms
            .iter()
            .position(|e| e.link.retry_pending())
            .or_else(|| {
                let first = (0..egms.len()).min_by_key(|&i| egms[i].link.poll_timeout())?;
                let other = (0..egms.len())
                    .filter(|&i| i != first && !egms[i].link.acking())
                    .filter(|&i| egms[i].link.poll_timeout() <= now)
                    .min_by_key(|&i| egms[i].link.poll_timeout());
                match other {
                    Some(o) if egms[first].link.acking() => Some(o),
                    _ => Some(first),
                }
            });
        let mut records = Vec::new();
        let due = pick.filter(|&i| egms[i].link.poll_timeout() <= now);
        // Only after an exchange that went wrong can its reply still be on
        // the way; after a clean one the next poll goes at once.
        if due.is_some()
            && unsettled
            && !quiet(
                &mut line,
                &mut last_rx,
                cfg.inter_byte,
                &cfg,
                &mut records,
                &mut port_down,
            )
            .await
        {
            return;
        }
        if due.is_some() {
            unsettled = false;
        }
        let now = Instant::now();
        if let Some(i) = due
            && let Some(tx) = egms[i].link.poll_transmit(now)
        {
            for (j, e) in egms.iter_mut().enumerate() {
                if j != i {
                    e.link.note_foreign_poll(now);
                }
            }
            // Bytes read before the poll went out cannot answer it: a reply
            // that came after its window (the link gave up on it), a chirp,
            // line noise. They wait in the line's queue while this task is
            // busy (storing, say) and would otherwise be taken as the reply
            // to this poll: a stale one-byte exception code from one EGM
            // read as the next EGM's, and every reply after it shifted by
            // one poll, inventing some exceptions and losing others.
            let sent_at = Instant::now();
            let before = egms[i].link.stats();
            if let Err(e) = line.send(&tx.bytes).await {
                // The link times the poll out and goes down by its own rules.
                tracing::debug!(device = %cfg.name, error = %e, "poll not sent");
            }
            while egms[i].link.awaiting_reply() {
                let deadline = tokio::time::Instant::from_std(egms[i].link.poll_timeout());
                tokio::select! {
                    event = line.next_event() => match event {
                        Some(LineEvent::Bytes(chunk)) if chunk.at < sent_at => {
                            last_rx = Some(chunk.at);
                            tracing::debug!(device = %cfg.name, bytes = chunk.bytes.len(), "bytes from before the poll (a late reply, a chirp or noise) left out");
                        }
                        Some(LineEvent::Bytes(chunk)) => {
                            last_rx = Some(chunk.at);
                            egms[i].link.handle_bytes(chunk.at, &unmarked(&chunk.bytes, &chunk.wakeup));
                        }
                        Some(other) => records.extend(port_event(&cfg, other, &mut port_down)),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(deadline) => egms[i].link.handle_timeout(Instant::now()),
                }
            }
            let after = egms[i].link.stats();
            // Bytes nobody asked for (during a global: a chirp) may have
            // more behind them: wait for quiet before the next poll.
            unsettled = after.no_reply + after.bad_replies + after.stray_bytes
                > before.no_reply + before.bad_replies + before.stray_bytes;
        } else {
            let wake = egms
                .iter()
                .map(|e| e.link.poll_timeout())
                .chain(egms.iter().map(|e| e.next_meters))
                .min()
                .unwrap_or(now + Duration::from_secs(1))
                .min(now + Duration::from_secs(1));
            tokio::select! {
                _ = ctx.shutdown.changed() => break,
                cmd = ctx.commands.recv() => match cmd {
                    Some(cmd) => command(&mut egms, &mut pending, cmd, port_down.as_deref()),
                    None => break,
                },
                event = line.next_event() => match event {
                    // Bytes with no poll out: a chirp, noise or a late reply.
                    Some(LineEvent::Bytes(chunk)) => {
                        last_rx = Some(chunk.at);
                        unsettled = true;
                        tracing::debug!(device = %cfg.name, bytes = chunk.bytes.len(), "bytes with no poll out (a chirp or noise)");
                    }
                    Some(other) => records.extend(port_event(&cfg, other, &mut port_down)),
                    None => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
        while let Ok(cmd) = ctx.commands.try_recv() {
            command(&mut egms, &mut pending, cmd, port_down.as_deref());
        }
        for e in &mut egms {
            while let Some(event) = e.link.poll_event() {
                records.extend(link_event(e, event, &mut pending));
            }
        }
        if !records.is_empty() {
            // Before the next poll acknowledges what these records hold.
            ctx.heartbeat.set_waiting_on_store(true);
            let stored = ctx.store.append_batch_now(records).await;
            ctx.heartbeat.set_waiting_on_store(false);
            if let Err(e) = stored {
                tracing::error!(device = %cfg.name, error = %e, "SAS records not stored; the line stops");
                break;
            }
        }
        let now = Instant::now();
        for e in &mut egms {
            if e.dirty || e.state_written.is_none_or(|t| now - t >= STATE_EVERY) {
                e.dirty = false;
                e.state_written = Some(now);
                if ctx
                    .store
                    .set_device_state(&e.cfg.name, e.state(&cfg).to_string())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    for p in pending {
        let _ = p.cmd.reply.send(CommandOutcome::failed(
            "the SAS line stopped before the EGM answered",
        ));
    }
    tracing::info!(device = %cfg.name, "SAS line stopped");
}

/// Waits until the line has been quiet for `gap`, leaving out what comes
/// meanwhile: a reply that came after its window, the duplicate of one that
/// was retried, a chirp. A poll sent into that would take those bytes for its
/// own answer, another EGM's or an older poll's, and shift every exception
/// after it. A line that never falls silent (noise) is waited on for ten gaps
/// at most. Returns false once the line has stopped.
async fn quiet(
    line: &mut Line,
    last_rx: &mut Option<Instant>,
    gap: Duration,
    cfg: &SasLineConfig,
    records: &mut Vec<NewRecord>,
    port_down: &mut Option<String>,
) -> bool {
    let give_up = tokio::time::Instant::now() + gap * 10;
    loop {
        let Some(last) = *last_rx else {
            return true;
        };
        let until = tokio::time::Instant::from_std(last + gap).min(give_up);
        tokio::select! {
            // Bytes already waiting count before the clock says "quiet".
            biased;
            event = line.next_event() => match event {
                Some(LineEvent::Bytes(chunk)) => {
                    *last_rx = Some(chunk.at);
                    tracing::debug!(device = %cfg.name, bytes = chunk.bytes.len(), "bytes between exchanges (a late reply, a chirp or noise) left out");
                }
                Some(other) => records.extend(port_event(cfg, other, port_down)),
                None => return false,
            },
            _ = tokio::time::sleep_until(until) => return true,
        }
    }
}

/// Reply bytes without those that came with the wakeup bit (chirps, §1.2).
fn unmarked(bytes: &[u8], wakeup: &[usize]) -> Vec<u8> {
    bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !wakeup.contains(i))
        .map(|(_, b)| *b)
        .collect()
}

/// Records a port event and keeps `port_down` (why the port is down) in step.
fn port_event(
    cfg: &SasLineConfig,
    event: LineEvent,
    port_down: &mut Option<String>,
) -> Option<NewRecord> {
    let (kind, payload) = match event {
        LineEvent::Up { kind } => {
            *port_down = None;
            tracing::info!(device = %cfg.name, port = %cfg.port, ?kind, "SAS port open");
            (
                "port.up",
                json!({ "port": cfg.port, "transport": format!("{kind:?}") }),
            )
        }
        LineEvent::Down(e) => {
            *port_down = Some(e.to_string());
            tracing::error!(device = %cfg.name, port = %cfg.port, error = %e, "SAS port lost; reopening it");
            (
                "port.down",
                json!({ "port": cfg.port, "error": e.to_string() }),
            )
        }
        LineEvent::Bytes(_) | LineEvent::Quiet { .. } => return None,
    };
    Some(NewRecord::new(
        Class::Event,
        &cfg.name,
        kind,
        payload.to_string(),
    ))
}

fn link_event(e: &mut Egm, event: LinkEvent, pending: &mut Vec<Pending>) -> Option<NewRecord> {
    let name = e.cfg.name.clone();
    let event_record = |kind: &str, payload: Value| {
        Some(NewRecord::new(
            Class::Event,
            &name,
            kind,
            payload.to_string(),
        ))
    };
    match event {
        LinkEvent::Up => {
            e.dirty = true;
            tracing::info!(device = %name, address = e.cfg.address, "EGM link up");
            // Who the EGM is, once per link-up. Not `0E 00` as NC sends: an
            // EGM left in RTE mode is read as it is (the link takes event
            // frames), and that poll's one-byte ACK, when late on a line
            // framed by gaps (PTY, TCP), passed for another EGM's exception.
            for poll in IDENTITY {
                let _ = e.link.submit(poll);
            }
            e.next_meters = Instant::now();
            event_record("link.up", json!({ "address": e.cfg.address }))
        }
        LinkEvent::Down(reason) => {
            e.dirty = true;
            tracing::warn!(device = %name, address = e.cfg.address, reason = %reason, "EGM link down");
            event_record(
                "link.down",
                json!({ "address": e.cfg.address, "reason": reason.to_string() }),
            )
        }
        LinkEvent::Exception(ev) => {
            let follow_up: &[LongPoll] = match ev.code {
                // "Read 1B now", not another handpay (§9).
                ExceptionCode::HANDPAY_PENDING => &[LongPoll::HandpayInfo],
                ExceptionCode::OPTIONS_CHANGED => &IDENTITY,
                _ => &[],
            };
            for poll in follow_up {
                if let Err(err) = e.link.submit(poll.clone()) {
                    tracing::warn!(device = %name, error = %err, "follow-up poll not queued");
                }
            }
            let info = ev.code.info();
            event_record(
                "exception",
                json!({
                    "code": ev.code.0,
                    "name": ev.code.to_string(),
                    "class": class_name(ev.code.class()),
                    "meaning": info.map(|i| i.meaning),
                    "data": format!("{:?}", ev.data),
                }),
            )
        }
        LinkEvent::RomSignature(sig) => event_record("rom.signature", json!({ "signature": sig })),
        LinkEvent::ReplyLost { poll } => {
            tracing::warn!(device = %name, ?poll, "a reply was acknowledged before it was read");
            event_record("link.reply_lost", json!({ "poll": format!("{poll:?}") }))
        }
        LinkEvent::Completed { id, poll, result } => {
            let record = match &result {
                Ok(Response::Data(Reply::Meters { poll, meters })) => {
                    Some(e.meters_record(poll.command(), meters))
                }
                Ok(Response::Data(Reply::MachineInfo(m))) => {
                    e.info["game_id"] = json!(m.game_id.to_string());
                    e.info["paytable"] = json!(m.paytable_id.to_string());
                    e.info["denomination"] = json!(m.denomination);
                    e.dirty = true;
                    None
                }
                Ok(Response::Data(Reply::Handpay(h))) => e.handpay_record(h),
                Ok(Response::Data(Reply::Features(f))) => {
                    e.features(f);
                    None
                }
                Ok(Response::Data(Reply::SasVersion(v))) => {
                    e.info["sas_version"] = json!(v.version.to_string());
                    e.info["serial"] = json!(String::from_utf8_lossy(&v.serial));
                    e.dirty = true;
                    None
                }
                _ => None,
            };
            if let Some(id) = id {
                settle(pending, &name, id, &poll, &result);
            }
            record
        }
    }
}

/// Counts a finished long poll of `device` against the command waiting for
/// it. Poll ids are numbered per EGM link, so the same id on another EGM of
/// the line is another poll: the device must match too.
fn settle(
    pending: &mut Vec<Pending>,
    device: &str,
    id: PollId,
    poll: &LongPoll,
    result: &Result<Response, Failure>,
) {
    let Some(i) = pending
        .iter()
        .position(|p| p.cmd.device == device && p.waiting.contains(&id))
    else {
        return;
    };
    let p = &mut pending[i];
    p.waiting.retain(|w| *w != id);
    let name = crate::sas::proto::long_poll_name(poll.command()).map_or_else(
        || format!("long poll {:02X}", poll.command()),
        str::to_string,
    );
    match result {
        Ok(Response::Ack) => p.results.push(json!({ "poll": name, "result": "acknowledged" })),
        Ok(Response::Data(Reply::Meters { meters, .. })) => p.results.push(json!({
            "poll": name,
            "meters": meters.iter().map(|m| json!({ "name": m.code.to_string(), "value": m.value })).collect::<Vec<_>>(),
        })),
        Ok(Response::Nack) => p.failed = Some(format!("the EGM refused {name} (NACK)")),
        Ok(other) => p.results.push(json!({ "poll": name, "result": format!("{other:?}") })),
        Err(f) => p.failed = Some(format!("{name}: {f}")),
    }
    if p.waiting.is_empty() {
        let p = pending.swap_remove(i);
        let outcome = match p.failed {
            Some(why) => CommandOutcome::failed(why),
            None => CommandOutcome::done(json!({ "polls": p.results })),
        };
        let _ = p.cmd.reply.send(outcome);
    }
}

fn command(
    egms: &mut [Egm],
    pending: &mut Vec<Pending>,
    cmd: DeviceCommand,
    port_down: Option<&str>,
) {
    // Said at once: waiting for the link to time out would only hide the cause.
    if let Some(why) = port_down {
        let _ = cmd.reply.send(CommandOutcome::failed(format!(
            "not sent to {}: {why}; it can be sent again once the port is back",
            cmd.device
        )));
        return;
    }
    let Some(e) = egms.iter_mut().find(|e| e.cfg.name == cmd.device) else {
        let _ = cmd.reply.send(CommandOutcome::rejected(format!(
            "{} is not on this SAS line",
            cmd.device
        )));
        return;
    };
    let Some(polls) = polls_for(&cmd.action).filter(|_| cmd.args.is_empty()) else {
        let why = format!(
            "EGM {} has no action `{}` with {} argument(s); actions: {ACTIONS}",
            cmd.device,
            cmd.action,
            cmd.args.len()
        );
        let _ = cmd.reply.send(CommandOutcome::rejected(why));
        return;
    };
    let mut waiting = Vec::new();
    for poll in polls {
        match e.link.submit(poll) {
            Ok(id) => waiting.push(id),
            Err(err) => {
                let _ = cmd.reply.send(CommandOutcome::failed(err.to_string()));
                return;
            }
        }
    }
    pending.push(Pending {
        cmd,
        waiting,
        results: Vec::new(),
        failed: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_bytes_are_left_out() {
        assert_eq!(unmarked(&[1, 2, 3, 4], &[0, 2]), [2, 4]);
        assert_eq!(unmarked(&[1, 2], &[]), [1, 2]);
    }

    #[test]
    fn a_finished_poll_settles_only_its_own_egms_command() {
        let (tx1, mut rx1) = tokio::sync::oneshot::channel();
        let (tx2, mut rx2) = tokio::sync::oneshot::channel();
        let cmd = |device: &str, reply| DeviceCommand {
            id: 1,
            device: device.into(),
            action: "lock".into(),
            args: Vec::new(),
            reply,
        };
        // Both EGMs' links numbered their lock poll 0.
        let mut pending = vec![
            Pending {
                cmd: cmd("egm-1", tx1),
                waiting: vec![PollId(0)],
                results: Vec::new(),
                failed: None,
            },
            Pending {
                cmd: cmd("egm-2", tx2),
                waiting: vec![PollId(0)],
                results: Vec::new(),
                failed: None,
            },
        ];
        settle(
            &mut pending,
            "egm-2",
            PollId(0),
            &LongPoll::Shutdown,
            &Ok(Response::Ack),
        );
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].cmd.device, "egm-1");
        assert!(rx1.try_recv().is_err(), "egm-1's command is still waiting");
        assert!(matches!(
            rx2.try_recv(),
            Ok(CommandOutcome {
                status: crate::store::CommandStatus::Done,
                ..
            })
        ));
    }

    #[test]
    fn every_action_maps_to_polls() {
        for a in ACTIONS.split(", ") {
            assert!(polls_for(a).is_some_and(|p| !p.is_empty()), "{a}");
        }
        assert!(polls_for("reboot").is_none());
    }
}
