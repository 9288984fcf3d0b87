//! ADB messages (§1): a 24-byte header of six little-endian u32 (command,
//! arg0, arg1, data length, data "crc32", magic) and then the payload.
//!
//! The "crc32" is really the wrapping sum of the payload bytes. The encoder
//! always fills it in, because 7.0–8.1 adbd drops a connection with a wrong
//! sum and it costs nothing to send. The decoder checks it only when told to
//! (effective version `0x01000000`), since 9+ peers write 0 there.

use std::fmt;

use super::decode::{Decoded, fill, le_u32};

/// Version of the first protocol; peers at this version check sums.
pub const VERSION_MIN: u32 = 0x0100_0000;
/// `A_VERSION_SKIP_CHECKSUM` (Android 9+): payload sums are no longer checked.
pub const VERSION_SKIP_CHECKSUM: u32 = 0x0100_0001;
/// The largest payload we offer to receive (what 9+ adbd offers too).
pub const MAX_PAYLOAD: u32 = 1024 * 1024;
/// What old devices assume before CNXN: CNXN and AUTH payloads stay below it.
pub const LEGACY_MAX_PAYLOAD: u32 = 4096;
/// Bytes in a header.
pub const HEADER_LEN: usize = 24;

/// The commands that can appear on the wire (§1.2). `SYNC` is obsolete and
/// never sent, so it decodes as an unknown command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Cnxn,
    Auth,
    Open,
    Okay,
    Wrte,
    Clse,
    /// "Switch to TLS": only on the Android 11+ wireless-debugging port.
    Stls,
}

impl Command {
    pub const ALL: [Command; 7] = [
        Command::Cnxn,
        Command::Auth,
        Command::Open,
        Command::Okay,
        Command::Wrte,
        Command::Clse,
        Command::Stls,
    ];

    /// The four ASCII letters, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Command::Cnxn => "CNXN",
            Command::Auth => "AUTH",
            Command::Open => "OPEN",
            Command::Okay => "OKAY",
            Command::Wrte => "WRTE",
            Command::Clse => "CLSE",
            Command::Stls => "STLS",
        }
    }

    /// The letters read as a little-endian u32 (`CNXN` = `0x4E584E43`).
    pub fn code(self) -> u32 {
        let b = self.name().as_bytes();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn from_code(code: u32) -> Option<Command> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A raw command word for messages: the letters when they are printable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawCommand(pub u32);

impl fmt::Display for RawCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_le_bytes();
        if b.iter().all(|c| c.is_ascii_alphanumeric()) {
            b.iter().try_for_each(|&c| write!(f, "{}", char::from(c)))
        } else {
            write!(f, "{:#010x}", self.0)
        }
    }
}

/// The `AUTH` message types (arg0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// Device → host: 20 random bytes to sign.
    Token = 1,
    /// Host → device: the token signed with one private key.
    Signature = 2,
    /// Host → device: a public key for the user to accept.
    RsaPublicKey = 3,
}

impl AuthType {
    pub fn from_code(code: u32) -> Option<AuthType> {
        match code {
            1 => Some(AuthType::Token),
            2 => Some(AuthType::Signature),
            3 => Some(AuthType::RsaPublicKey),
            _ => None,
        }
    }
}

/// The wrapping byte sum protocol.txt calls "crc32".
pub fn checksum(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// One message, header fields and payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub command: Command,
    pub arg0: u32,
    pub arg1: u32,
    pub payload: Vec<u8>,
}

impl fmt::Debug for Message {
    // Payloads can be a megabyte; show the start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.payload.get(..32).unwrap_or(&self.payload);
        write!(
            f,
            "{}({:#x}, {:#x}, {} bytes: {:?}{})",
            self.command,
            self.arg0,
            self.arg1,
            self.payload.len(),
            String::from_utf8_lossy(head),
            if head.len() < self.payload.len() {
                "…"
            } else {
                ""
            }
        )
    }
}

impl Message {
    pub fn new(command: Command, arg0: u32, arg1: u32, payload: Vec<u8>) -> Message {
        Message {
            command,
            arg0,
            arg1,
            payload,
        }
    }

    /// `CNXN(version, maxdata, banner)`, sent by both sides.
    pub fn cnxn(version: u32, max_payload: u32, banner: &[u8]) -> Message {
        Message::new(Command::Cnxn, version, max_payload, banner.to_vec())
    }

    pub fn auth(kind: AuthType, data: Vec<u8>) -> Message {
        Message::new(Command::Auth, kind as u32, 0, data)
    }

    /// `OPEN(local, 0, "service\0")`: the trailing NUL is for old adbd.
    pub fn open(local: u32, service: &str) -> Message {
        let mut payload = Vec::with_capacity(service.len() + 1);
        payload.extend_from_slice(service.as_bytes());
        payload.push(0);
        Message::new(Command::Open, local, 0, payload)
    }

    pub fn okay(local: u32, remote: u32) -> Message {
        Message::new(Command::Okay, local, remote, Vec::new())
    }

    pub fn wrte(local: u32, remote: u32, data: Vec<u8>) -> Message {
        Message::new(Command::Wrte, local, remote, data)
    }

    /// `CLSE(local, remote)`; `local` = 0 refuses an OPEN.
    pub fn clse(local: u32, remote: u32) -> Message {
        Message::new(Command::Clse, local, remote, Vec::new())
    }

    /// `STLS(0x01000000, 0)`, what the device sends on a TLS-only port.
    pub fn stls() -> Message {
        Message::new(Command::Stls, VERSION_MIN, 0, Vec::new())
    }

    /// The header and payload, with the sum always filled in.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let code = self.command.code();
        // A payload over 4 GiB cannot be framed; no caller makes one (the
        // connection splits writes at the peer's max payload).
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        for word in [
            code,
            self.arg0,
            self.arg1,
            len,
            checksum(&self.payload),
            code ^ 0xFFFF_FFFF,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.payload);
    }
}

/// A header whose magic and command have been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub command: Command,
    pub arg0: u32,
    pub arg1: u32,
    pub data_length: u32,
    pub data_check: u32,
}

impl Header {
    /// Checks magic and command; the length is the decoder's business since
    /// its limit depends on the connection.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, MessageError> {
        let word = |i: usize| le_u32(bytes, 4 * i);
        let code = word(0);
        let magic = word(5);
        if magic != code ^ 0xFFFF_FFFF {
            return Err(MessageError::BadMagic {
                command: RawCommand(code),
                magic,
            });
        }
        let command =
            Command::from_code(code).ok_or(MessageError::UnknownCommand(RawCommand(code)))?;
        Ok(Header {
            command,
            arg0: word(1),
            arg1: word(2),
            data_length: word(3),
            data_check: word(4),
        })
    }
}

/// Why the byte stream is no longer a stream of messages. Each one means the
/// connection has lost its state and must be dropped (§1.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error(
        "bad magic {magic:#010x} after command {command}: not an ADB peer, or the stream lost sync"
    )]
    BadMagic { command: RawCommand, magic: u32 },
    #[error("unknown command {0}")]
    UnknownCommand(RawCommand),
    #[error("{command} announces {len} payload bytes, over the {max}-byte limit")]
    TooLong {
        command: Command,
        len: u32,
        max: u32,
    },
    #[error("{command} payload sums to {actual:#010x}, header says {expected:#010x}")]
    BadChecksum {
        command: Command,
        expected: u32,
        actual: u32,
    },
}

/// Reads messages from bytes in any chunking; never panics, never allocates
/// more than the payload limit for one message.
#[derive(Clone, Debug)]
pub struct MessageDecoder {
    max_payload: u32,
    verify_checksum: bool,
    header: Vec<u8>,
    parsed: Option<Header>,
    payload: Vec<u8>,
    failed: Option<MessageError>,
}

impl MessageDecoder {
    /// `max_payload` is what this side told its peer it can take.
    pub fn new(max_payload: u32) -> MessageDecoder {
        MessageDecoder {
            max_payload,
            verify_checksum: false,
            header: Vec::with_capacity(HEADER_LEN),
            parsed: None,
            payload: Vec::new(),
            failed: None,
        }
    }

    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    pub fn set_max_payload(&mut self, max: u32) {
        self.max_payload = max;
    }

    /// Check sums from now on: only when the effective version is
    /// [`VERSION_MIN`] (§1.3).
    pub fn set_verify_checksum(&mut self, on: bool) {
        self.verify_checksum = on;
    }

    /// Takes from `input` what the next message needs and returns it once
    /// whole; leaves the rest of `input` for the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Decoded<Message, MessageError> {
        if let Some(e) = &self.failed {
            return Decoded::Invalid(e.clone());
        }
        match self.step(input) {
            Ok(Some(m)) => Decoded::Done(m),
            Ok(None) => Decoded::NeedMore,
            Err(e) => {
                self.failed = Some(e.clone());
                Decoded::Invalid(e)
            }
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Message>, MessageError> {
        let header = match self.parsed {
            Some(h) => h,
            None => {
                if !fill(&mut self.header, HEADER_LEN, input) {
                    return Ok(None);
                }
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(self.header.get(..HEADER_LEN).unwrap_or(&[0; HEADER_LEN]));
                let h = Header::parse(&raw)?;
                // Checked before allocating: a hostile length costs nothing.
                if h.data_length > self.max_payload {
                    return Err(MessageError::TooLong {
                        command: h.command,
                        len: h.data_length,
                        max: self.max_payload,
                    });
                }
                self.payload = Vec::with_capacity(h.data_length as usize);
                self.parsed = Some(h);
                h
            }
        };
        if !fill(&mut self.payload, header.data_length as usize, input) {
            return Ok(None);
        }
        let payload = std::mem::take(&mut self.payload);
        self.parsed = None;
        self.header.clear();
        if self.verify_checksum {
            let actual = checksum(&payload);
            if actual != header.data_check {
                return Err(MessageError::BadChecksum {
                    command: header.command,
                    expected: header.data_check,
                    actual,
                });
            }
        }
        Ok(Some(Message {
            command: header.command,
            arg0: header.arg0,
            arg1: header.arg1,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut MessageDecoder, mut input: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            match dec.decode(&mut input) {
                Decoded::Done(m) => out.push(m),
                Decoded::NeedMore => return out,
                Decoded::Invalid(e) => panic!("invalid: {e}"),
            }
        }
    }

    #[test]
    fn command_codes_are_the_documented_values() {
        let expected = [
            (Command::Cnxn, 0x4E58_4E43),
            (Command::Auth, 0x4854_5541),
            (Command::Open, 0x4E45_504F),
            (Command::Okay, 0x5941_4B4F),
            (Command::Wrte, 0x4554_5257),
            (Command::Clse, 0x4553_4C43),
            (Command::Stls, 0x534C_5453),
        ];
        for (c, code) in expected {
            assert_eq!(c.code(), code, "{c}");
            assert_eq!(Command::from_code(code), Some(c));
        }
        // SYNC is obsolete and never on the wire.
        assert_eq!(Command::from_code(0x434E_5953), None);
    }

    #[test]
    fn checksum_is_a_wrapping_byte_sum() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(
            checksum(b"host::\0"),
            0x68 + 0x6F + 0x73 + 0x74 + 0x3A + 0x3A
        );
        assert_eq!(checksum(&[0xFF; 3]), 0x2FD);
    }

    #[test]
    fn header_bytes_of_a_host_cnxn() {
        let banner = b"host::features=shell_v2,cmd,stat_v2,ls_v2";
        let bytes = Message::cnxn(VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, banner).encode();
        let mut header = Vec::new();
        header.extend_from_slice(b"CNXN");
        header.extend_from_slice(&[0x01, 0x00, 0x00, 0x01]); // 0x01000001
        header.extend_from_slice(&[0x00, 0x00, 0x10, 0x00]); // 0x100000
        header.extend_from_slice(&(banner.len() as u32).to_le_bytes());
        header.extend_from_slice(&checksum(banner).to_le_bytes());
        header.extend_from_slice(&[0xBC, 0xB1, 0xA7, 0xB1]); // !0x4E584E43
        assert_eq!(&bytes[..HEADER_LEN], &header[..]);
        assert_eq!(&bytes[HEADER_LEN..], banner);
        assert_eq!(banner.len(), 41);
        assert_eq!(checksum(banner), 0xF4E);
    }

    #[test]
    fn open_carries_the_trailing_nul() {
        let m = Message::open(7, "shell:ls");
        assert_eq!(m.payload, b"shell:ls\0");
        let bytes = m.encode();
        assert_eq!(&bytes[..4], b"OPEN");
        assert_eq!(&bytes[4..8], &[7, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &[9, 0, 0, 0]);
    }

    #[test]
    fn decodes_byte_by_byte_and_back_to_back() {
        let a = Message::wrte(1, 2, b"hello".to_vec());
        let b = Message::okay(2, 1);
        let c = Message::clse(0, 5);
        let mut bytes = a.encode();
        bytes.extend(b.encode());
        bytes.extend(c.encode());
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        let mut got = Vec::new();
        for byte in bytes.chunks(1) {
            got.extend(decode_all(&mut dec, byte));
        }
        assert_eq!(got, [a.clone(), b.clone(), c.clone()]);
        // All at once, too.
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        let mut all = a.encode();
        all.extend(b.encode());
        assert_eq!(decode_all(&mut dec, &all), [a, b]);
    }

    #[test]
    fn leaves_the_next_message_in_the_input() {
        let mut bytes = Message::okay(1, 2).encode();
        bytes.extend(Message::okay(3, 4).encode());
        let mut input = &bytes[..];
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        assert_eq!(dec.decode(&mut input), Decoded::Done(Message::okay(1, 2)));
        assert_eq!(input.len(), HEADER_LEN);
    }

    #[test]
    fn bad_magic_is_invalid_and_stays_so() {
        let mut bytes = Message::okay(1, 2).encode();
        bytes[20] ^= 1;
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        let err = MessageError::BadMagic {
            command: RawCommand(Command::Okay.code()),
            magic: !Command::Okay.code() ^ 1,
        };
        assert_eq!(dec.decode(&mut &bytes[..]), Decoded::Invalid(err.clone()));
        let good = Message::okay(1, 2).encode();
        assert_eq!(dec.decode(&mut &good[..]), Decoded::Invalid(err.clone()));
        assert_eq!(
            err.to_string(),
            "bad magic 0xa6beb4b1 after command OKAY: not an ADB peer, or the stream lost sync"
        );
    }

    #[test]
    fn unknown_command_is_invalid() {
        let code = 0x434E_5953; // SYNC
        let mut bytes = Vec::new();
        for w in [code, 0, 0, 0, 0, code ^ 0xFFFF_FFFF] {
            bytes.extend_from_slice(&u32::to_le_bytes(w));
        }
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        match dec.decode(&mut &bytes[..]) {
            Decoded::Invalid(e) => assert_eq!(e.to_string(), "unknown command SYNC"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let bytes = Message::wrte(1, 2, vec![0; 4097]).encode();
        let mut dec = MessageDecoder::new(4096);
        // Only the header: the error comes before any payload is buffered.
        assert_eq!(
            dec.decode(&mut &bytes[..HEADER_LEN]),
            Decoded::Invalid(MessageError::TooLong {
                command: Command::Wrte,
                len: 4097,
                max: 4096
            })
        );
        let ok = Message::wrte(1, 2, vec![0; 4096]).encode();
        let mut dec = MessageDecoder::new(4096);
        assert!(matches!(dec.decode(&mut &ok[..]), Decoded::Done(_)));
    }

    #[test]
    fn checksum_checked_only_when_asked() {
        let mut bytes = Message::wrte(1, 2, b"abc".to_vec()).encode();
        // A 9+ sender writes 0 in the sum field.
        bytes[16..20].copy_from_slice(&[0; 4]);
        let mut lax = MessageDecoder::new(MAX_PAYLOAD);
        assert!(matches!(lax.decode(&mut &bytes[..]), Decoded::Done(_)));
        let mut strict = MessageDecoder::new(MAX_PAYLOAD);
        strict.set_verify_checksum(true);
        assert_eq!(
            strict.decode(&mut &bytes[..]),
            Decoded::Invalid(MessageError::BadChecksum {
                command: Command::Wrte,
                expected: 0,
                actual: 0x61 + 0x62 + 0x63
            })
        );
    }

    #[test]
    fn stls_message_bytes() {
        let bytes = Message::stls().encode();
        assert_eq!(&bytes[..4], b"STLS");
        assert_eq!(&bytes[4..8], &[0, 0, 0, 1]);
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        match dec.decode(&mut &bytes[..]) {
            Decoded::Done(m) => {
                assert_eq!(m.command, Command::Stls);
                assert_eq!(m.arg0, VERSION_MIN);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_command_display() {
        assert_eq!(RawCommand(Command::Wrte.code()).to_string(), "WRTE");
        assert_eq!(RawCommand(0x0000_0001).to_string(), "0x00000001");
    }
}
