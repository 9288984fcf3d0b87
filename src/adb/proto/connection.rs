//! The host side of one ADB connection, as a sans-IO state machine in the
//! style of quinn-proto: the transport writes out whatever
//! [`Connection::poll_transmit`] gives, feeds what it reads to
//! [`Connection::handle_bytes`], and drains [`Connection::poll_event`].
//! There is no clock inside: the transport owns the timeouts of §6 and
//! calls [`Connection::abort`] or drops the connection.
//!
//! ```text
//! let mut conn = Connection::new(config);          // CNXN is queued
//! loop {
//!     while let Some(bytes) = conn.poll_transmit() { socket.write_all(&bytes) }
//!     let n = socket.read(&mut buf);                // EOF: fail every stream
//!     conn.handle_bytes(&buf[..n])?;                // Err: drop the socket
//!     while let Some(event) = conn.poll_event() {
//!         match event {
//!             Event::Connected(banner) => { conn.open(&shell_v2_service("getprop"))?; }
//!             Event::Unauthorized { fingerprint } => { /* tell the installer */ }
//!             Event::Data { id, data } => { /* feed a ShellCollector */ }
//!             Event::Closed(id) => { /* the command is done */ }
//!             _ => {}
//!         }
//!     }
//! }
//! ```
//!
//! Handshake (§1.4, §2): CNXN goes out at once. Each AUTH TOKEN is answered
//! with a signature by the next configured key; a TOKEN after the last key
//! gets the first key's public key, once, and the state becomes
//! [`State::Unauthorized`]: the TV shows "Allow USB debugging?" and sends
//! CNXN when the user accepts, or nothing. STLS means the port wants TLS.

use std::fmt;

use super::auth::{AdbKey, AuthError};
use super::banner::{Banner, Features, HOST_FEATURES};
use super::decode::Decoded;
use super::message::{
    AuthType, Command, MAX_PAYLOAD, Message, MessageDecoder, MessageError, VERSION_SKIP_CHECKSUM,
};
use super::stream::{LocalId, StreamError, StreamEvent, Streams, UseError};

/// What the host offers and with which keys it signs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keys tried in order; the first one is the site key whose public key
    /// is offered when every signature was refused.
    pub keys: Vec<AdbKey>,
    /// Follows the public key (adb: `user@host`); the TV shows it.
    pub comment: String,
    /// Our CNXN version; the effective one is the lower of both sides.
    pub version: u32,
    /// The largest payload we take; also our decoder's limit.
    pub max_payload: u32,
    pub features: Features,
}

impl Config {
    /// Version `0x01000001`, 1 MiB, the features this core implements.
    pub fn new(keys: Vec<AdbKey>, comment: &str) -> Config {
        Config {
            keys,
            comment: comment.to_string(),
            version: VERSION_SKIP_CHECKSUM,
            max_payload: MAX_PAYLOAD,
            features: Features::new(HOST_FEATURES.iter().copied()),
        }
    }
}

/// Where the connection is, in words a technician knows from `adb devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// CNXN sent, no answer yet (adb: "offline"). A 4.4–7.1 TV that already
    /// serves another host stays here forever.
    Connecting,
    /// Signing the TV's tokens with our keys (adb: "authorizing").
    Authenticating,
    /// Our public key was sent: waiting for someone to accept it on the TV
    /// (adb: "unauthorized").
    Unauthorized { fingerprint: String },
    /// CNXN received: streams may be opened.
    Online,
    /// The port wants TLS (Android 11+ wireless debugging): not supported.
    TlsRequired,
    /// A protocol error ended the connection.
    Failed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Connecting => f.write_str("offline: no answer to CNXN yet"),
            State::Authenticating => f.write_str("authorizing"),
            State::Unauthorized { fingerprint } => write!(
                f,
                "unauthorized: accept \"Allow USB debugging?\" on the TV (key {fingerprint})"
            ),
            State::Online => f.write_str("device"),
            State::TlsRequired => {
                f.write_str("this TV wants TLS (Android 11+ wireless debugging); not supported yet")
            }
            State::Failed => f.write_str("failed"),
        }
    }
}

/// What happened, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The TV asked for a signature: it has ADB authentication on.
    AuthRequired,
    /// Every key was refused and the public key is sent; see
    /// [`State::Unauthorized`]. Log the fingerprint for the installer.
    Unauthorized { fingerprint: String },
    /// The TV sent STLS; see [`State::TlsRequired`].
    TlsRequired,
    /// CNXN from the TV: online.
    Connected(Banner),
    /// The TV accepted our OPEN.
    Opened(LocalId),
    /// The TV answered our OPEN with CLSE: the service is unknown here.
    Refused(LocalId),
    /// Stream output. The TV gets its OKAY when this event is taken.
    Data { id: LocalId, data: Vec<u8> },
    /// The TV closed the stream.
    Closed(LocalId),
    /// The TV broke the stream protocol; the stream is closed.
    StreamFailed(StreamError),
    /// A message for no stream of ours, ignored (worth a debug line).
    Ignored(StreamError),
}

/// Why the connection cannot go on; the transport drops the socket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("the TV asks for ADB authentication and no key is configured")]
    NoKey,
    #[error("cannot answer the TV's AUTH token: {0}")]
    Auth(AuthError),
    #[error("the TV sent AUTH type {0}, which only a host sends")]
    UnexpectedAuth(u32),
    #[error("the TV offers a max payload of 0 bytes")]
    ZeroMaxPayload,
    #[error("the TV sent CNXN again: adbd restarted or dropped our session")]
    Reconnected,
    #[error("the connection already failed: {0}")]
    Failed(Box<ConnectionError>),
}

/// What was agreed in the CNXN exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub banner: Banner,
    /// min(ours, theirs).
    pub version: u32,
    /// The largest WRTE we send: min(ours, theirs).
    pub max_payload: u32,
    /// Features both banners list: the only ones to use.
    pub features: Features,
}

/// One host connection. See the module documentation for the loop.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    decoder: MessageDecoder,
    streams: Streams,
    events: std::collections::VecDeque<Event>,
    peer: Option<Peer>,
    /// Signatures sent so far.
    signed: usize,
    error: Option<ConnectionError>,
}

impl Connection {
    /// A connection whose first transmit is our CNXN.
    pub fn new(config: Config) -> Connection {
        let banner = Banner::host(config.features.clone()).encode();
        let mut streams = Streams::new(config.max_payload as usize);
        streams.send(Message::cnxn(config.version, config.max_payload, &banner));
        Connection {
            decoder: MessageDecoder::new(config.max_payload),
            config,
            state: State::Connecting,
            streams,
            events: Default::default(),
            peer: None,
            signed: 0,
            error: None,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The agreed terms, once online.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// True when both sides list `name` (e.g. `shell_v2`).
    pub fn has_feature(&self, name: &str) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| p.features.contains(name))
    }

    /// Streams open or being opened; the caller enforces its own limit.
    pub fn open_streams(&self) -> usize {
        self.streams.count()
    }

    /// Bytes written to a stream and not yet sent; None if it is gone.
    pub fn buffered(&self, id: LocalId) -> Option<usize> {
        self.streams.buffered(id)
    }

    /// Feeds bytes read from the socket. An error is final: the connection
    /// has lost its state and the socket must be dropped.
    pub fn handle_bytes(&mut self, mut bytes: &[u8]) -> Result<(), ConnectionError> {
        if let Some(e) = &self.error {
            return Err(ConnectionError::Failed(Box::new(e.clone())));
        }
        // After STLS the rest would be a TLS handshake we do not speak.
        while !bytes.is_empty() && self.state != State::TlsRequired {
            let result = match self.decoder.decode(&mut bytes) {
                Decoded::NeedMore => break,
                Decoded::Done(m) => self.handle_message(m),
                Decoded::Invalid(e) => Err(e.into()),
            };
            if let Err(e) = result {
                self.state = State::Failed;
                self.error = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn handle_message(&mut self, m: Message) -> Result<(), ConnectionError> {
        let online = self.state == State::Online;
        match m.command {
            Command::Cnxn if online => Err(ConnectionError::Reconnected),
            Command::Cnxn => self.connected(m),
            Command::Auth if online => Ok(()),
            Command::Auth => self.auth(m),
            Command::Stls if !online => {
                self.state = State::TlsRequired;
                self.events.push_back(Event::TlsRequired);
                Ok(())
            }
            // Reverse streams (the device opening one) are not offered.
            Command::Open if online && m.arg0 != 0 => {
                self.streams.send(Message::clse(0, m.arg0));
                Ok(())
            }
            Command::Okay | Command::Wrte | Command::Clse if online => {
                self.streams.handle(m);
                Ok(())
            }
            // Anything else before the TV's CNXN is ignored (§1.1).
            _ => Ok(()),
        }
    }

    fn connected(&mut self, m: Message) -> Result<(), ConnectionError> {
        if m.arg1 == 0 {
            return Err(ConnectionError::ZeroMaxPayload);
        }
        let banner = Banner::parse(&m.payload);
        let version = m.arg0.min(self.config.version);
        let max_payload = m.arg1.min(self.config.max_payload);
        // Only peers below 0x01000001 fill in the sums (§1.3).
        self.decoder
            .set_verify_checksum(version < VERSION_SKIP_CHECKSUM);
        self.streams.set_max_send(max_payload as usize);
        self.peer = Some(Peer {
            features: banner.features.common(&self.config.features),
            banner: banner.clone(),
            version,
            max_payload,
        });
        self.state = State::Online;
        self.events.push_back(Event::Connected(banner));
        Ok(())
    }

    fn auth(&mut self, m: Message) -> Result<(), ConnectionError> {
        match AuthType::from_code(m.arg0) {
            Some(AuthType::Token) => {}
            _ => return Err(ConnectionError::UnexpectedAuth(m.arg0)),
        }
        if self.signed == 0 && self.state == State::Connecting {
            self.events.push_back(Event::AuthRequired);
        }
        if matches!(self.state, State::Unauthorized { .. }) {
            // The key went out once; asking again changes nothing.
            return Ok(());
        }
        if let Some(key) = self.config.keys.get(self.signed) {
            let signature = key.sign_token(&m.payload).map_err(ConnectionError::Auth)?;
            self.streams
                .send(Message::auth(AuthType::Signature, signature));
            self.signed += 1;
            self.state = State::Authenticating;
            return Ok(());
        }
        let key = self.config.keys.first().ok_or(ConnectionError::NoKey)?;
        let public = key.public_key();
        let fingerprint = public.fingerprint();
        self.streams.send(Message::auth(
            AuthType::RsaPublicKey,
            public.auth_payload(&self.config.comment),
        ));
        self.state = State::Unauthorized {
            fingerprint: fingerprint.clone(),
        };
        self.events.push_back(Event::Unauthorized { fingerprint });
        Ok(())
    }

    /// Bytes to write to the socket, one message per call.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.error.is_some() || self.state == State::TlsRequired {
            return None;
        }
        self.streams.poll_transmit().map(|m| m.encode())
    }

    /// The next event. Taking a [`Event::Data`] lets the TV send more on
    /// that stream.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            return Some(match self.streams.poll_event()? {
                StreamEvent::Opened(id) => Event::Opened(id),
                StreamEvent::Refused(id) => Event::Refused(id),
                StreamEvent::Data { id, data } => Event::Data { id, data },
                StreamEvent::Closed(id) => Event::Closed(id),
                StreamEvent::Failed(e) => Event::StreamFailed(e),
                StreamEvent::Ignored(e) => Event::Ignored(e),
                // The host refuses OPENs itself; the table never sees one.
                StreamEvent::OpenRequested { .. } => continue,
            });
        }
    }

    /// Opens a stream to `service` (see `services`); [`Event::Opened`] or
    /// [`Event::Refused`] follows.
    pub fn open(&mut self, service: &str) -> Result<LocalId, UseError> {
        let max = self.peer.as_ref().map_or(0, |p| p.max_payload as usize);
        if self.state != State::Online {
            return Err(UseError::NotOnline(self.state.to_string()));
        }
        // The service and its NUL go in one OPEN payload.
        if service.len() + 1 > max {
            return Err(UseError::ServiceTooLong {
                len: service.len(),
                max,
            });
        }
        Ok(self.streams.open(service))
    }

    /// Queues bytes for a stream; they go out in WRTEs of at most the
    /// agreed max payload, one at a time as the TV acknowledges them.
    /// Writing before [`Event::Opened`] is fine: the bytes wait.
    pub fn write(&mut self, id: LocalId, data: &[u8]) -> Result<(), UseError> {
        self.streams.write(id, data)
    }

    /// Closes a stream once its buffered bytes are sent. No event follows.
    pub fn close(&mut self, id: LocalId) -> Result<(), UseError> {
        self.streams.close(id)
    }

    /// Closes a stream now, dropping unsent bytes (a timeout). No event follows.
    pub fn abort(&mut self, id: LocalId) -> Result<(), UseError> {
        self.streams.abort(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::proto::message::{MessageDecoder, VERSION_MIN};
    use crate::adb::proto::test_key;

    /// Decodes what the connection sends.
    fn sent(conn: &mut Connection) -> Vec<Message> {
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        let mut out = Vec::new();
        while let Some(bytes) = conn.poll_transmit() {
            let mut input = &bytes[..];
            match dec.decode(&mut input) {
                Decoded::Done(m) => out.push(m),
                other => panic!("{other:?}"),
            }
            assert!(input.is_empty());
        }
        out
    }

    fn events(conn: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| conn.poll_event()).collect()
    }

    const DEVICE: &[u8] =
        b"device::ro.product.name=p;ro.product.model=M;ro.product.device=d;features=shell_v2,cmd";

    fn online() -> Connection {
        let mut conn = Connection::new(Config::new(vec![test_key()], "t@h"));
        sent(&mut conn);
        conn.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, 256 * 1024, DEVICE).encode())
            .unwrap();
        events(&mut conn);
        conn
    }

    #[test]
    fn first_transmit_is_the_host_cnxn() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        assert_eq!(conn.state(), &State::Connecting);
        assert_eq!(
            sent(&mut conn),
            [Message::cnxn(
                0x0100_0001,
                0x0010_0000,
                b"host::features=shell_v2"
            )]
        );
        assert!(conn.poll_transmit().is_none());
    }

    #[test]
    fn cnxn_without_auth_goes_online_and_negotiates() {
        let conn = online();
        assert_eq!(conn.state(), &State::Online);
        let peer = conn.peer().unwrap();
        assert_eq!(peer.version, VERSION_SKIP_CHECKSUM);
        assert_eq!(peer.max_payload, 256 * 1024);
        assert_eq!(peer.banner.model(), Some("M"));
        assert!(conn.has_feature("shell_v2"));
        // The TV lists cmd, we do not: not in common.
        assert!(!conn.has_feature("cmd"));
    }

    #[test]
    fn legacy_peer_gets_checked_sums_and_small_writes() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        sent(&mut conn);
        conn.handle_bytes(&Message::cnxn(VERSION_MIN, 4096, b"device::").encode())
            .unwrap();
        assert_eq!(conn.peer().unwrap().version, VERSION_MIN);
        assert!(!conn.has_feature("shell_v2"));
        let id = conn.open("shell:ls").unwrap();
        sent(&mut conn);
        conn.handle_bytes(&Message::okay(9, id.get()).encode())
            .unwrap();
        conn.write(id, &[1; 5000]).unwrap();
        let out = sent(&mut conn);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.len(), 4096);
        // A wrong sum from a legacy TV is fatal.
        let mut bad = Message::wrte(9, id.get(), b"x".to_vec()).encode();
        bad[16] ^= 1;
        let err = conn.handle_bytes(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                ConnectionError::Message(MessageError::BadChecksum { .. })
            ),
            "{err:?}"
        );
        assert_eq!(conn.state(), &State::Failed);
        assert!(matches!(
            conn.handle_bytes(b""),
            Err(ConnectionError::Failed(_))
        ));
    }

    #[test]
    fn tokens_get_signatures_then_the_public_key_once() {
        let key = test_key();
        let mut conn = Connection::new(Config::new(vec![key.clone()], "tech@site"));
        sent(&mut conn);
        let token = [3u8; 20];
        conn.handle_bytes(&Message::auth(AuthType::Token, token.to_vec()).encode())
            .unwrap();
        assert_eq!(conn.state(), &State::Authenticating);
        let out = sent(&mut conn);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].arg0, AuthType::Signature as u32);
        assert!(key.public_key().verify(&token, &out[0].payload));
        assert_eq!(events(&mut conn), [Event::AuthRequired]);

        // Refused: a fresh token. No key left, so the public key goes out.
        conn.handle_bytes(&Message::auth(AuthType::Token, vec![4; 20]).encode())
            .unwrap();
        let out = sent(&mut conn);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].arg0, AuthType::RsaPublicKey as u32);
        assert_eq!(out[0].payload, key.public_key().auth_payload("tech@site"));
        let fingerprint = key.public_key().fingerprint();
        assert_eq!(
            events(&mut conn),
            [Event::Unauthorized {
                fingerprint: fingerprint.clone()
            }]
        );
        assert!(conn.state().to_string().starts_with("unauthorized"));
        // Another token: nothing more is sent.
        conn.handle_bytes(&Message::auth(AuthType::Token, vec![5; 20]).encode())
            .unwrap();
        assert!(sent(&mut conn).is_empty());
        // The user accepts: CNXN on the same socket.
        conn.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, DEVICE).encode())
            .unwrap();
        assert_eq!(conn.state(), &State::Online);
    }

    #[test]
    fn auth_without_keys_or_with_a_bad_token_is_fatal() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        let err = conn
            .handle_bytes(&Message::auth(AuthType::Token, vec![0; 20]).encode())
            .unwrap_err();
        assert_eq!(err, ConnectionError::NoKey);
        let mut conn = Connection::new(Config::new(vec![test_key()], "t@h"));
        let err = conn
            .handle_bytes(&Message::auth(AuthType::Token, vec![0; 7]).encode())
            .unwrap_err();
        assert_eq!(err, ConnectionError::Auth(AuthError::TokenSize { len: 7 }));
        let mut conn = Connection::new(Config::new(vec![test_key()], "t@h"));
        let err = conn
            .handle_bytes(&Message::auth(AuthType::Signature, vec![0; 256]).encode())
            .unwrap_err();
        assert_eq!(err, ConnectionError::UnexpectedAuth(2));
    }

    #[test]
    fn stls_is_reported_and_ends_the_conversation() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        sent(&mut conn);
        let mut bytes = Message::stls().encode();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]); // a TLS record would follow
        conn.handle_bytes(&bytes).unwrap();
        assert_eq!(conn.state(), &State::TlsRequired);
        assert_eq!(events(&mut conn), [Event::TlsRequired]);
        assert_eq!(
            conn.state().to_string(),
            "this TV wants TLS (Android 11+ wireless debugging); not supported yet"
        );
        assert!(conn.poll_transmit().is_none());
    }

    #[test]
    fn nothing_before_the_tv_cnxn_counts() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        sent(&mut conn);
        conn.handle_bytes(&Message::wrte(1, 1, b"early".to_vec()).encode())
            .unwrap();
        assert!(events(&mut conn).is_empty());
        assert_eq!(
            conn.open("shell:ls"),
            Err(UseError::NotOnline(State::Connecting.to_string()))
        );
    }

    #[test]
    fn shell_stream_round_trip() {
        let mut conn = online();
        let id = conn.open("shell,v2,raw:echo hi").unwrap();
        assert_eq!(conn.open_streams(), 1);
        assert_eq!(
            sent(&mut conn),
            [Message::open(id.get(), "shell,v2,raw:echo hi")]
        );
        conn.handle_bytes(&Message::okay(40, id.get()).encode())
            .unwrap();
        assert_eq!(events(&mut conn), [Event::Opened(id)]);
        // Two messages in one read, split across two reads.
        let mut bytes = Message::wrte(40, id.get(), b"hi\n".to_vec()).encode();
        bytes.extend(Message::clse(40, id.get()).encode());
        let (a, b) = bytes.split_at(30);
        conn.handle_bytes(a).unwrap();
        conn.handle_bytes(b).unwrap();
        assert_eq!(
            events(&mut conn),
            [
                Event::Data {
                    id,
                    data: b"hi\n".to_vec()
                },
                Event::Closed(id)
            ]
        );
        // The closed stream needs no OKAY any more.
        assert!(sent(&mut conn).is_empty());
        assert_eq!(conn.open_streams(), 0);
    }

    #[test]
    fn a_second_cnxn_while_online_is_fatal() {
        let mut conn = online();
        let err = conn
            .handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, DEVICE).encode())
            .unwrap_err();
        assert_eq!(err, ConnectionError::Reconnected);
    }

    #[test]
    fn an_open_from_the_tv_is_refused() {
        let mut conn = online();
        conn.handle_bytes(&Message::open(77, "tcp:5000").encode())
            .unwrap();
        assert_eq!(sent(&mut conn), [Message::clse(0, 77)]);
    }

    #[test]
    fn service_too_long_for_one_payload() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        conn.handle_bytes(&Message::cnxn(VERSION_MIN, 16, b"device::").encode())
            .unwrap();
        assert_eq!(
            conn.open("shell:0123456789"),
            Err(UseError::ServiceTooLong { len: 16, max: 16 })
        );
        assert!(conn.open("shell:012345678").is_ok());
    }

    #[test]
    fn zero_max_payload_is_fatal() {
        let mut conn = Connection::new(Config::new(vec![], "t@h"));
        let err = conn
            .handle_bytes(&Message::cnxn(VERSION_MIN, 0, b"device::").encode())
            .unwrap_err();
        assert_eq!(err, ConnectionError::ZeroMaxPayload);
    }
}
