//! Polls, both ways: the host encodes them, the EGM simulator decodes them.
//!
//! Frame shapes (§2): a general poll is the single byte `80|addr`; a type R
//! long poll is `addr cmd` without CRC; types S and M are `addr cmd [data]
//! CRC` (the CRC is there even without data); type G is any long poll sent to
//! address 00, which no EGM answers.

use std::collections::VecDeque;
use std::fmt;

use super::bcd::{BcdError, DateTime, encode_bcd};
use super::crc::{crc_ok, push_crc};
use super::frame::{Check, FieldError, Reader};
use super::tables::MeterCode;

/// The R/S/M/G classification of a long poll (§2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollType {
    /// Address and command only, no CRC.
    R,
    /// With CRC, data optional.
    S,
    /// Multi-game: carries a BCD2 game number (0000 = whole machine).
    M,
    /// Broadcast to address 00; never answered.
    G,
}

/// The fixed-layout meter long polls 0F and 10–1A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeterPoll {
    /// 0F: cancelled credits, coin in, coin out, drop, jackpot, games played.
    Basic = 0x0F,
    CancelledCredits = 0x10,
    CoinIn = 0x11,
    CoinOut = 0x12,
    Drop = 0x13,
    Jackpot = 0x14,
    GamesPlayed = 0x15,
    GamesWon = 0x16,
    GamesLost = 0x17,
    /// 18: games since power-up and since slot door closed, BCD2 each.
    GamesSince = 0x18,
    /// 19: coin in, coin out, drop, jackpot, games played (not bills, §15.9).
    Totals = 0x19,
    CurrentCredits = 0x1A,
}

impl MeterPoll {
    pub const ALL: [MeterPoll; 12] = [
        MeterPoll::Basic,
        MeterPoll::CancelledCredits,
        MeterPoll::CoinIn,
        MeterPoll::CoinOut,
        MeterPoll::Drop,
        MeterPoll::Jackpot,
        MeterPoll::GamesPlayed,
        MeterPoll::GamesWon,
        MeterPoll::GamesLost,
        MeterPoll::GamesSince,
        MeterPoll::Totals,
        MeterPoll::CurrentCredits,
    ];

    pub fn command(self) -> u8 {
        self as u8
    }

    pub fn from_command(cmd: u8) -> Option<MeterPoll> {
        Self::ALL.into_iter().find(|m| m.command() == cmd)
    }

    /// The meters of the reply, in wire order, each with its BCD width in
    /// bytes. The meters are named by their 2F code so that every source of a
    /// meter lands on the same name.
    pub fn layout(self) -> &'static [(MeterCode, usize)] {
        use MeterCode as M;
        match self {
            MeterPoll::Basic => &[
                (M::CANCELLED_CREDITS, 4),
                (M::COIN_IN, 4),
                (M::COIN_OUT, 4),
                (M::TOTAL_DROP, 4),
                (M::JACKPOT, 4),
                (M::GAMES_PLAYED, 4),
            ],
            MeterPoll::CancelledCredits => &[(M::CANCELLED_CREDITS, 4)],
            MeterPoll::CoinIn => &[(M::COIN_IN, 4)],
            MeterPoll::CoinOut => &[(M::COIN_OUT, 4)],
            MeterPoll::Drop => &[(M::TOTAL_DROP, 4)],
            MeterPoll::Jackpot => &[(M::JACKPOT, 4)],
            MeterPoll::GamesPlayed => &[(M::GAMES_PLAYED, 4)],
            MeterPoll::GamesWon => &[(M::GAMES_WON, 4)],
            MeterPoll::GamesLost => &[(M::GAMES_LOST, 4)],
            MeterPoll::GamesSince => &[
                (M::GAMES_SINCE_POWER_UP, 2),
                (M::GAMES_SINCE_DOOR_CLOSED, 2),
            ],
            MeterPoll::Totals => &[
                (M::COIN_IN, 4),
                (M::COIN_OUT, 4),
                (M::TOTAL_DROP, 4),
                (M::JACKPOT, 4),
                (M::GAMES_PLAYED, 4),
            ],
            MeterPoll::CurrentCredits => &[(M::CURRENT_CREDITS, 4)],
        }
    }

    /// Data bytes of the reply.
    pub fn reply_data_len(self) -> usize {
        self.layout().iter().map(|(_, w)| w).sum()
    }
}

/// Most meter codes one 2F request may carry (§7).
pub const MAX_2F_CODES: usize = 10;
/// Most meter codes one 6F/AF request may carry: SPEC-SUM §7.21 says 12, MON's
/// comment 10; the length byte range (04–1A) allows 12.
pub const MAX_6F_CODES: usize = 12;

/// A long poll, typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LongPoll {
    /// 01: lock play.
    Shutdown,
    /// 02: enable play.
    Startup,
    /// 03
    SoundOff,
    /// 04
    SoundOn,
    /// 06
    EnableBillAcceptor,
    /// 07
    DisableBillAcceptor,
    /// 0E: real-time event reporting on or off.
    RealTimeEvents(bool),
    /// 0F, 10–1A.
    Meters(MeterPoll),
    /// 1B: the handpay waiting (or the current lockup, legacy reporting).
    HandpayInfo,
    /// 1F: gaming machine ID and information.
    MachineInfo,
    /// 21: ROM signature, seeded (binary, LSB first).
    RomSignature { seed: u16 },
    /// 2F: selected meters for a game (1–10 codes).
    SelectedMeters { game: u16, codes: Vec<MeterCode> },
    /// 48: last accepted bill.
    LastBill,
    /// 51: number of games implemented.
    GamesImplemented,
    /// 54: SAS version and serial number.
    SasVersion,
    /// 55: selected game number.
    SelectedGame,
    /// 6F, or AF when `alternate`: extended meters (1–12 two-byte codes).
    ExtendedMeters {
        alternate: bool,
        game: u16,
        codes: Vec<u16>,
    },
    /// 7E: read the EGM's date and time.
    ReadDateTime,
    /// A0: the features enabled for a game (0 = the machine as a whole).
    EnabledFeatures { game: u16 },
    /// 7F: set date and time (also valid as a global, type G).
    SetDateTime(DateTime),
}

impl LongPoll {
    pub fn command(&self) -> u8 {
        match self {
            LongPoll::Shutdown => 0x01,
            LongPoll::Startup => 0x02,
            LongPoll::SoundOff => 0x03,
            LongPoll::SoundOn => 0x04,
            LongPoll::EnableBillAcceptor => 0x06,
            LongPoll::DisableBillAcceptor => 0x07,
            LongPoll::RealTimeEvents(_) => 0x0E,
            LongPoll::Meters(m) => m.command(),
            LongPoll::HandpayInfo => 0x1B,
            LongPoll::MachineInfo => 0x1F,
            LongPoll::RomSignature { .. } => 0x21,
            LongPoll::SelectedMeters { .. } => 0x2F,
            LongPoll::LastBill => 0x48,
            LongPoll::GamesImplemented => 0x51,
            LongPoll::SasVersion => 0x54,
            LongPoll::SelectedGame => 0x55,
            LongPoll::ExtendedMeters {
                alternate: false, ..
            } => 0x6F,
            LongPoll::ExtendedMeters {
                alternate: true, ..
            } => 0xAF,
            LongPoll::ReadDateTime => 0x7E,
            LongPoll::SetDateTime(_) => 0x7F,
            LongPoll::EnabledFeatures { .. } => 0xA0,
        }
    }

    /// R, S or M; a poll sent to address 00 is G whatever its type here.
    pub fn poll_type(&self) -> PollType {
        command_shape(self.command()).map_or(PollType::S, |s| s.kind)
    }

    /// Appends the frame for `address` (00 = global).
    pub fn encode(&self, address: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.push(address & 0x7F);
        out.push(self.command());
        match self {
            LongPoll::RealTimeEvents(on) => out.push(u8::from(*on)),
            LongPoll::RomSignature { seed } => out.extend_from_slice(&seed.to_le_bytes()),
            LongPoll::SelectedMeters { game, codes } => {
                if codes.is_empty() || codes.len() > MAX_2F_CODES {
                    return Err(EncodeError::MeterCount {
                        command: 0x2F,
                        count: codes.len(),
                        max: MAX_2F_CODES,
                    });
                }
                // The length byte counts the game number and the codes; it fits
                // in a byte because the count is bounded above.
                out.push((2 + codes.len()) as u8);
                push_game(*game, out)?;
                out.extend(codes.iter().map(|c| c.0));
            }
            LongPoll::ExtendedMeters { game, codes, .. } => {
                if codes.is_empty() || codes.len() > MAX_6F_CODES {
                    return Err(EncodeError::MeterCount {
                        command: self.command(),
                        count: codes.len(),
                        max: MAX_6F_CODES,
                    });
                }
                out.push((2 + 2 * codes.len()) as u8);
                push_game(*game, out)?;
                for c in codes {
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
            LongPoll::SetDateTime(dt) => dt.encode(out).map_err(|error| EncodeError::Bcd {
                field: "date and time",
                error,
            })?,
            LongPoll::EnabledFeatures { game } => push_game(*game, out)?,
            _ => {}
        }
        if self.poll_type() != PollType::R {
            let mut frame = out.split_off(start);
            push_crc(&mut frame);
            out.extend_from_slice(&frame);
        }
        Ok(())
    }
}

impl fmt::Display for LongPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", PollKind::Long(self.command()))
    }
}

fn push_game(game: u16, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_bcd(u64::from(game), 2, out).map_err(|error| EncodeError::Bcd {
        field: "game number",
        error,
    })
}

/// The length rule of a request, by command.
#[derive(Clone, Copy)]
enum RequestLen {
    /// The whole frame has this many bytes.
    Fixed(usize),
    /// `addr cmd len data CRC`, with `len` in this range.
    Counted { min: u8, max: u8 },
}

#[derive(Clone, Copy)]
struct Shape {
    kind: PollType,
    len: RequestLen,
}

/// Request shapes of the long polls this core knows (§7, §8).
fn command_shape(cmd: u8) -> Option<Shape> {
    use PollType::{M, R, S};
    use RequestLen::{Counted, Fixed};
    let (kind, len) = match cmd {
        0x01..=0x04 | 0x06 | 0x07 => (S, Fixed(4)),
        0x0E => (S, Fixed(5)),
        0x0F..=0x1B | 0x1F | 0x48 | 0x51 | 0x54 | 0x55 | 0x7E => (R, Fixed(2)),
        0x21 => (S, Fixed(6)),
        0x2F => (
            M,
            Counted {
                min: 3,
                max: 2 + MAX_2F_CODES as u8,
            },
        ),
        0x6F | 0xAF => (
            M,
            Counted {
                min: 4,
                max: 2 + 2 * MAX_6F_CODES as u8,
            },
        ),
        0x7F => (S, Fixed(2 + DateTime::LEN + 2)),
        0xA0 => (M, Fixed(6)),
        _ => return None,
    };
    Some(Shape { kind, len })
}

/// Which poll a message or an error is about, named for a technician.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollKind {
    General,
    Long(u8),
}

impl fmt::Display for PollKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollKind::General => f.write_str("general poll"),
            PollKind::Long(cmd) => match long_poll_name(*cmd) {
                Some(name) => write!(f, "long poll {cmd:02X} ({name})"),
                None => write!(f, "long poll {cmd:02X}"),
            },
        }
    }
}

/// The name of a long poll this core knows.
pub fn long_poll_name(cmd: u8) -> Option<&'static str> {
    Some(match cmd {
        0x01 => "lock play",
        0x02 => "enable play",
        0x03 => "sound off",
        0x04 => "sound on",
        0x06 => "enable bill acceptor",
        0x07 => "disable bill acceptor",
        0x0E => "real-time event reporting",
        0x0F => "basic meters",
        0x10 => "cancelled credits meter",
        0x11 => "coin in meter",
        0x12 => "coin out meter",
        0x13 => "drop meter",
        0x14 => "jackpot meter",
        0x15 => "games played meter",
        0x16 => "games won meter",
        0x17 => "games lost meter",
        0x18 => "games since power-up and door closure",
        0x19 => "totals meters",
        0x1A => "current credits",
        0x1B => "handpay information",
        0x1F => "machine info",
        0x21 => "ROM signature",
        0x2F => "selected meters",
        0x48 => "last accepted bill",
        0x51 => "games implemented",
        0x54 => "SAS version and serial number",
        0x55 => "selected game",
        0x6F => "extended meters",
        0xAF => "extended meters (alternate)",
        0x7E => "read date and time",
        0x7F => "set date and time",
        0xA0 => "enabled features",
        _ => return None,
    })
}

/// A value that cannot be put on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field}: {error}")]
    Bcd {
        field: &'static str,
        error: BcdError,
    },
    #[error("long poll {command:02X}: {count} meter codes, allowed 1 to {max}")]
    MeterCount {
        command: u8,
        count: usize,
        max: usize,
    },
    #[error("long poll {command:02X}: meter {code:02X} has no known width")]
    UnsizedMeter { command: u8, code: u16 },
    #[error("long poll {command:02X}: {count} meters do not match the {want} of the layout")]
    LayoutMismatch {
        command: u8,
        count: usize,
        want: usize,
    },
    #[error("{field} is {len} bytes, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

/// One poll as it goes on the line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Poll {
    /// `80|addr`; address 00 (`80`) is the global general poll that syncs
    /// and acknowledges every EGM.
    General { address: u8 },
    /// A long poll; address 00 makes it a global (type G).
    Long { address: u8, poll: LongPoll },
}

impl Poll {
    pub fn address(&self) -> u8 {
        match self {
            Poll::General { address } | Poll::Long { address, .. } => *address,
        }
    }

    pub fn kind(&self) -> PollKind {
        match self {
            Poll::General { .. } => PollKind::General,
            Poll::Long { poll, .. } => PollKind::Long(poll.command()),
        }
    }

    /// The R/S/M/G type of a long poll (G when sent to address 00); `None`
    /// for a general poll, which the classification does not cover.
    pub fn poll_type(&self) -> Option<PollType> {
        match self {
            Poll::General { .. } => None,
            Poll::Long { address: 0, .. } => Some(PollType::G),
            Poll::Long { poll, .. } => Some(poll.poll_type()),
        }
    }

    /// Sent to address 00: every EGM hears it, none answers.
    pub fn is_global(&self) -> bool {
        self.address() == 0
    }

    /// The bytes on the line; the first one goes with the wakeup bit set.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(8);
        match self {
            Poll::General { address } => out.push(0x80 | (address & 0x7F)),
            Poll::Long { address, poll } => poll.encode(*address, &mut out)?,
        }
        Ok(out)
    }

    /// Step one on the EGM side: is a whole poll at the start of `buf`?
    pub fn check(buf: &[u8]) -> Check<PollError> {
        let Some(&first) = buf.first() else {
            return Check::NeedMore;
        };
        if first & 0x80 != 0 {
            return Check::Complete(1);
        }
        let Some(&command) = buf.get(1) else {
            return Check::NeedMore;
        };
        let address = first;
        let Some(shape) = command_shape(command) else {
            return Check::Invalid(PollError::UnknownCommand { address, command });
        };
        let len = match shape.len {
            RequestLen::Fixed(n) => n,
            RequestLen::Counted { min, max } => match buf.get(2) {
                None => return Check::NeedMore,
                Some(&n) if (min..=max).contains(&n) => 3 + usize::from(n) + 2,
                Some(&n) => {
                    return Check::Invalid(PollError::BadLength {
                        address,
                        command,
                        len: n,
                    });
                }
            },
        };
        let Some(frame) = buf.get(..len) else {
            return Check::NeedMore;
        };
        if shape.kind != PollType::R && !crc_ok(frame) {
            return Check::Invalid(PollError::BadCrc { address, command });
        }
        Check::Complete(len)
    }

    /// Step two: reads the poll from a frame that `check` found complete.
    pub fn parse(frame: &[u8]) -> Result<Poll, PollError> {
        let mut r = Reader::new(frame);
        let first = r.u8().map_err(|_| PollError::Empty)?;
        if first & 0x80 != 0 {
            return Ok(Poll::General {
                address: first & 0x7F,
            });
        }
        let address = first;
        let command = r.u8().map_err(|_| PollError::Empty)?;
        let field = |error: FieldError| PollError::Field {
            address,
            command,
            error,
        };
        let poll = match command {
            0x01 => LongPoll::Shutdown,
            0x02 => LongPoll::Startup,
            0x03 => LongPoll::SoundOff,
            0x04 => LongPoll::SoundOn,
            0x06 => LongPoll::EnableBillAcceptor,
            0x07 => LongPoll::DisableBillAcceptor,
            0x0E => match r.u8().map_err(field)? {
                0 => LongPoll::RealTimeEvents(false),
                1 => LongPoll::RealTimeEvents(true),
                // The EGM NACKs anything above 01 (§8).
                value => {
                    return Err(PollError::BadValue {
                        address,
                        command,
                        value,
                    });
                }
            },
            0x1B => LongPoll::HandpayInfo,
            0x1F => LongPoll::MachineInfo,
            0x21 => LongPoll::RomSignature {
                seed: r.u16_le().map_err(field)?,
            },
            0x2F => {
                let n = r.u8().map_err(field)?;
                let game = r.game().map_err(field)?;
                let codes = r.take(usize::from(n).saturating_sub(2)).map_err(field)?;
                LongPoll::SelectedMeters {
                    game,
                    codes: codes.iter().map(|&c| MeterCode(c)).collect(),
                }
            }
            0x6F | 0xAF => {
                let n = r.u8().map_err(field)?;
                if n % 2 != 0 {
                    return Err(PollError::BadLength {
                        address,
                        command,
                        len: n,
                    });
                }
                let game = r.game().map_err(field)?;
                let codes = r.take(usize::from(n).saturating_sub(2)).map_err(field)?;
                LongPoll::ExtendedMeters {
                    alternate: command == 0xAF,
                    game,
                    codes: codes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                }
            }
            0x48 => LongPoll::LastBill,
            0x51 => LongPoll::GamesImplemented,
            0x54 => LongPoll::SasVersion,
            0x55 => LongPoll::SelectedGame,
            0x7E => LongPoll::ReadDateTime,
            0xA0 => LongPoll::EnabledFeatures {
                game: r.game().map_err(field)?,
            },
            0x7F => LongPoll::SetDateTime(
                DateTime::decode(&r.array().map_err(field)?)
                    .map_err(|e| field(FieldError::Bcd(e)))?,
            ),
            cmd => match MeterPoll::from_command(cmd) {
                Some(m) => LongPoll::Meters(m),
                None => return Err(PollError::UnknownCommand { address, command }),
            },
        };
        Ok(Poll::Long { address, poll })
    }
}

impl fmt::Display for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poll::General { address: 0 } => f.write_str("global general poll"),
            p => write!(f, "{} to address {}", p.kind(), p.address()),
        }
    }
}

/// A poll the EGM side could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("empty poll")]
    Empty,
    #[error("address {address}: unknown long poll {command:02X}")]
    UnknownCommand { address: u8, command: u8 },
    #[error("address {address}: {}: bad CRC", PollKind::Long(*command))]
    BadCrc { address: u8, command: u8 },
    #[error("address {address}: {}: bad length byte {len:02X}", PollKind::Long(*command))]
    BadLength { address: u8, command: u8, len: u8 },
    #[error("address {address}: {}: bad value {value:02X}", PollKind::Long(*command))]
    BadValue { address: u8, command: u8, value: u8 },
    #[error("address {address}: {}: {error}", PollKind::Long(*command))]
    Field {
        address: u8,
        command: u8,
        error: FieldError,
    },
    #[error("{len} bytes of an unfinished poll dropped at an idle gap")]
    Truncated { len: usize },
}

/// Most bytes a known poll can have; more buffered means garbage.
const MAX_POLL_LEN: usize = 3 + 2 + 2 * MAX_6F_CODES + 2;

/// Splits a byte stream into polls on the EGM side, whatever the chunking.
///
/// After bytes that cannot be a poll it drops one byte and tries again, the
/// way an EGM hunts for its next address byte; `idle` (the transport saw the
/// inter-byte gap, §4) drops an unfinished poll.
#[derive(Debug, Default)]
pub struct PollDecoder {
    buf: VecDeque<u8>,
}

impl PollDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
    }

    /// The next poll or error, `None` when more bytes are needed.
    pub fn next_poll(&mut self) -> Option<Result<Poll, PollError>> {
        let window: Vec<u8> = self.buf.iter().take(MAX_POLL_LEN).copied().collect();
        match Poll::check(&window) {
            Check::NeedMore => None,
            Check::Complete(n) => {
                self.buf.drain(..n);
                Some(Poll::parse(window.get(..n).unwrap_or_default()))
            }
            Check::Invalid(e) => {
                self.buf.pop_front();
                Some(Err(e))
            }
        }
    }

    /// The line went idle: an unfinished poll will not be completed.
    pub fn idle(&mut self) -> Option<PollError> {
        let len = self.buf.len();
        self.buf.clear();
        (len > 0).then_some(PollError::Truncated { len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(address: u8, poll: LongPoll) -> Vec<u8> {
        Poll::Long { address, poll }.encode().unwrap()
    }

    #[test]
    fn document_frames() {
        // §2: type S without data still has its CRC.
        assert_eq!(enc(1, LongPoll::Shutdown), [0x01, 0x01, 0x51, 0x08]);
        assert_eq!(
            enc(1, LongPoll::RealTimeEvents(true)),
            [0x01, 0x0E, 0x01, 0x45, 0xD1]
        );
        // §3: 2F for game 0, meters 00, 01, 0C.
        assert_eq!(
            enc(
                1,
                LongPoll::SelectedMeters {
                    game: 0,
                    codes: vec![MeterCode(0x00), MeterCode(0x01), MeterCode(0x0C)]
                }
            ),
            [0x01, 0x2F, 0x05, 0x00, 0x00, 0x00, 0x01, 0x0C, 0xFB, 0x3C]
        );
        // §3: 1F goes without CRC.
        assert_eq!(enc(1, LongPoll::MachineInfo), [0x01, 0x1F]);
        let dt = DateTime {
            year: 2024,
            month: 3,
            day: 5,
            hour: 14,
            minute: 7,
            second: 9,
        };
        assert_eq!(
            enc(1, LongPoll::SetDateTime(dt)),
            [
                0x01, 0x7F, 0x03, 0x05, 0x20, 0x24, 0x14, 0x07, 0x09, 0xCC, 0x63
            ]
        );
        assert_eq!(Poll::General { address: 1 }.encode().unwrap(), [0x81]);
        assert_eq!(Poll::General { address: 0 }.encode().unwrap(), [0x80]);
    }

    #[test]
    fn poll_types() {
        assert_eq!(LongPoll::Meters(MeterPoll::Basic).poll_type(), PollType::R);
        assert_eq!(LongPoll::SasVersion.poll_type(), PollType::R);
        assert_eq!(LongPoll::SoundOn.poll_type(), PollType::S);
        assert_eq!(
            LongPoll::SelectedMeters {
                game: 1,
                codes: vec![MeterCode(0)]
            }
            .poll_type(),
            PollType::M
        );
        let global = Poll::Long {
            address: 0,
            poll: LongPoll::ReadDateTime,
        };
        assert_eq!(global.poll_type(), Some(PollType::G));
        assert_eq!(Poll::General { address: 1 }.poll_type(), None);
        assert_eq!(MeterPoll::Basic.reply_data_len(), 24);
        assert_eq!(MeterPoll::Totals.reply_data_len(), 20);
        assert_eq!(MeterPoll::GamesSince.reply_data_len(), 4);
    }

    #[test]
    fn decodes_document_frames() {
        let frame = [0x01, 0x2F, 0x05, 0x00, 0x00, 0x00, 0x01, 0x0C, 0xFB, 0x3C];
        assert_eq!(Poll::check(&frame), Check::Complete(10));
        assert_eq!(Poll::check(&frame[..9]), Check::NeedMore);
        let mut bad = frame;
        bad[3] = 0x01;
        assert_eq!(
            Poll::check(&bad),
            Check::Invalid(PollError::BadCrc {
                address: 1,
                command: 0x2F
            })
        );
        assert_eq!(
            Poll::parse(&frame),
            Ok(Poll::Long {
                address: 1,
                poll: LongPoll::SelectedMeters {
                    game: 0,
                    codes: vec![MeterCode(0x00), MeterCode(0x01), MeterCode(0x0C)]
                }
            })
        );
        assert_eq!(Poll::check(&[0x81, 0x01]), Check::Complete(1));
        assert_eq!(Poll::parse(&[0x81]), Ok(Poll::General { address: 1 }));
        assert_eq!(
            Poll::check(&[0x01, 0x99]),
            Check::Invalid(PollError::UnknownCommand {
                address: 1,
                command: 0x99
            })
        );
        let mut rte_bad = vec![0x01, 0x0E, 0x02];
        push_crc(&mut rte_bad);
        assert!(matches!(
            Poll::parse(&rte_bad),
            Err(PollError::BadValue { value: 2, .. })
        ));
    }

    #[test]
    fn decoder_splits_a_stream_and_resyncs() {
        let mut d = PollDecoder::new();
        let mut stream = vec![0x81];
        stream.extend(enc(1, LongPoll::Shutdown));
        // Garbage: `05 99` is no known long poll, so 05 is dropped; without
        // wakeup framing 99 then reads as a general poll to 19.
        stream.extend([0x05, 0x99]);
        stream.extend(enc(2, LongPoll::Meters(MeterPoll::CoinIn)));
        for b in &stream {
            d.push(&[*b]);
        }
        assert_eq!(d.next_poll(), Some(Ok(Poll::General { address: 1 })));
        assert_eq!(
            d.next_poll(),
            Some(Ok(Poll::Long {
                address: 1,
                poll: LongPoll::Shutdown
            }))
        );
        assert_eq!(
            d.next_poll(),
            Some(Err(PollError::UnknownCommand {
                address: 5,
                command: 0x99
            }))
        );
        assert_eq!(d.next_poll(), Some(Ok(Poll::General { address: 0x19 })));
        assert_eq!(
            d.next_poll(),
            Some(Ok(Poll::Long {
                address: 2,
                poll: LongPoll::Meters(MeterPoll::CoinIn)
            }))
        );
        assert_eq!(d.next_poll(), None);
        d.push(&[0x01]);
        assert_eq!(d.next_poll(), None);
        assert_eq!(d.idle(), Some(PollError::Truncated { len: 1 }));
        assert_eq!(d.idle(), None);
    }

    #[test]
    fn encode_rejects_what_cannot_be_sent() {
        let too_many = LongPoll::SelectedMeters {
            game: 0,
            codes: vec![MeterCode(0); 11],
        };
        assert!(matches!(
            too_many.encode(1, &mut vec![]),
            Err(EncodeError::MeterCount { count: 11, .. })
        ));
        let bad_game = LongPoll::ExtendedMeters {
            alternate: false,
            game: 10_000,
            codes: vec![0],
        };
        assert!(matches!(
            bad_game.encode(1, &mut vec![]),
            Err(EncodeError::Bcd { .. })
        ));
    }
}
