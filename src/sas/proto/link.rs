//! The link to one EGM address, as a sans-IO state machine in the style of
//! quinn-proto: the shell asks [`Link::poll_transmit`] what to send, feeds
//! what came back with [`Link::handle_bytes`], calls [`Link::handle_timeout`]
//! when [`Link::poll_timeout`] is reached, and drains [`Link::poll_event`].
//!
//! The rules it keeps (§5 of the protocol document):
//! - There are no host ACK bytes: the next poll is the acknowledgement. So it
//!   never sends two general polls in a row to one EGM (the second would be a
//!   NACK, the EGM would repeat its event and never advance) and never the
//!   same long poll twice in a row except as a retry. It alternates: after a
//!   general poll a long poll (a queued one, or the filler), after a long poll
//!   a general poll.
//! - A lost or bad reply is retried once with the identical poll, after the
//!   normal spacing; a third try is never sent (its answer would be
//!   unreliable). After a failed poll the link resyncs with a global `80`.
//! - At start-up an EGM ignores polls to itself until it sees a poll to
//!   another address or a global poll: the link opens with `80`.
//! - BUSY, or an event frame sent instead of a long-poll reply, means "ask
//!   again later": a general poll goes first, then the same long poll.
//!
//! On a shared line one link's transmission is another's foreign poll: the
//! line tells every other link with [`Link::note_foreign_poll`], and gives a
//! link whose [`Link::retry_pending`] is set the next turn, since a poll to
//! another EGM before the retry acknowledges (and loses) the lost reply.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::poll::{EncodeError, LongPoll, Poll, PollKind};
use super::response::{Event, EventData, Expect, Parsed, Response, ResponseError, ResponseParser};

/// One byte on the wire: start, 8 data, wakeup, stop at 19200 baud (§1).
pub const BYTE_TIME: Duration = Duration::from_micros(573);
/// An EGM in loop break chirps every 200 ms (§4); a resync waits this long.
const CHIRP_SETTLE: Duration = Duration::from_millis(250);

/// What the link sends to acknowledge a general poll's reply when no long
/// poll is queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filler {
    /// The global general poll `80`, sent as soon as the reply is in: one
    /// byte, no reply, and the next general poll keeps its place, so the EGM
    /// can hand over an exception every poll interval instead of every other
    /// one. It is not a poll to this EGM's address, so the spacing rule does
    /// not apply to it, no more than to polls to the other EGMs of a
    /// multidrop line (SP polls an unused address instead; same effect).
    Global,
    /// A harmless long poll whose reply is useful; NC uses 1A.
    LongPoll(LongPoll),
}

/// Timing and limits. The defaults follow the document's host policy (§4, §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Spacing between polls to this EGM, from the end of one exchange to the
    /// next poll: 200 ms unless LP A0 allows 40 ms (§4).
    pub poll_interval: Duration,
    /// From the last byte sent to the first byte of the reply: 20 ms plus
    /// the adapter's budget (USB latency timers add up to 16 ms).
    pub reply_timeout: Duration,
    /// Quiet time that ends a reply: 5 ms plus slack for USB adapters, which
    /// deliver bytes in bursts.
    pub inter_byte_timeout: Duration,
    /// Consecutive failed polls (each tried twice) before the link is down.
    pub down_after: u32,
    /// Spacing while the link is down (NC rediscovers every second).
    pub down_interval: Duration,
    /// BUSY replies or events-instead-of-replies tolerated for one long poll
    /// before it is reported as not done.
    pub max_deferrals: u32,
    /// Long polls that may wait in the queue.
    pub queue_limit: usize,
    pub filler: Filler,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            poll_interval: Duration::from_millis(200),
            reply_timeout: Duration::from_millis(50),
            inter_byte_timeout: Duration::from_millis(20),
            down_after: 5,
            down_interval: Duration::from_secs(1),
            max_deferrals: 10,
            queue_limit: 32,
            filler: Filler::Global,
        }
    }
}

/// Names a submitted long poll in its [`LinkEvent::Completed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PollId(pub u64);

/// Why a poll got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no reply")]
    NoReply,
    #[error(transparent)]
    Garbled(ResponseError),
    #[error("link went down before the poll was sent")]
    LinkDown,
    #[error("EGM stayed busy after {0} tries")]
    Deferred(u32),
}

/// Why the link went down, for the event record and the technician.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Silence: cable, address, the EGM's SAS port disabled, or address 0
    /// after a memory error (§2).
    NoReply { polls: u32 },
    /// Replies that could not be read: baud rate, wiring, noise, or another
    /// host on the line.
    Garbled { polls: u32, last: ResponseError },
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NoReply { polls } => write!(
                f,
                "no reply to {polls} polls (check the cable, the EGM's SAS address and that its SAS port is enabled)"
            ),
            DownReason::Garbled { polls, last } => write!(
                f,
                "{polls} polls without a readable reply (check wiring, baud rate, another host on the line); last: {last}"
            ),
        }
    }
}

/// The link as the poller reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not answered yet since start.
    Connecting,
    Up,
    Down(DownReason),
}

/// What happened, for the poller to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The EGM answered after start or after being down.
    Up,
    Down(DownReason),
    /// An exception (plain or real-time, with its data). "Nothing pending"
    /// codes (00, 1F) are not reported. A retried general poll may report the
    /// same exception again only if the EGM repeats it; the link never causes
    /// a repeat by itself.
    Exception(Event),
    RomSignature(u16),
    /// A submitted long poll (or the filler, `id` = `None`) is finished.
    Completed {
        id: Option<PollId>,
        poll: LongPoll,
        result: Result<Response, Failure>,
    },
    /// A poll to another address went out while this EGM's reply was lost and
    /// not yet retried: that reply is acknowledged and gone. For a general
    /// poll an exception may have been lost.
    ReplyLost {
        poll: PollKind,
    },
}

/// Counters for `sitelink status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub polls_sent: u64,
    pub replies: u64,
    pub no_reply: u64,
    pub bad_replies: u64,
    pub retries: u64,
    pub failed_polls: u64,
    /// Bytes that arrived with no poll outstanding.
    pub stray_bytes: u64,
}

/// A link-level error, naming the address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("address {address} is not an EGM address (1 to 127)")]
    BadAddress { address: u8 },
    #[error("EGM at address {address}: {poll}: {error}")]
    Encode {
        address: u8,
        poll: PollKind,
        error: EncodeError,
    },
    #[error("EGM at address {address}: {limit} long polls already waiting")]
    QueueFull { address: u8, limit: usize },
    #[error("EGM at address {address}: link is down")]
    Down { address: u8 },
}

/// Bytes for the shell to send now; the first goes with the wakeup bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub poll: Poll,
    pub bytes: Vec<u8>,
    /// The identical poll again, after a lost or bad reply.
    pub retry: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    Sync,
    /// The filler global that acknowledges a general poll's reply.
    Ack,
    General,
    Long {
        id: Option<PollId>,
        poll: LongPoll,
        deferrals: u32,
    },
}

#[derive(Clone, Debug)]
struct Queued {
    id: PollId,
    poll: LongPoll,
    deferrals: u32,
}

#[derive(Debug)]
struct Outstanding {
    job: Job,
    bytes: Vec<u8>,
    attempt: u8,
    /// `None` for a global poll: nothing answers it.
    parser: Option<ResponseParser>,
    deadline: Instant,
    got_bytes: bool,
}

/// The last thing this EGM answered that no later poll has acknowledged yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unacked {
    Nothing,
    General,
    Long(u8),
}

/// The link state of one EGM address.
#[derive(Debug)]
pub struct Link {
    address: u8,
    config: LinkConfig,
    state: LinkState,
    rte: bool,
    sync_pending: bool,
    unacked: Unacked,
    outstanding: Option<Outstanding>,
    retry: Option<(Job, Vec<u8>)>,
    queue: VecDeque<Queued>,
    next_id: u64,
    next_send: Instant,
    /// When the last exchange ended: the filler global may go from then.
    last_end: Instant,
    failures: u32,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
}

impl Link {
    pub fn new(address: u8, config: LinkConfig, now: Instant) -> Result<Link, LinkError> {
        if !(1..=0x7F).contains(&address) {
            return Err(LinkError::BadAddress { address });
        }
        if let Filler::LongPoll(poll) = &config.filler {
            poll.encode(address, &mut Vec::new())
                .map_err(|error| LinkError::Encode {
                    address,
                    poll: PollKind::Long(poll.command()),
                    error,
                })?;
        }
        Ok(Link {
            address,
            config,
            state: LinkState::Connecting,
            rte: false,
            sync_pending: true,
            unacked: Unacked::Nothing,
            outstanding: None,
            retry: None,
            queue: VecDeque::new(),
            next_id: 0,
            next_send: now,
            last_end: now,
            failures: 0,
            events: VecDeque::new(),
            stats: LinkStats::default(),
        })
    }

    pub fn address(&self) -> u8 {
        self.address
    }

    pub fn state(&self) -> &LinkState {
        &self.state
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Whether the EGM is in real-time event mode (set when `0E 01` is ACKed).
    pub fn rte(&self) -> bool {
        self.rte
    }

    /// A poll went out and its exchange is not over: feed it bytes and
    /// timeouts, and send nothing else on the line meanwhile.
    pub fn awaiting_reply(&self) -> bool {
        self.outstanding.is_some()
    }

    /// A lost reply waits for its retry: this link must have the line's next
    /// transmission.
    pub fn retry_pending(&self) -> bool {
        self.retry.is_some()
    }

    /// Changes the spacing between polls to this EGM, from the next exchange
    /// on: LP A0 says whether it may be polled every 40 ms (§4, §13).
    pub fn set_poll_interval(&mut self, interval: Duration) {
        self.config.poll_interval = interval;
    }

    pub fn poll_interval(&self) -> Duration {
        self.config.poll_interval
    }

    /// The next transmission is the filler global, which need not wait for
    /// the spacing. On a shared line a due poll to another EGM does the same
    /// and more: the line should give that one the turn.
    pub fn acking(&self) -> bool {
        self.config.filler == Filler::Global
            && self.unacked == Unacked::General
            && !self.sync_pending
            && self.retry.is_none()
            && self.queue.is_empty()
    }

    fn send_at(&self) -> Instant {
        if self.acking() {
            self.last_end
        } else {
            self.next_send
        }
    }

    /// Queues a long poll; the result comes as [`LinkEvent::Completed`].
    pub fn submit(&mut self, poll: LongPoll) -> Result<PollId, LinkError> {
        let address = self.address;
        if matches!(self.state, LinkState::Down(_)) {
            return Err(LinkError::Down { address });
        }
        if self.queue.len() >= self.config.queue_limit {
            return Err(LinkError::QueueFull {
                address,
                limit: self.config.queue_limit,
            });
        }
        // Encode now so a bad value is the caller's error, not a surprise later.
        poll.encode(address, &mut Vec::new())
            .map_err(|error| LinkError::Encode {
                address,
                poll: PollKind::Long(poll.command()),
                error,
            })?;
        let id = PollId(self.next_id);
        self.next_id += 1;
        self.queue.push_back(Queued {
            id,
            poll,
            deferrals: 0,
        });
        Ok(id)
    }

    /// The next thing to send, if it is time. `now` is when the shell starts
    /// writing it.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.outstanding.is_some() || now < self.send_at() {
            return None;
        }
        let (job, bytes, attempt) = match self.retry.take() {
            Some((job, bytes)) => (job, bytes, 2),
            None => {
                let job = self.next_job();
                let bytes = self.encode_job(&job);
                (job, bytes, 1)
            }
        };
        let poll = self.job_poll(&job);
        let expect = Expect::for_poll(&poll);
        let wire = BYTE_TIME * u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let deadline = match expect {
            Some(_) => now + wire + self.config.reply_timeout,
            // Nobody answers a global, but the line stays ours for one
            // inter-byte gap: without a wakeup bit (PTY, TCP) the next poll
            // must start a new frame. An EGM out of touch (link down, or
            // not up yet) may be chirping in loop break (§4): wait out a
            // chirp interval, so a chirp sent just before it heard the
            // global comes now, not as the next poll's reply.
            None if self.state != LinkState::Up => now + wire + CHIRP_SETTLE,
            None => now + wire + self.config.inter_byte_timeout,
        };
        self.stats.polls_sent += 1;
        if attempt == 2 {
            self.stats.retries += 1;
        }
        self.outstanding = Some(Outstanding {
            job,
            bytes: bytes.clone(),
            attempt,
            parser: expect.map(ResponseParser::new),
            deadline,
            got_bytes: false,
        });
        Some(Transmit {
            poll,
            bytes,
            retry: attempt == 2,
        })
    }

    /// Bytes received from the line.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let Some(out) = self.outstanding.as_mut() else {
            self.stats.stray_bytes += bytes.len() as u64;
            return;
        };
        let Some(parser) = out.parser.as_mut() else {
            self.stats.stray_bytes += bytes.len() as u64;
            return;
        };
        if bytes.is_empty() {
            return;
        }
        out.got_bytes = true;
        out.deadline = now + self.config.inter_byte_timeout;
        match parser.push(bytes) {
            Parsed::NeedMore => {}
            Parsed::Done(response) => self.finish(now, Ok(response)),
            Parsed::Invalid(e) => self.finish(now, Err(Failure::Garbled(e))),
        }
    }

    /// Call when [`Link::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(out) = self.outstanding.as_mut() else {
            return;
        };
        if now < out.deadline {
            return;
        }
        let result = match out.parser.as_mut() {
            None => return self.finish_global(now),
            Some(_) if !out.got_bytes => Err(Failure::NoReply),
            Some(parser) => match parser.idle() {
                Parsed::Done(response) => Ok(response),
                Parsed::Invalid(e) => Err(Failure::Garbled(e)),
                // Cannot happen with bytes received; treat as silence.
                Parsed::NeedMore => Err(Failure::NoReply),
            },
        };
        self.finish(now, result);
    }

    /// When to call [`Link::handle_timeout`] or, with nothing outstanding,
    /// [`Link::poll_transmit`] again.
    pub fn poll_timeout(&self) -> Instant {
        self.outstanding
            .as_ref()
            .map_or_else(|| self.send_at(), |o| o.deadline)
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Another link on the line sent a poll (or a global): it acknowledged
    /// this EGM's last reply and counts as the sync an unsynced EGM waits for.
    /// The line should never do this while this link awaits a reply; if it
    /// does, that exchange is abandoned like a lost reply.
    pub fn note_foreign_poll(&mut self, now: Instant) {
        self.unacked = Unacked::Nothing;
        self.sync_pending = false;
        let abandoned = self.outstanding.take().map(|o| {
            self.schedule(now);
            o.job
        });
        if let Some(job) = abandoned.or_else(|| self.retry.take().map(|(job, _)| job)) {
            self.lost(job);
        }
    }

    /// A reply acknowledged before it was read: report it, and ask a wanted
    /// long poll again as a fresh poll.
    fn lost(&mut self, job: Job) {
        let poll = match &job {
            Job::Sync | Job::Ack => return,
            Job::General => PollKind::General,
            Job::Long { poll, .. } => PollKind::Long(poll.command()),
        };
        self.events.push_back(LinkEvent::ReplyLost { poll });
        if let Job::Long {
            id: Some(id),
            poll,
            deferrals,
        } = job
        {
            self.queue.push_front(Queued {
                id,
                poll,
                deferrals,
            });
        }
    }

    fn next_job(&mut self) -> Job {
        if self.sync_pending {
            return Job::Sync;
        }
        match self.unacked {
            // A general poll now would be a NACK of the last one's reply.
            Unacked::General => match self.queue.pop_front() {
                Some(q) => Job::Long {
                    id: Some(q.id),
                    poll: q.poll,
                    deferrals: q.deferrals,
                },
                None => match &self.config.filler {
                    Filler::Global => Job::Ack,
                    Filler::LongPoll(poll) => Job::Long {
                        id: None,
                        poll: poll.clone(),
                        deferrals: 0,
                    },
                },
            },
            // After a long poll (answered or deferred), a general poll: it
            // never repeats a long poll, and it goes before a deferred one is
            // asked again.
            Unacked::Long(_) => Job::General,
            // A poll to another EGM acknowledged the last reply, so either
            // poll is safe. On a shared line that happens before every turn:
            // without taking the queue here, long polls would never go out.
            // While polls fail, general polls probe the link instead.
            Unacked::Nothing if self.failures == 0 => match self.queue.pop_front() {
                Some(q) => Job::Long {
                    id: Some(q.id),
                    poll: q.poll,
                    deferrals: q.deferrals,
                },
                None => Job::General,
            },
            Unacked::Nothing => Job::General,
        }
    }

    fn job_poll(&self, job: &Job) -> Poll {
        match job {
            Job::Sync | Job::Ack => Poll::General { address: 0 },
            Job::General => Poll::General {
                address: self.address,
            },
            Job::Long { poll, .. } => Poll::Long {
                address: self.address,
                poll: poll.clone(),
            },
        }
    }

    fn encode_job(&self, job: &Job) -> Vec<u8> {
        // Submitted polls and the filler were encoded once already (submit,
        // new), so this cannot fail; the fallback only avoids a panic path.
        self.job_poll(job)
            .encode()
            .unwrap_or_else(|_| vec![0x80 | self.address])
    }

    fn finish_global(&mut self, now: Instant) {
        let job = self.outstanding.take().map(|o| o.job);
        self.unacked = Unacked::Nothing;
        // The filler global keeps the next general poll where it was.
        if job != Some(Job::Ack) {
            self.sync_pending = false;
            self.schedule(now);
        }
    }

    fn schedule(&mut self, now: Instant) {
        self.last_end = now;
        let gap = match self.state {
            LinkState::Down(_) => self.config.down_interval,
            _ => self.config.poll_interval,
        };
        self.next_send = now + gap;
    }

    fn finish(&mut self, now: Instant, result: Result<Response, Failure>) {
        let Some(out) = self.outstanding.take() else {
            return;
        };
        self.schedule(now);
        match result {
            Ok(response) => {
                self.stats.replies += 1;
                self.answered(out.job, response);
            }
            // In RTE mode an EGM with nothing to say may stay silent (§6); the
            // link is judged by long-poll replies.
            Err(Failure::NoReply) if self.rte && out.job == Job::General => {
                self.unacked = Unacked::General;
            }
            Err(failure) => {
                match &failure {
                    Failure::Garbled(_) => self.stats.bad_replies += 1,
                    _ => self.stats.no_reply += 1,
                }
                if out.attempt == 1 {
                    self.retry = Some((out.job, out.bytes));
                } else {
                    self.failed(out.job, failure);
                }
            }
        }
    }

    fn answered(&mut self, job: Job, response: Response) {
        self.failures = 0;
        if self.state != LinkState::Up {
            self.state = LinkState::Up;
            self.events.push_back(LinkEvent::Up);
        }
        match job {
            Job::Sync | Job::Ack => {}
            Job::General => {
                self.unacked = Unacked::General;
                match response {
                    Response::Exception(code) => self.exception(Event {
                        code,
                        data: EventData::None,
                    }),
                    Response::Event(event) => self.exception(event),
                    Response::RomSignature(sig) => {
                        self.events.push_back(LinkEvent::RomSignature(sig));
                    }
                    // The general-poll parser yields none of the others.
                    _ => {}
                }
            }
            Job::Long {
                id,
                poll,
                deferrals,
            } => {
                let command = poll.command();
                self.unacked = Unacked::Long(command);
                match response {
                    Response::Busy => self.defer(id, poll, deferrals, Response::Busy),
                    Response::Event(event) => {
                        self.exception(event.clone());
                        self.defer(id, poll, deferrals, Response::Event(event));
                    }
                    Response::RomSignature(sig) if command != 0x21 => {
                        self.events.push_back(LinkEvent::RomSignature(sig));
                        self.defer(id, poll, deferrals, Response::RomSignature(sig));
                    }
                    response => {
                        if let (Response::Ack, LongPoll::RealTimeEvents(on)) = (&response, &poll) {
                            self.rte = *on;
                        }
                        self.events.push_back(LinkEvent::Completed {
                            id,
                            poll,
                            result: Ok(response),
                        });
                    }
                }
            }
        }
    }

    fn exception(&mut self, event: Event) {
        if !event.code.is_nothing() {
            self.events.push_back(LinkEvent::Exception(event));
        }
    }

    /// The long poll was not answered this time; ask again after a general
    /// poll (the alternation guarantees one goes first). The filler is not
    /// worth asking again.
    fn defer(&mut self, id: Option<PollId>, poll: LongPoll, deferrals: u32, got: Response) {
        let Some(id) = id else {
            return;
        };
        let deferrals = deferrals + 1;
        if deferrals > self.config.max_deferrals {
            let result = match got {
                Response::Busy => Ok(Response::Busy),
                _ => Err(Failure::Deferred(deferrals)),
            };
            self.events.push_back(LinkEvent::Completed {
                id: Some(id),
                poll,
                result,
            });
        } else {
            self.queue.push_front(Queued {
                id,
                poll,
                deferrals,
            });
        }
    }

    fn failed(&mut self, job: Job, failure: Failure) {
        self.stats.failed_polls += 1;
        self.failures += 1;
        // An EGM that missed polls may have fallen out of sync (loop break,
        // final NACK): resync before the next poll to it (§5).
        self.sync_pending = true;
        self.unacked = Unacked::Nothing;
        if let Job::Long { id, poll, .. } = job {
            self.events.push_back(LinkEvent::Completed {
                id,
                poll,
                result: Err(failure.clone()),
            });
        }
        if self.failures >= self.config.down_after && !matches!(self.state, LinkState::Down(_)) {
            let polls = self.failures;
            let reason = match failure {
                Failure::Garbled(last) => DownReason::Garbled { polls, last },
                _ => DownReason::NoReply { polls },
            };
            self.state = LinkState::Down(reason.clone());
            self.rte = false;
            self.events.push_back(LinkEvent::Down(reason));
            for q in std::mem::take(&mut self.queue) {
                self.events.push_back(LinkEvent::Completed {
                    id: Some(q.id),
                    poll: q.poll,
                    result: Err(Failure::LinkDown),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::proto::poll::MeterPoll;
    use crate::sas::proto::tables::ExceptionCode;

    struct Harness {
        link: Link,
        now: Instant,
    }

    impl Harness {
        fn new(config: LinkConfig) -> Harness {
            let now = Instant::now();
            Harness {
                link: Link::new(1, config, now).unwrap(),
                now,
            }
        }

        /// Advances to the link's next deadline and returns what it sends.
        fn send(&mut self) -> Transmit {
            self.now = self.now.max(self.link.poll_timeout());
            self.link
                .poll_transmit(self.now)
                .expect("link should transmit at its timeout")
        }

        fn reply(&mut self, bytes: &[u8]) {
            self.now += Duration::from_millis(5);
            self.link.handle_bytes(self.now, bytes);
            if self.link.outstanding.is_some() {
                // The reply needs the idle gap to finish (ACK, lone byte).
                self.now = self.link.poll_timeout();
                self.link.handle_timeout(self.now);
            }
            assert!(self.link.outstanding.is_none());
        }

        fn silence(&mut self) {
            self.now = self.link.poll_timeout();
            self.link.handle_timeout(self.now);
            assert!(self.link.outstanding.is_none());
        }

        fn events(&mut self) -> Vec<LinkEvent> {
            std::iter::from_fn(|| self.link.poll_event()).collect()
        }

        /// Sync and one answered general poll.
        fn up(&mut self) {
            assert_eq!(self.send().bytes, [0x80]);
            self.silence();
            assert_eq!(self.send().bytes, [0x81]);
            self.reply(&[0x00]);
            assert_eq!(self.events(), [LinkEvent::Up]);
        }
    }

    fn credits_reply(value: u8) -> Vec<u8> {
        let mut f = vec![0x01, 0x1A, 0x00, 0x00, 0x00, value];
        crate::sas::proto::crc::push_crc(&mut f);
        f
    }

    #[test]
    fn on_a_shared_line_queued_long_polls_still_go_out() {
        let mut h = Harness::new(LinkConfig::default());
        h.up();
        let id = h.link.submit(LongPoll::SoundOff).unwrap();
        // Another EGM is polled before each of this one's turns.
        h.link.note_foreign_poll(h.now);
        let t = h.send();
        assert_eq!(
            t.poll,
            Poll::Long {
                address: 1,
                poll: LongPoll::SoundOff
            }
        );
        h.reply(&[0x01]);
        assert_eq!(
            h.events(),
            [LinkEvent::Completed {
                id: Some(id),
                poll: LongPoll::SoundOff,
                result: Ok(Response::Ack)
            }]
        );
        // With the queue empty, the next turn is a general poll again.
        h.link.note_foreign_poll(h.now);
        assert_eq!(h.send().bytes, [0x81]);
    }

    fn credits_filler() -> LinkConfig {
        LinkConfig {
            filler: Filler::LongPoll(LongPoll::Meters(MeterPoll::CurrentCredits)),
            ..LinkConfig::default()
        }
    }

    #[test]
    fn syncs_then_never_sends_two_general_polls_in_a_row() {
        let mut h = Harness::new(credits_filler());
        h.up();
        // After an answered GP the filler (LP 1A) goes, not a second 81.
        assert_eq!(h.send().bytes, [0x01, 0x1A]);
        h.reply(&credits_reply(5));
        assert!(matches!(
            h.events().as_slice(),
            [LinkEvent::Completed { id: None, .. }]
        ));
        assert_eq!(h.send().bytes, [0x81]);
        h.reply(&[0x7E]);
        assert_eq!(
            h.events(),
            [LinkEvent::Exception(Event {
                code: ExceptionCode::GAME_STARTED,
                data: EventData::None
            })]
        );
        // A submitted poll takes the filler's place.
        let id = h.link.submit(LongPoll::Shutdown).unwrap();
        assert_eq!(h.send().bytes, [0x01, 0x01, 0x51, 0x08]);
        h.reply(&[0x01]);
        assert_eq!(
            h.events(),
            [LinkEvent::Completed {
                id: Some(id),
                poll: LongPoll::Shutdown,
                result: Ok(Response::Ack)
            }]
        );
        assert_eq!(h.send().bytes, [0x81]);
    }

    #[test]
    fn global_filler_acknowledges_at_once_and_keeps_the_spacing() {
        let mut h = Harness::new(LinkConfig::default());
        h.up();
        let answered = h.now;
        // The 80 goes as soon as the reply is in...
        assert_eq!(h.link.poll_timeout(), answered);
        assert_eq!(h.send().bytes, [0x80]);
        h.silence();
        // ...and the next general poll still comes one interval after the
        // exchange, not after the 80.
        let next = answered + Duration::from_millis(200);
        assert_eq!(h.link.poll_timeout(), next);
        assert!(
            h.link
                .poll_transmit(next - Duration::from_millis(1))
                .is_none()
        );
        assert_eq!(h.send().bytes, [0x81]);
        assert_eq!(h.now, next);
        h.reply(&[0x7E]);
        assert!(matches!(h.events().as_slice(), [LinkEvent::Exception(_)]));
        // A queued long poll acknowledges instead of the 80, after the spacing.
        h.link.submit(LongPoll::SoundOff).unwrap();
        let answered = h.now;
        assert_eq!(h.link.poll_timeout(), answered + Duration::from_millis(200));
        assert_eq!(h.send().bytes[..2], [0x01, 0x03]);
    }

    #[test]
    fn poll_interval_can_change_after_a0() {
        let mut h = Harness::new(LinkConfig {
            poll_interval: Duration::from_millis(40),
            ..LinkConfig::default()
        });
        h.up();
        h.link.set_poll_interval(Duration::from_millis(200));
        assert_eq!(h.link.poll_interval(), Duration::from_millis(200));
        h.send(); // the 80
        h.silence();
        h.send(); // the GP due 40 ms after the first exchange
        let answered = h.now + Duration::from_millis(5);
        h.reply(&[0x00]);
        assert_eq!(h.send().bytes, [0x80]);
        h.silence();
        assert_eq!(h.link.poll_timeout(), answered + Duration::from_millis(200));
    }

    #[test]
    fn one_retry_identical_then_resync() {
        let mut h = Harness::new(LinkConfig::default());
        h.up();
        let id = h.link.submit(LongPoll::Meters(MeterPoll::CoinIn)).unwrap();
        let first = h.send();
        assert_eq!(first.bytes, [0x01, 0x11]);
        h.silence();
        assert!(h.link.retry_pending());
        let again = h.send();
        assert!(again.retry);
        assert_eq!(again.bytes, first.bytes);
        h.reply(&[0x01, 0x11, 0x00]); // cut short: bad reply
        let events = h.events();
        assert!(matches!(
            events.as_slice(),
            [LinkEvent::Completed { id: Some(i), result: Err(Failure::Garbled(_)), .. }] if *i == id
        ));
        // No third try: resync, then a general poll.
        assert_eq!(h.send().bytes, [0x80]);
        h.silence();
        assert_eq!(h.send().bytes, [0x81]);
        let s = h.link.stats();
        assert_eq!((s.retries, s.failed_polls, s.bad_replies), (1, 1, 1));
    }

    #[test]
    fn goes_down_with_reason_and_comes_back() {
        let mut h = Harness::new(LinkConfig {
            down_after: 2,
            ..credits_filler()
        });
        h.up();
        h.send(); // filler
        h.reply(&credits_reply(0));
        h.events();
        let id = h.link.submit(LongPoll::SoundOff).unwrap();
        for _ in 0..2 {
            // The general poll and its retry, then the resync.
            assert_eq!(h.send().bytes, [0x81]);
            h.silence();
            assert_eq!(h.send().bytes, [0x81]);
            h.silence();
            assert_eq!(h.send().bytes, [0x80]);
            h.silence();
        }
        assert_eq!(
            h.events(),
            [
                LinkEvent::Down(DownReason::NoReply { polls: 2 }),
                LinkEvent::Completed {
                    id: Some(id),
                    poll: LongPoll::SoundOff,
                    result: Err(Failure::LinkDown)
                }
            ]
        );
        assert!(matches!(h.link.state(), LinkState::Down(_)));
        assert_eq!(
            h.link.submit(LongPoll::SoundOff),
            Err(LinkError::Down { address: 1 })
        );
        // While down it polls once a second.
        let before = h.now;
        assert_eq!(h.send().bytes, [0x81]);
        assert_eq!(h.now - before, Duration::from_secs(1));
        h.reply(&[0x00]);
        assert_eq!(h.events(), [LinkEvent::Up]);
        assert_eq!(h.link.state(), &LinkState::Up);
    }

    #[test]
    fn busy_and_events_defer_behind_a_general_poll() {
        let mut h = Harness::new(LinkConfig::default());
        h.up();
        let id = h.link.submit(LongPoll::MachineInfo).unwrap();
        assert_eq!(h.send().bytes, [0x01, 0x1F]);
        h.reply(&[0x01, 0x00]); // BUSY
        assert_eq!(h.send().bytes, [0x81], "a GP before repeating the LP");
        h.reply(&[0x00]);
        assert_eq!(h.send().bytes, [0x01, 0x1F]);
        // Now an RTE event instead of the reply: record it, GP, ask again.
        h.reply(&[0x01, 0xFF, 0x6F, 0xED, 0x3E]);
        assert_eq!(
            h.events(),
            [LinkEvent::Exception(Event {
                code: ExceptionCode(0x6F),
                data: EventData::None
            })]
        );
        assert_eq!(h.send().bytes, [0x81]);
        h.reply(&[0x00]);
        assert_eq!(h.send().bytes, [0x01, 0x1F]);
        let info = Response::Data(crate::sas::proto::response::Reply::MachineInfo(
            crate::sas::proto::response::MachineInfo {
                game_id: crate::sas::proto::response::Ascii(*b"AB"),
                additional_id: crate::sas::proto::response::Ascii(*b"000"),
                denomination: 1,
                max_bet: 5,
                progressive_group: 0,
                options: 0,
                paytable_id: crate::sas::proto::response::Ascii(*b"PT0001"),
                base_percent: crate::sas::proto::response::Ascii(*b"9550"),
            },
        ));
        h.reply(&info.encode(1).unwrap());
        assert_eq!(
            h.events(),
            [LinkEvent::Completed {
                id: Some(id),
                poll: LongPoll::MachineInfo,
                result: Ok(info)
            }]
        );
    }

    #[test]
    fn busy_gives_up_after_max_deferrals() {
        let mut h = Harness::new(LinkConfig {
            max_deferrals: 1,
            ..LinkConfig::default()
        });
        h.up();
        h.link.submit(LongPoll::SoundOn).unwrap();
        for round in 0..2 {
            assert_eq!(h.send().bytes[..2], [0x01, 0x04]);
            h.reply(&[0x01, 0x00]);
            if round == 0 {
                assert_eq!(h.send().bytes, [0x81]);
                h.reply(&[0x00]);
            }
        }
        assert!(matches!(
            h.events().as_slice(),
            [LinkEvent::Completed {
                result: Ok(Response::Busy),
                ..
            }]
        ));
    }

    #[test]
    fn foreign_poll_before_retry_loses_the_reply_and_counts_as_sync() {
        let mut h = Harness::new(LinkConfig::default());
        // A poll to another EGM syncs this one: no 80 needed.
        h.link.note_foreign_poll(h.now);
        assert_eq!(h.send().bytes, [0x81]);
        h.silence();
        assert!(h.link.retry_pending());
        h.link.note_foreign_poll(h.now);
        assert!(!h.link.retry_pending());
        assert_eq!(
            h.events(),
            [LinkEvent::ReplyLost {
                poll: PollKind::General
            }]
        );
        // The foreign poll also acknowledged: a GP may go again.
        assert_eq!(h.send().bytes, [0x81]);
    }

    #[test]
    fn rte_mode_silence_is_not_a_failure() {
        let mut h = Harness::new(LinkConfig::default());
        h.up();
        h.link.submit(LongPoll::RealTimeEvents(true)).unwrap();
        h.send();
        h.reply(&[0x01]);
        h.events();
        assert!(h.link.rte());
        assert_eq!(h.send().bytes, [0x81]);
        h.silence();
        assert!(!h.link.retry_pending());
        // Treated as answered: the filler goes next, not the same GP.
        assert_eq!(h.send().bytes, [0x80]);
    }

    #[test]
    fn stray_bytes_are_counted_and_addresses_checked() {
        let mut h = Harness::new(LinkConfig::default());
        h.link.handle_bytes(h.now, &[1, 2, 3]);
        assert_eq!(h.link.stats().stray_bytes, 3);
        assert!(Link::new(0, LinkConfig::default(), h.now).is_err());
        assert!(Link::new(0x80, LinkConfig::default(), h.now).is_err());
        let mut small = Harness::new(LinkConfig {
            queue_limit: 1,
            ..LinkConfig::default()
        });
        small.link.submit(LongPoll::SoundOn).unwrap();
        assert_eq!(
            small.link.submit(LongPoll::SoundOn),
            Err(LinkError::QueueFull {
                address: 1,
                limit: 1
            })
        );
        let bad = LongPoll::SelectedMeters {
            game: 0,
            codes: vec![],
        };
        assert!(matches!(
            h.link.submit(bad.clone()),
            Err(LinkError::Encode { address: 1, .. })
        ));
        let bad_filler = LinkConfig {
            filler: Filler::LongPoll(bad),
            ..LinkConfig::default()
        };
        assert!(matches!(
            Link::new(1, bad_filler, h.now),
            Err(LinkError::Encode { .. })
        ));
    }
}
