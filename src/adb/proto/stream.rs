//! The stream table both sides share (§3): ids, OKAY flow control, WRTE
//! chunking and CLSE, over one connection. The host [`Connection`] and the
//! simulator's [`Device`] wrap it and add their own handshake.
//!
//! The rules it keeps:
//! - One unacknowledged WRTE per direction per stream: ours waits for the
//!   peer's OKAY, and the peer's is acknowledged only when the caller takes
//!   the data (`poll_event` of the connection), so a caller that stops reading
//!   stops the peer too.
//! - Writes are cut at the peer's max payload.
//! - Messages naming a stream we closed are dropped quietly (the peer may
//!   not have seen our CLSE yet, and adb 29 answers CLSE with CLSE); ones
//!   naming a stream we never had are reported, not fatal.
//!
//! [`Connection`]: super::connection::Connection
//! [`Device`]: super::device::Device

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::message::{Command, Message};

/// A stream id chosen by this side: the `local-id` of what we send, the
/// `remote-id` of what the peer sends. Never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(u32);

impl LocalId {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the peer did wrong on one stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamErrorKind {
    #[error("{command}({arg0}, {arg1}) names no stream of ours")]
    UnknownStream {
        command: Command,
        arg0: u32,
        arg1: u32,
    },
    #[error("peer sent WRTE before it accepted the OPEN with OKAY")]
    DataBeforeOkay,
    #[error("peer sent another WRTE before we acknowledged the last one")]
    WriteWithoutOkay,
    #[error("peer's stream id changed from {was} to {now} ({command})")]
    RemoteIdChanged {
        command: Command,
        was: u32,
        now: u32,
    },
}

/// A protocol violation on one stream, naming it. An unknown stream is only
/// reported; any other violation closes the stream (CLSE sent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream {id}{}: {kind}", service.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
pub struct StreamError {
    pub id: LocalId,
    /// The service the stream was opened for, when the stream is known.
    pub service: Option<String>,
    pub kind: StreamErrorKind,
}

/// A call the caller should not have made; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UseError {
    #[error("stream {0} is not open")]
    UnknownStream(LocalId),
    #[error("stream {0} is being closed")]
    Closing(LocalId),
    #[error("stream {0} is still waiting to be accepted")]
    NotAccepted(LocalId),
    #[error("the connection is not online ({0})")]
    NotOnline(String),
    #[error("service name of {len} bytes is over the {max}-byte payload limit")]
    ServiceTooLong { len: usize, max: usize },
}

/// What the table reports; the connection types map it to their events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// The peer accepted our OPEN.
    Opened(LocalId),
    /// The peer answered our OPEN with CLSE.
    Refused(LocalId),
    /// The peer sent OPEN; accept or refuse it (device side).
    OpenRequested {
        id: LocalId,
        service: String,
    },
    Data {
        id: LocalId,
        data: Vec<u8>,
    },
    /// The peer closed the stream.
    Closed(LocalId),
    /// A violation that closed the stream.
    Failed(StreamError),
    /// A message for no stream of ours, ignored.
    Ignored(StreamError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// We sent OPEN and wait for OKAY (host).
    Opening,
    /// The peer sent OPEN and waits for our answer (device).
    Pending,
    Open,
}

#[derive(Debug)]
struct Stream {
    service: String,
    phase: Phase,
    /// The peer's id; 0 until its OKAY when we opened.
    remote: u32,
    send: VecDeque<u8>,
    /// Our WRTE awaits the peer's OKAY.
    in_flight: bool,
    /// The peer's WRTE awaits our OKAY.
    owe_okay: bool,
    /// Close once `send` is empty.
    closing: bool,
}

/// Our recent closes remembered to drop late messages for them quietly.
const RECENTLY_CLOSED: usize = 64;

#[derive(Debug)]
pub(crate) struct Streams {
    map: BTreeMap<u32, Stream>,
    next_id: u32,
    recently_closed: VecDeque<u32>,
    max_send: usize,
    out: VecDeque<Message>,
    events: VecDeque<StreamEvent>,
    /// The stream that sent data last, for round-robin fairness.
    cursor: u32,
}

impl Streams {
    pub(crate) fn new(max_send: usize) -> Streams {
        Streams {
            map: BTreeMap::new(),
            next_id: 1,
            recently_closed: VecDeque::new(),
            max_send,
            out: VecDeque::new(),
            events: VecDeque::new(),
            cursor: 0,
        }
    }

    pub(crate) fn set_max_send(&mut self, max: usize) {
        self.max_send = max.max(1);
    }

    /// Queues a message of the connection itself (CNXN, AUTH, STLS).
    pub(crate) fn send(&mut self, m: Message) {
        self.out.push_back(m);
    }

    /// Streams that exist, whatever their phase.
    pub(crate) fn count(&self) -> usize {
        self.map.len()
    }

    /// Whether `id` (our id, as the peer names it in `arg1`) is a stream.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn buffered(&self, id: LocalId) -> Option<usize> {
        self.map.get(&id.0).map(|s| s.send.len())
    }

    fn allocate(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.map.contains_key(&id) && !self.recently_closed.contains(&id) {
                return id;
            }
        }
    }

    fn insert(&mut self, service: String, phase: Phase, remote: u32) -> LocalId {
        let id = self.allocate();
        self.map.insert(
            id,
            Stream {
                service,
                phase,
                remote,
                send: VecDeque::new(),
                in_flight: false,
                owe_okay: false,
                closing: false,
            },
        );
        LocalId(id)
    }

    /// Host side: a new stream and its OPEN.
    pub(crate) fn open(&mut self, service: &str) -> LocalId {
        let id = self.insert(service.to_string(), Phase::Opening, 0);
        self.out.push_back(Message::open(id.0, service));
        id
    }

    /// Device side: the peer's OPEN, held until accepted or refused.
    pub(crate) fn open_requested(&mut self, remote: u32, service: String) {
        let id = self.insert(service.clone(), Phase::Pending, remote);
        self.events
            .push_back(StreamEvent::OpenRequested { id, service });
    }

    pub(crate) fn accept(&mut self, id: LocalId) -> Result<(), UseError> {
        let s = self.map.get_mut(&id.0).ok_or(UseError::UnknownStream(id))?;
        if s.phase == Phase::Pending {
            s.phase = Phase::Open;
            self.out.push_back(Message::okay(id.0, s.remote));
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, id: LocalId, data: &[u8]) -> Result<(), UseError> {
        let s = self.map.get_mut(&id.0).ok_or(UseError::UnknownStream(id))?;
        if s.closing {
            return Err(UseError::Closing(id));
        }
        if s.phase == Phase::Pending {
            return Err(UseError::NotAccepted(id));
        }
        s.send.extend(data);
        Ok(())
    }

    /// Closes after what is buffered has been sent. No event follows.
    pub(crate) fn close(&mut self, id: LocalId) -> Result<(), UseError> {
        let s = self.map.get_mut(&id.0).ok_or(UseError::UnknownStream(id))?;
        s.closing = true;
        self.close_if_drained(id.0);
        Ok(())
    }

    /// Closes now, dropping what is not sent yet. No event follows.
    pub(crate) fn abort(&mut self, id: LocalId) -> Result<(), UseError> {
        let s = self.map.get_mut(&id.0).ok_or(UseError::UnknownStream(id))?;
        s.send.clear();
        s.closing = true;
        self.close_if_drained(id.0);
        Ok(())
    }

    /// Sends CLSE for a closing stream with nothing left to send. A stream
    /// still waiting for its OKAY is closed when the OKAY names the peer's id.
    fn close_if_drained(&mut self, id: u32) {
        let Some(s) = self.map.get(&id) else { return };
        if !s.closing || !s.send.is_empty() {
            return;
        }
        match s.phase {
            Phase::Opening => {}
            // Refusing an OPEN is CLSE with local id 0.
            Phase::Pending => {
                self.out.push_back(Message::clse(0, s.remote));
                self.forget(id);
            }
            Phase::Open => {
                self.out.push_back(Message::clse(id, s.remote));
                self.forget(id);
            }
        }
    }

    fn forget(&mut self, id: u32) {
        self.map.remove(&id);
        if self.recently_closed.len() == RECENTLY_CLOSED {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back(id);
    }

    /// A violation: CLSE to the peer (if it has an id for us to name) and a
    /// `Failed` event.
    fn fail(&mut self, id: u32, remote: u32, kind: StreamErrorKind) {
        let service = self.map.get(&id).map(|s| s.service.clone());
        if remote != 0 {
            self.out.push_back(Message::clse(id, remote));
        }
        self.forget(id);
        self.events.push_back(StreamEvent::Failed(StreamError {
            id: LocalId(id),
            service,
            kind,
        }));
    }

    fn stray(&mut self, m: &Message) {
        if self.recently_closed.contains(&m.arg1) {
            return;
        }
        self.events.push_back(StreamEvent::Ignored(StreamError {
            id: LocalId(m.arg1),
            service: None,
            kind: StreamErrorKind::UnknownStream {
                command: m.command,
                arg0: m.arg0,
                arg1: m.arg1,
            },
        }));
    }

    /// OKAY, WRTE or CLSE from the peer: `arg0` is its id, `arg1` ours.
    pub(crate) fn handle(&mut self, m: Message) {
        let (remote, id) = (m.arg0, m.arg1);
        let Some(s) = self.map.get_mut(&id) else {
            self.stray(&m);
            return;
        };
        let changed = |was| StreamErrorKind::RemoteIdChanged {
            command: m.command,
            was,
            now: remote,
        };
        match m.command {
            Command::Okay if s.phase == Phase::Opening => {
                s.phase = Phase::Open;
                s.remote = remote;
                if s.closing {
                    self.close_if_drained(id);
                } else {
                    self.events.push_back(StreamEvent::Opened(LocalId(id)));
                }
            }
            Command::Okay if s.remote != remote => {
                let was = s.remote;
                self.fail(id, was, changed(was));
            }
            // A second OKAY with nothing in flight is harmless (adb's own
            // host takes it as "ready" again).
            Command::Okay => s.in_flight = false,
            Command::Wrte if s.phase != Phase::Open => {
                self.fail(id, remote, StreamErrorKind::DataBeforeOkay);
            }
            Command::Wrte if s.remote != remote => {
                let was = s.remote;
                self.fail(id, was, changed(was));
            }
            Command::Wrte if s.owe_okay => {
                self.fail(id, remote, StreamErrorKind::WriteWithoutOkay);
            }
            Command::Wrte => {
                s.owe_okay = true;
                self.events.push_back(StreamEvent::Data {
                    id: LocalId(id),
                    data: m.payload,
                });
            }
            Command::Clse => {
                // No answer (spec); CLSE(0, id) before OKAY is a refusal.
                let refused = s.phase == Phase::Opening;
                let quiet = s.closing;
                self.forget(id);
                if !quiet {
                    self.events.push_back(if refused {
                        StreamEvent::Refused(LocalId(id))
                    } else {
                        StreamEvent::Closed(LocalId(id))
                    });
                }
            }
            // The connection types route only stream messages here.
            Command::Cnxn | Command::Auth | Command::Open | Command::Stls => {}
        }
    }

    /// The next event; taking a `Data` event acknowledges it to the peer.
    pub(crate) fn poll_event(&mut self) -> Option<StreamEvent> {
        let event = self.events.pop_front()?;
        if let StreamEvent::Data { id, .. } = &event
            && let Some(s) = self.map.get_mut(&id.0)
            && s.owe_okay
        {
            s.owe_okay = false;
            self.out.push_back(Message::okay(id.0, s.remote));
        }
        Some(event)
    }

    /// The next message to send: queued control messages first, then one
    /// WRTE from the next stream (round robin) that may send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Message> {
        if let Some(m) = self.out.pop_front() {
            return Some(m);
        }
        let ready = |s: &Stream| s.phase == Phase::Open && !s.in_flight && !s.send.is_empty();
        let next = self
            .map
            .range(self.cursor.saturating_add(1)..)
            .chain(self.map.range(..=self.cursor))
            .find(|(_, s)| ready(s))
            .map(|(&id, _)| id)?;
        let max = self.max_send;
        let s = self.map.get_mut(&next)?;
        let n = s.send.len().min(max);
        let data: Vec<u8> = s.send.drain(..n).collect();
        s.in_flight = true;
        let m = Message::wrte(next, s.remote, data);
        self.cursor = next;
        self.close_if_drained(next);
        // The CLSE (if any) goes right after this WRTE.
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Streams) -> Vec<Message> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn events(s: &mut Streams) -> Vec<StreamEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn opened(s: &mut Streams, service: &str, remote: u32) -> LocalId {
        let id = s.open(service);
        assert_eq!(drain(s), [Message::open(id.0, service)]);
        s.handle(Message::okay(remote, id.0));
        assert_eq!(events(s), [StreamEvent::Opened(id)]);
        id
    }

    #[test]
    fn one_wrte_in_flight_cut_at_max_payload() {
        let mut s = Streams::new(4);
        let id = opened(&mut s, "shell:x", 90);
        s.write(id, b"abcdefghij").unwrap();
        assert_eq!(drain(&mut s), [Message::wrte(id.0, 90, b"abcd".to_vec())]);
        // Nothing more until the peer's OKAY.
        assert_eq!(s.buffered(id), Some(6));
        s.handle(Message::okay(90, id.0));
        assert_eq!(drain(&mut s), [Message::wrte(id.0, 90, b"efgh".to_vec())]);
        s.handle(Message::okay(90, id.0));
        assert_eq!(drain(&mut s), [Message::wrte(id.0, 90, b"ij".to_vec())]);
        s.handle(Message::okay(90, id.0));
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn incoming_data_is_acknowledged_when_taken() {
        let mut s = Streams::new(100);
        let id = opened(&mut s, "shell:x", 7);
        s.handle(Message::wrte(7, id.0, b"out".to_vec()));
        // Not yet taken: no OKAY.
        assert!(drain(&mut s).is_empty());
        assert_eq!(
            events(&mut s),
            [StreamEvent::Data {
                id,
                data: b"out".to_vec()
            }]
        );
        assert_eq!(drain(&mut s), [Message::okay(id.0, 7)]);
    }

    #[test]
    fn a_second_wrte_before_our_okay_fails_the_stream() {
        let mut s = Streams::new(100);
        let id = opened(&mut s, "shell:x", 7);
        s.handle(Message::wrte(7, id.0, b"a".to_vec()));
        s.handle(Message::wrte(7, id.0, b"b".to_vec()));
        let ev = events(&mut s);
        assert_eq!(ev.len(), 2);
        let StreamEvent::Failed(e) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(e.kind, StreamErrorKind::WriteWithoutOkay);
        assert_eq!(
            e.to_string(),
            format!(
                "stream {id} (shell:x): peer sent another WRTE before we acknowledged the last one"
            )
        );
        // CLSE, and no OKAY for data of a failed stream.
        assert_eq!(drain(&mut s), [Message::clse(id.0, 7)]);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn data_before_okay_fails_the_stream() {
        let mut s = Streams::new(100);
        let id = s.open("sync:");
        drain(&mut s);
        s.handle(Message::wrte(5, id.0, b"x".to_vec()));
        let ev = events(&mut s);
        assert!(
            matches!(&ev[..], [StreamEvent::Failed(StreamError { kind: StreamErrorKind::DataBeforeOkay, service: Some(svc), .. })] if svc == "sync:"),
            "{ev:?}"
        );
        assert_eq!(drain(&mut s), [Message::clse(id.0, 5)]);
    }

    #[test]
    fn a_changed_remote_id_fails_the_stream() {
        let mut s = Streams::new(100);
        let id = opened(&mut s, "shell:x", 7);
        s.handle(Message::wrte(8, id.0, b"x".to_vec()));
        let ev = events(&mut s);
        assert!(
            matches!(
                &ev[..],
                [StreamEvent::Failed(StreamError {
                    kind: StreamErrorKind::RemoteIdChanged { was: 7, now: 8, .. },
                    ..
                })]
            ),
            "{ev:?}"
        );
        assert_eq!(drain(&mut s), [Message::clse(id.0, 7)]);
    }

    #[test]
    fn refused_open_and_peer_close() {
        let mut s = Streams::new(100);
        let a = s.open("shell,v2,raw:ls");
        drain(&mut s);
        let b = opened(&mut s, "shell:ls", 3);
        s.handle(Message::clse(0, a.0));
        s.handle(Message::clse(3, b.0));
        assert_eq!(
            events(&mut s),
            [StreamEvent::Refused(a), StreamEvent::Closed(b)]
        );
        // The spec wants no answer to CLSE.
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn local_close_flushes_first_and_ignores_the_echo() {
        let mut s = Streams::new(2);
        let id = opened(&mut s, "sync:", 4);
        s.write(id, b"QUIT").unwrap();
        s.close(id).unwrap();
        assert_eq!(s.write(id, b"x"), Err(UseError::Closing(id)));
        assert_eq!(drain(&mut s), [Message::wrte(id.0, 4, b"QU".to_vec())]);
        s.handle(Message::okay(4, id.0));
        assert_eq!(
            drain(&mut s),
            [
                Message::wrte(id.0, 4, b"IT".to_vec()),
                Message::clse(id.0, 4)
            ]
        );
        // adb 29 answers our CLSE; the late OKAY and CLSE are dropped quietly.
        s.handle(Message::okay(4, id.0));
        s.handle(Message::clse(4, id.0));
        assert!(events(&mut s).is_empty());
        // A stream we never had is reported.
        s.handle(Message::wrte(4, 999, b"?".to_vec()));
        let ev = events(&mut s);
        assert!(
            matches!(
                &ev[..],
                [StreamEvent::Ignored(StreamError {
                    kind: StreamErrorKind::UnknownStream {
                        command: Command::Wrte,
                        arg0: 4,
                        arg1: 999
                    },
                    ..
                })]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn closing_before_okay_waits_for_the_peer_id() {
        let mut s = Streams::new(100);
        let id = s.open("shell:x");
        drain(&mut s);
        s.abort(id).unwrap();
        assert!(drain(&mut s).is_empty());
        s.handle(Message::okay(6, id.0));
        assert_eq!(drain(&mut s), [Message::clse(id.0, 6)]);
        assert!(events(&mut s).is_empty());
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn streams_take_turns() {
        let mut s = Streams::new(1);
        let a = opened(&mut s, "a", 10);
        let b = opened(&mut s, "b", 20);
        s.write(a, b"aa").unwrap();
        s.write(b, b"bb").unwrap();
        let first = drain(&mut s);
        assert_eq!(
            first,
            [
                Message::wrte(a.0, 10, b"a".to_vec()),
                Message::wrte(b.0, 20, b"b".to_vec())
            ]
        );
        s.handle(Message::okay(20, b.0));
        s.handle(Message::okay(10, a.0));
        assert_eq!(
            drain(&mut s),
            [
                Message::wrte(a.0, 10, b"a".to_vec()),
                Message::wrte(b.0, 20, b"b".to_vec())
            ]
        );
    }

    #[test]
    fn device_side_accept_and_refuse() {
        let mut s = Streams::new(100);
        s.open_requested(11, "shell:ls".into());
        s.open_requested(12, "nope:".into());
        let ev = events(&mut s);
        let [
            StreamEvent::OpenRequested { id: a, service: sa },
            StreamEvent::OpenRequested { id: b, .. },
        ] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(sa, "shell:ls");
        assert_eq!(s.write(*a, b"x"), Err(UseError::NotAccepted(*a)));
        s.accept(*a).unwrap();
        s.close(*b).unwrap();
        s.write(*a, b"hi").unwrap();
        assert_eq!(
            drain(&mut s),
            [
                Message::okay(a.0, 11),
                Message::clse(0, 12),
                Message::wrte(a.0, 11, b"hi".to_vec())
            ]
        );
    }

    #[test]
    fn ids_are_unique_and_never_zero() {
        let mut s = Streams::new(100);
        s.next_id = u32::MAX;
        let a = s.open("a");
        let b = s.open("b");
        assert_eq!(a.0, u32::MAX);
        assert_eq!(b.0, 1);
        s.next_id = 1;
        assert_eq!(s.open("c").0, 2);
    }
}
