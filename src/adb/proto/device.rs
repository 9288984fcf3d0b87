//! The device side of one connection, for the TV simulator: it plays adbd
//! with the same codec, auth and stream table as the host, so the host is
//! tested against the rules it relies on.
//!
//! Driven like the host [`Connection`](super::connection::Connection):
//! bytes in with [`Device::handle_bytes`], bytes out with
//! [`Device::poll_transmit`], events from [`Device::poll_event`]. The
//! simulator decides what adbd's user and services would:
//! - [`DeviceEvent::KeyOffered`]: the "Allow USB debugging?" dialog; call
//!   [`Device::accept_key`] to accept, or nothing (the real TV stays silent).
//! - [`DeviceEvent::OpenRequested`]: call [`Device::accept`] and then
//!   [`Device::write`] the service's output and [`Device::close`], or
//!   [`Device::refuse`] for an unknown service.
//!
//! Like adbd it says nothing before the host's CNXN, checks payload sums
//! only for a `0x01000000` host, and ignores OPEN until online.

use std::collections::VecDeque;

use rsa::sha2::{Digest as _, Sha256};

use super::auth::{AndroidPublicKey, AuthError, TOKEN_SIZE};
use super::banner::Banner;
use super::decode::Decoded;
use super::message::{
    AuthType, Command, MAX_PAYLOAD, Message, MessageDecoder, MessageError, VERSION_SKIP_CHECKSUM,
};
use super::stream::{LocalId, StreamError, StreamEvent, Streams, UseError};

/// How the simulated adbd behaves.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    pub banner: Banner,
    /// `0x01000001` for 9+, `0x01000000` for older TVs.
    pub version: u32,
    /// 1 MiB for 9+, 256 KiB for 7.0–8.1, 4096 for ≤ 6.0.
    pub max_payload: u32,
    /// `ro.adb.secure=1`: demand a signature by a trusted key.
    pub auth: bool,
    /// The TV's `adb_keys`.
    pub trusted_keys: Vec<AndroidPublicKey>,
    /// Answer CNXN with STLS, like a TLS-only wireless-debugging port.
    pub tls_only: bool,
    /// Tokens are derived from it: a simulator needs no secret tokens, and
    /// a fixed seed makes a test repeatable.
    pub token_seed: [u8; 32],
}

impl DeviceConfig {
    /// A modern TV (9+, 1 MiB) with auth off.
    pub fn new(banner: Banner) -> DeviceConfig {
        DeviceConfig {
            banner,
            version: VERSION_SKIP_CHECKSUM,
            max_payload: MAX_PAYLOAD,
            auth: false,
            trusted_keys: Vec::new(),
            tls_only: false,
            token_seed: [0; 32],
        }
    }
}

/// Where the simulated adbd is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// No CNXN from the host yet.
    WaitingForHost,
    /// A token is out, waiting for a signature or a public key.
    Authenticating,
    /// The host offered its public key; the dialog is up.
    AwaitingUser,
    Online,
    /// STLS sent: nothing more is said.
    TlsRequired,
    Failed,
}

/// What the simulator must react to or may log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceEvent {
    /// We sent CNXN: the host may open streams. Carries the host's banner.
    Online(Banner),
    /// A signature matched no trusted key; a new token went out.
    SignatureRejected,
    /// The host sent its public key: show the dialog. `comment` is its
    /// `user@host`.
    KeyOffered {
        key: AndroidPublicKey,
        comment: String,
    },
    /// The host sent a public key that cannot be read; adbd ignores it.
    BadKey(AuthError),
    /// The host wants a service: accept or refuse it.
    OpenRequested {
        id: LocalId,
        service: String,
    },
    /// Stream input; the host gets its OKAY when this event is taken.
    Data {
        id: LocalId,
        data: Vec<u8>,
    },
    Closed(LocalId),
    StreamFailed(StreamError),
    Ignored(StreamError),
}

/// Why the simulated connection ends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("the host sent CNXN again")]
    Reconnected,
    #[error("the host sent AUTH type {0}, which only a device sends")]
    UnexpectedAuth(u32),
    #[error("the host offers a max payload of 0 bytes")]
    ZeroMaxPayload,
    #[error("the connection already failed: {0}")]
    Failed(Box<DeviceError>),
}

/// One simulated adbd connection.
#[derive(Debug)]
pub struct Device {
    config: DeviceConfig,
    state: DeviceState,
    decoder: MessageDecoder,
    streams: Streams,
    events: VecDeque<DeviceEvent>,
    host: Option<Banner>,
    token: [u8; TOKEN_SIZE],
    tokens_sent: u64,
    error: Option<DeviceError>,
}

impl Device {
    pub fn new(config: DeviceConfig) -> Device {
        Device {
            decoder: MessageDecoder::new(config.max_payload),
            streams: Streams::new(config.max_payload as usize),
            config,
            state: DeviceState::WaitingForHost,
            events: VecDeque::new(),
            host: None,
            token: [0; TOKEN_SIZE],
            tokens_sent: 0,
            error: None,
        }
    }

    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// The host's banner, once its CNXN came.
    pub fn host_banner(&self) -> Option<&Banner> {
        self.host.as_ref()
    }

    /// Streams accepted or waiting for an answer.
    pub fn open_streams(&self) -> usize {
        self.streams.count()
    }

    /// Feeds bytes from the host. An error is final.
    pub fn handle_bytes(&mut self, mut bytes: &[u8]) -> Result<(), DeviceError> {
        if let Some(e) = &self.error {
            return Err(DeviceError::Failed(Box::new(e.clone())));
        }
        while !bytes.is_empty() && self.state != DeviceState::TlsRequired {
            let result = match self.decoder.decode(&mut bytes) {
                Decoded::NeedMore => break,
                Decoded::Done(m) => self.handle_message(m),
                Decoded::Invalid(e) => Err(e.into()),
            };
            if let Err(e) = result {
                self.state = DeviceState::Failed;
                self.error = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn handle_message(&mut self, m: Message) -> Result<(), DeviceError> {
        let waiting = self.state == DeviceState::WaitingForHost;
        let online = self.state == DeviceState::Online;
        match m.command {
            Command::Cnxn if waiting => self.host_cnxn(m),
            Command::Cnxn => Err(DeviceError::Reconnected),
            // Nothing counts before the host's CNXN (§1.1).
            _ if waiting => Ok(()),
            Command::Auth if !online => self.auth(m),
            Command::Open if online => {
                // local-id 0 cannot be answered; adbd drops such an OPEN.
                if m.arg0 != 0 {
                    let end = m.payload.iter().position(|&b| b == 0);
                    let name = m.payload.get(..end.unwrap_or(m.payload.len()));
                    let service = String::from_utf8_lossy(name.unwrap_or_default());
                    self.streams.open_requested(m.arg0, service.into_owned());
                }
                Ok(())
            }
            // A14 adbd answers an OKAY for a stream it does not have with
            // CLSE, so the host learns the stream is gone.
            Command::Okay if online && m.arg0 != 0 && !self.streams.contains(m.arg1) => {
                self.streams.send(Message::clse(0, m.arg0));
                Ok(())
            }
            Command::Okay | Command::Wrte | Command::Clse if online => {
                self.streams.handle(m);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn host_cnxn(&mut self, m: Message) -> Result<(), DeviceError> {
        if m.arg1 == 0 {
            return Err(DeviceError::ZeroMaxPayload);
        }
        let version = m.arg0.min(self.config.version);
        self.decoder
            .set_verify_checksum(version < VERSION_SKIP_CHECKSUM);
        self.streams
            .set_max_send(m.arg1.min(self.config.max_payload) as usize);
        self.host = Some(Banner::parse(&m.payload));
        if self.config.tls_only {
            self.streams.send(Message::stls());
            self.state = DeviceState::TlsRequired;
        } else if self.config.auth {
            self.send_token();
            self.state = DeviceState::Authenticating;
        } else {
            self.go_online();
        }
        Ok(())
    }

    fn auth(&mut self, m: Message) -> Result<(), DeviceError> {
        match AuthType::from_code(m.arg0) {
            Some(AuthType::Signature) => {
                let token = self.token;
                let trusted = self
                    .config
                    .trusted_keys
                    .iter()
                    .any(|k| k.verify(&token, &m.payload));
                if trusted {
                    self.go_online();
                } else {
                    self.events.push_back(DeviceEvent::SignatureRejected);
                    self.send_token();
                }
                Ok(())
            }
            Some(AuthType::RsaPublicKey) => {
                match AndroidPublicKey::parse_line(&m.payload) {
                    Ok((key, comment)) => {
                        self.state = DeviceState::AwaitingUser;
                        self.events
                            .push_back(DeviceEvent::KeyOffered { key, comment });
                    }
                    Err(e) => self.events.push_back(DeviceEvent::BadKey(e)),
                }
                Ok(())
            }
            _ => Err(DeviceError::UnexpectedAuth(m.arg0)),
        }
    }

    fn send_token(&mut self) {
        let mut h = Sha256::new();
        h.update(self.config.token_seed);
        h.update(self.tokens_sent.to_le_bytes());
        let digest = h.finalize();
        self.token.copy_from_slice(&digest[..TOKEN_SIZE]);
        self.tokens_sent += 1;
        self.streams
            .send(Message::auth(AuthType::Token, self.token.to_vec()));
    }

    fn go_online(&mut self) {
        let banner = self.config.banner.encode();
        self.streams.send(Message::cnxn(
            self.config.version,
            self.config.max_payload,
            &banner,
        ));
        self.state = DeviceState::Online;
        let host = self.host.clone().unwrap_or_else(|| Banner::parse(b""));
        self.events.push_back(DeviceEvent::Online(host));
    }

    /// The user pressed "Allow": the key is trusted from now on (as with
    /// "Always allow") and the device goes online. Ignored unless the dialog
    /// is up.
    pub fn accept_key(&mut self, key: AndroidPublicKey) {
        if self.state == DeviceState::AwaitingUser {
            self.config.trusted_keys.push(key);
            self.go_online();
        }
    }

    /// The keys trusted now, including ones accepted on this connection.
    pub fn trusted_keys(&self) -> &[AndroidPublicKey] {
        &self.config.trusted_keys
    }

    /// Bytes to send to the host, one message per call.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.error.is_some() {
            return None;
        }
        self.streams.poll_transmit().map(|m| m.encode())
    }

    /// The next event. Taking a [`DeviceEvent::Data`] lets the host send
    /// more on that stream.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            return Some(match self.streams.poll_event()? {
                StreamEvent::OpenRequested { id, service } => {
                    DeviceEvent::OpenRequested { id, service }
                }
                StreamEvent::Data { id, data } => DeviceEvent::Data { id, data },
                StreamEvent::Closed(id) => DeviceEvent::Closed(id),
                StreamEvent::Failed(e) => DeviceEvent::StreamFailed(e),
                StreamEvent::Ignored(e) => DeviceEvent::Ignored(e),
                // A device opens no streams, so it has none of these.
                StreamEvent::Opened(_) | StreamEvent::Refused(_) => continue,
            });
        }
    }

    /// Accepts a requested stream (OKAY); writes may follow at once.
    pub fn accept(&mut self, id: LocalId) -> Result<(), UseError> {
        self.streams.accept(id)
    }

    /// Refuses a requested stream (`CLSE(0, host id)`): unknown service.
    pub fn refuse(&mut self, id: LocalId) -> Result<(), UseError> {
        self.streams.close(id)
    }

    /// Queues service output; sent in WRTEs as the host acknowledges them.
    pub fn write(&mut self, id: LocalId, data: &[u8]) -> Result<(), UseError> {
        self.streams.write(id, data)
    }

    /// Closes a stream after its buffered output, as adbd does when the
    /// service exits.
    pub fn close(&mut self, id: LocalId) -> Result<(), UseError> {
        self.streams.close(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::proto::banner::Features;
    use crate::adb::proto::connection::{Config, Connection, Event, State};
    use crate::adb::proto::message::VERSION_MIN;
    use crate::adb::proto::{AdbKey, second_test_key, test_key};

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(host: &mut Connection, dev: &mut Device) {
        loop {
            let mut moved = false;
            while let Some(bytes) = host.poll_transmit() {
                dev.handle_bytes(&bytes).unwrap();
                moved = true;
            }
            while let Some(bytes) = dev.poll_transmit() {
                host.handle_bytes(&bytes).unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn host_events(host: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| host.poll_event()).collect()
    }

    fn dev_events(dev: &mut Device) -> Vec<DeviceEvent> {
        std::iter::from_fn(|| dev.poll_event()).collect()
    }

    fn tv() -> Banner {
        Banner::device("atv", "Bravia", "bravia", Features::parse("shell_v2,cmd"))
    }

    fn secure_tv(trusted: &[&AdbKey]) -> DeviceConfig {
        DeviceConfig {
            auth: true,
            trusted_keys: trusted.iter().map(|k| k.public_key().clone()).collect(),
            token_seed: [9; 32],
            ..DeviceConfig::new(tv())
        }
    }

    #[test]
    fn trusted_key_signs_in() {
        let key = test_key();
        let mut host = Connection::new(Config::new(vec![key.clone()], "t@h"));
        let mut dev = Device::new(secure_tv(&[&key]));
        pump(&mut host, &mut dev);
        assert_eq!(host.state(), &State::Online);
        assert_eq!(dev.state(), &DeviceState::Online);
        let ev = host_events(&mut host);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0], Event::AuthRequired);
        let Event::Connected(banner) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(banner.model(), Some("Bravia"));
        let dev_ev = dev_events(&mut dev);
        let [DeviceEvent::Online(host_banner)] = &dev_ev[..] else {
            panic!("{dev_ev:?}")
        };
        assert!(host_banner.features.contains("shell_v2"));
    }

    #[test]
    fn unknown_key_goes_unauthorized_then_the_user_accepts() {
        let key = test_key();
        let mut host = Connection::new(Config::new(vec![key.clone()], "sitelink@pi"));
        let mut dev = Device::new(secure_tv(&[]));
        pump(&mut host, &mut dev);
        let fingerprint = key.public_key().fingerprint();
        assert_eq!(
            host.state(),
            &State::Unauthorized {
                fingerprint: fingerprint.clone()
            }
        );
        assert_eq!(dev.state(), &DeviceState::AwaitingUser);
        assert_eq!(
            host_events(&mut host),
            [Event::AuthRequired, Event::Unauthorized { fingerprint }]
        );
        let ev = dev_events(&mut dev);
        let [
            DeviceEvent::SignatureRejected,
            DeviceEvent::KeyOffered {
                key: offered,
                comment,
            },
        ] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(offered, key.public_key());
        assert_eq!(comment, "sitelink@pi");
        // Silence while the dialog is up.
        pump(&mut host, &mut dev);
        assert!(host_events(&mut host).is_empty());
        dev.accept_key(offered.clone());
        pump(&mut host, &mut dev);
        assert_eq!(host.state(), &State::Online);
        assert!(matches!(&host_events(&mut host)[..], [Event::Connected(_)]));

        // The next connection gets in with a signature.
        let mut again = Connection::new(Config::new(vec![key.clone()], "sitelink@pi"));
        let mut dev2 = Device::new(DeviceConfig {
            trusted_keys: dev.trusted_keys().to_vec(),
            ..secure_tv(&[])
        });
        pump(&mut again, &mut dev2);
        assert_eq!(again.state(), &State::Online);
    }

    #[test]
    fn the_second_key_is_tried_before_the_public_key() {
        let old = second_test_key();
        let site = test_key();
        let mut host = Connection::new(Config::new(vec![old, site.clone()], "t@h"));
        let mut dev = Device::new(secure_tv(&[&site]));
        pump(&mut host, &mut dev);
        assert_eq!(host.state(), &State::Online);
        assert_eq!(
            dev_events(&mut dev)
                .iter()
                .filter(|e| matches!(e, DeviceEvent::SignatureRejected))
                .count(),
            1
        );
    }

    #[test]
    fn shell_output_larger_than_max_payload_flows_with_okays() {
        let mut host = Connection::new(Config::new(vec![], "t@h"));
        let mut dev = Device::new(DeviceConfig {
            max_payload: 4096,
            version: VERSION_MIN,
            ..DeviceConfig::new(tv())
        });
        pump(&mut host, &mut dev);
        host_events(&mut host);
        dev_events(&mut dev);
        let id = host.open("shell:cat big").unwrap();
        host.write(id, b"input").unwrap();
        pump(&mut host, &mut dev);
        let ev = dev_events(&mut dev);
        let [
            DeviceEvent::OpenRequested {
                id: dev_id,
                service,
            },
        ] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(service, "shell:cat big");
        let output: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        dev.accept(*dev_id).unwrap();
        dev.write(*dev_id, &output).unwrap();
        dev.close(*dev_id).unwrap();
        let mut got = Vec::new();
        let mut writes = 0;
        let mut closed = false;
        let mut stdin = Vec::new();
        for _ in 0..100 {
            pump(&mut host, &mut dev);
            for e in host_events(&mut host) {
                match e {
                    Event::Data { data, .. } => {
                        assert!(data.len() <= 4096);
                        writes += 1;
                        got.extend(data);
                    }
                    Event::Closed(c) => {
                        assert_eq!(c, id);
                        closed = true;
                    }
                    Event::Opened(o) => assert_eq!(o, id),
                    other => panic!("{other:?}"),
                }
            }
            for e in dev_events(&mut dev) {
                if let DeviceEvent::Data { data, .. } = e {
                    stdin.extend(data);
                }
            }
            if closed {
                break;
            }
        }
        assert!(closed);
        assert_eq!(got, output);
        assert_eq!(writes, 50_000usize.div_ceil(4096));
        assert_eq!(stdin, b"input");
        assert_eq!(host.open_streams(), 0);
        assert_eq!(dev.open_streams(), 0);
    }

    #[test]
    fn refused_service() {
        let mut host = Connection::new(Config::new(vec![], "t@h"));
        let mut dev = Device::new(DeviceConfig::new(tv()));
        pump(&mut host, &mut dev);
        host_events(&mut host);
        dev_events(&mut dev);
        let id = host.open("shell,v2,raw:ls").unwrap();
        pump(&mut host, &mut dev);
        let ev = dev_events(&mut dev);
        let [DeviceEvent::OpenRequested { id: dev_id, .. }] = &ev[..] else {
            panic!("{ev:?}")
        };
        dev.refuse(*dev_id).unwrap();
        pump(&mut host, &mut dev);
        assert_eq!(host_events(&mut host), [Event::Refused(id)]);
        assert_eq!(host.open_streams(), 0);
    }

    #[test]
    fn tls_only_port() {
        let mut host = Connection::new(Config::new(vec![test_key()], "t@h"));
        let mut dev = Device::new(DeviceConfig {
            tls_only: true,
            ..DeviceConfig::new(tv())
        });
        pump(&mut host, &mut dev);
        assert_eq!(host.state(), &State::TlsRequired);
        assert_eq!(host_events(&mut host), [Event::TlsRequired]);
    }

    #[test]
    fn device_ignores_everything_before_cnxn() {
        let mut dev = Device::new(DeviceConfig::new(tv()));
        dev.handle_bytes(&Message::open(1, "shell:id").encode())
            .unwrap();
        assert!(dev.poll_transmit().is_none());
        assert!(dev.poll_event().is_none());
        assert_eq!(dev.state(), &DeviceState::WaitingForHost);
    }

    #[test]
    fn a_bad_public_key_is_reported() {
        let mut dev = Device::new(secure_tv(&[]));
        dev.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, b"host::").encode())
            .unwrap();
        dev.handle_bytes(&Message::auth(AuthType::RsaPublicKey, b"QUJD x\0".to_vec()).encode())
            .unwrap();
        let ev = dev_events(&mut dev);
        assert!(
            matches!(
                &ev[..],
                [DeviceEvent::BadKey(AuthError::BlobSize { len: 3 })]
            ),
            "{ev:?}"
        );
        assert_eq!(dev.state(), &DeviceState::Authenticating);
    }

    #[test]
    fn okay_for_an_unknown_stream_gets_clse() {
        let mut dev = Device::new(DeviceConfig::new(tv()));
        dev.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, b"host::").encode())
            .unwrap();
        while dev.poll_transmit().is_some() {}
        dev.handle_bytes(&Message::okay(5, 42).encode()).unwrap();
        assert_eq!(dev.poll_transmit(), Some(Message::clse(0, 5).encode()));
        assert!(dev.poll_transmit().is_none());
    }

    #[test]
    fn tokens_differ_per_request() {
        let mut dev = Device::new(secure_tv(&[]));
        dev.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, b"host::").encode())
            .unwrap();
        let first = dev.poll_transmit().unwrap();
        dev.handle_bytes(&Message::auth(AuthType::Signature, vec![0; 256]).encode())
            .unwrap();
        let second = dev.poll_transmit().unwrap();
        assert_eq!(first.len(), 24 + 20);
        assert_ne!(first[24..], second[24..]);
    }
}
