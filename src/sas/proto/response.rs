//! Replies, both ways: the host parses them, the EGM simulator encodes them.
//!
//! A reply's length depends on the poll it answers, so the host-side
//! [`ResponseParser`] is built from an [`Expect`] (the outstanding poll) and
//! fed bytes in whatever chunks the line delivers. Some replies are only
//! complete when the line goes quiet: a lone `addr` byte is an ACK to a long
//! poll, or an exception code equal to the address in reply to a general
//! poll, unless more follows (§2.1). The shell reports that quiet with
//! [`ResponseParser::idle`] after one inter-byte time (5 ms + slack).

use std::fmt;

use super::bcd::{BcdError, DateTime, encode_bcd};
use super::crc::{crc_ok, push_crc};
use super::frame::{Check, FieldError, Reader};
use super::poll::{EncodeError, MeterPoll, Poll, PollKind};
use super::tables::{ExceptionCode, MeterCode};

/// The reply shape the host waits for: which address, and which poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    General { address: u8 },
    Long { address: u8, command: u8 },
}

impl Expect {
    /// What answers `poll`; `None` for a global poll, which nobody answers.
    pub fn for_poll(poll: &Poll) -> Option<Expect> {
        match poll {
            _ if poll.is_global() => None,
            Poll::General { address } => Some(Expect::General { address: *address }),
            Poll::Long { address, poll } => Some(Expect::Long {
                address: *address,
                command: poll.command(),
            }),
        }
    }

    pub fn address(&self) -> u8 {
        match self {
            Expect::General { address } | Expect::Long { address, .. } => *address,
        }
    }

    pub fn kind(&self) -> PollKind {
        match self {
            Expect::General { .. } => PollKind::General,
            Expect::Long { command, .. } => PollKind::Long(*command),
        }
    }
}

/// A reply, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The one-byte general-poll reply; `00` = nothing pending.
    Exception(ExceptionCode),
    /// A real-time event frame `addr FF code data CRC`: the general-poll reply
    /// in RTE mode, or sent instead of a long-poll reply (the long poll was
    /// then not answered, §6).
    Event(Event),
    /// `addr 21 sig CRC`: the ROM signature, either as the 21 reply or later,
    /// in reply to another poll (§8).
    RomSignature(u16),
    Ack,
    Nack,
    Busy,
    /// The data reply to the long poll sent.
    Data(Reply),
}

impl Response {
    /// The bytes an EGM at `address` sends.
    pub fn encode(&self, address: u8) -> Result<Vec<u8>, EncodeError> {
        let address = address & 0x7F;
        let mut out = Vec::with_capacity(16);
        match self {
            Response::Exception(code) => return Ok(vec![code.0]),
            Response::Ack => return Ok(vec![address]),
            Response::Nack => return Ok(vec![address | 0x80]),
            Response::Busy => return Ok(vec![address, 0x00]),
            Response::Event(event) => {
                out.extend([address, 0xFF, event.code.0]);
                event.encode_data(&mut out)?;
            }
            Response::RomSignature(sig) => {
                out.extend([address, 0x21]);
                out.extend_from_slice(&sig.to_le_bytes());
            }
            Response::Data(reply) => {
                out.extend([address, reply.command()]);
                reply.encode_data(&mut out)?;
            }
        }
        push_crc(&mut out);
        Ok(out)
    }
}

/// A real-time event: the exception code and its extended data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub code: ExceptionCode,
    pub data: EventData,
}

/// Extended data of the RTE events that carry some (§6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventData {
    None,
    /// 4F: country and bill denomination codes are kept raw (never rejected,
    /// §14), then the lifetime count of that bill.
    BillAccepted {
        country: u8,
        denomination: u8,
        count: u64,
    },
    /// 7C
    LegacyBonus {
        multiplier: u8,
        multiplied_win: u64,
        tax_status: u8,
        bonus: u64,
    },
    /// 7E
    GameStarted {
        credits_wagered: u16,
        coin_in_meter: u64,
        wager_type: u8,
        progressive_group: u8,
    },
    /// 7F
    GameEnded {
        win: u64,
    },
    /// 88
    ReelStopped {
        reel: u8,
        stop: u8,
    },
    /// 8A
    GameRecall {
        game: u16,
        entry: u16,
    },
    /// 8B: `card` is the low 7 bits.
    CardHeld {
        held: bool,
        card: u8,
    },
    /// 8C
    GameSelected {
        game: u16,
    },
    /// 89, whose layout is unverified: the bytes as received.
    Raw(Vec<u8>),
}

/// Extended data bytes of an RTE event, `None` when unknown (89: the frame
/// then ends at the idle gap and must pass its CRC). Unlisted codes carry none.
fn event_data_len(code: u8) -> Option<usize> {
    match code {
        0x4F => Some(6),
        0x7C => Some(10),
        0x7E => Some(8),
        0x7F => Some(4),
        0x88 => Some(2),
        0x8A => Some(4),
        0x8B => Some(1),
        0x8C => Some(2),
        0x89 => None,
        _ => Some(0),
    }
}

impl Event {
    fn parse(code: u8, r: &mut Reader<'_>) -> Result<Event, FieldError> {
        let data = match code {
            0x4F => EventData::BillAccepted {
                country: r.u8()?,
                denomination: r.u8()?,
                count: r.bcd(4)?,
            },
            0x7C => EventData::LegacyBonus {
                multiplier: r.u8()?,
                multiplied_win: r.bcd(4)?,
                tax_status: r.u8()?,
                bonus: r.bcd(4)?,
            },
            0x7E => EventData::GameStarted {
                credits_wagered: r.game()?,
                coin_in_meter: r.bcd(4)?,
                wager_type: r.u8()?,
                progressive_group: r.u8()?,
            },
            0x7F => EventData::GameEnded { win: r.bcd(4)? },
            0x88 => EventData::ReelStopped {
                reel: r.u8()?,
                stop: r.u8()?,
            },
            0x8A => EventData::GameRecall {
                game: r.game()?,
                entry: r.game()?,
            },
            0x8B => {
                let b = r.u8()?;
                EventData::CardHeld {
                    held: b & 0x80 != 0,
                    card: b & 0x7F,
                }
            }
            0x8C => EventData::GameSelected { game: r.game()? },
            0x89 => EventData::Raw(r.take(r.remaining())?.to_vec()),
            _ => EventData::None,
        };
        Ok(Event {
            code: ExceptionCode(code),
            data,
        })
    }

    fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let bcd = |v: u64, w: usize, out: &mut Vec<u8>| {
            encode_bcd(v, w, out).map_err(|error| EncodeError::Bcd {
                field: "event data",
                error,
            })
        };
        match &self.data {
            EventData::None => {}
            EventData::BillAccepted {
                country,
                denomination,
                count,
            } => {
                out.extend([*country, *denomination]);
                bcd(*count, 4, out)?;
            }
            EventData::LegacyBonus {
                multiplier,
                multiplied_win,
                tax_status,
                bonus,
            } => {
                out.push(*multiplier);
                bcd(*multiplied_win, 4, out)?;
                out.push(*tax_status);
                bcd(*bonus, 4, out)?;
            }
            EventData::GameStarted {
                credits_wagered,
                coin_in_meter,
                wager_type,
                progressive_group,
            } => {
                bcd(u64::from(*credits_wagered), 2, out)?;
                bcd(*coin_in_meter, 4, out)?;
                out.extend([*wager_type, *progressive_group]);
            }
            EventData::GameEnded { win } => bcd(*win, 4, out)?,
            EventData::ReelStopped { reel, stop } => out.extend([*reel, *stop]),
            EventData::GameRecall { game, entry } => {
                bcd(u64::from(*game), 2, out)?;
                bcd(u64::from(*entry), 2, out)?;
            }
            EventData::CardHeld { held, card } => out.push(u8::from(*held) << 7 | (card & 0x7F)),
            EventData::GameSelected { game } => bcd(u64::from(*game), 2, out)?,
            EventData::Raw(bytes) => out.extend_from_slice(bytes),
        }
        // The data must be what the code's layout says, or the frame would
        // read back as something else.
        let len = out.len() - start;
        match event_data_len(self.code.0) {
            Some(want) if want != len => Err(EncodeError::LayoutMismatch {
                command: self.code.0,
                count: len,
                want,
            }),
            _ => Ok(()),
        }
    }
}

/// A meter value with the width it came in, which sets where it wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Meter {
    pub code: MeterCode,
    pub value: u64,
    /// BCD bytes on the wire.
    pub width: u8,
}

impl Meter {
    /// Decimal digits, for [`meter_delta`](super::bcd::meter_delta).
    pub fn digits(&self) -> u32 {
        u32::from(self.width) * 2
    }
}

/// One meter of a 6F/AF reply: a two-byte code and its own size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtendedMeter {
    pub code: u16,
    /// BCD bytes, 0–9; 0 = the EGM sent no value (NC skips those).
    pub size: u8,
    pub value: u64,
}

/// Largest meter size in a 6F/AF reply (§7).
pub const MAX_EXTENDED_METER_SIZE: u8 = 9;

/// A fixed-width ASCII field, kept as received (MON pads with NULs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ascii<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Display for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.iter().filter(|&&b| b != 0) {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// 1F: gaming machine ID and information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MachineInfo {
    pub game_id: Ascii<2>,
    /// `000` if none.
    pub additional_id: Ascii<3>,
    /// Accounting denomination code: see [`denomination_cents`](super::tables::denomination_cents).
    pub denomination: u8,
    /// FF = 255 or more.
    pub max_bet: u8,
    pub progressive_group: u8,
    /// Game options, binary.
    pub options: u16,
    pub paytable_id: Ascii<6>,
    /// Base payback, e.g. `9550` = 95.50 %.
    pub base_percent: Ascii<4>,
}

impl MachineInfo {
    /// The base payback in hundredths of a percent, if the field is digits.
    pub fn base_percent_hundredths(&self) -> Option<u16> {
        std::str::from_utf8(&self.base_percent.0).ok()?.parse().ok()
    }
}

/// 48: the last bill accepted. Country and denomination codes are raw (§14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LastBill {
    pub country: u8,
    pub denomination: u8,
    pub count: u64,
}

/// 54: SAS version (e.g. `602`) and serial number (0–40 ASCII).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SasVersion {
    pub version: Ascii<3>,
    pub serial: Vec<u8>,
}

/// Longest serial number in a 54 reply.
pub const MAX_SERIAL_LEN: usize = 40;

impl SasVersion {
    /// The version as a number (602, 603), if it is digits.
    pub fn number(&self) -> Option<u16> {
        std::str::from_utf8(&self.version.0).ok()?.parse().ok()
    }
}

/// 1B: one handpay (§9). Amounts are in cents for a progressive level
/// (01–20), in accounting-denomination credits otherwise; the partial pay is
/// always credits. The session fields are 6.03 only (zeros before).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HandpayInfo {
    /// 00 = standalone or non-SAS progressive, 01–FF = SAS group.
    pub progressive_group: u8,
    /// 01–20 = progressive level, 40 = non-progressive win, 80 = cancelled credits.
    pub level: u8,
    pub amount: u64,
    pub partial_pay: u64,
    /// 00 = key-off only, 01 = may be reset to the credit meter.
    pub reset_id: u8,
    pub session_win: u64,
    pub session_paid: u64,
}

impl HandpayInfo {
    /// All zeros: no handpay (legacy reporting outside a lockup, §9).
    pub fn is_none(&self) -> bool {
        *self == HandpayInfo::default()
    }

    /// Whether `amount` is in cents (a progressive level) or in credits.
    pub fn amount_in_cents(&self) -> bool {
        (0x01..=0x20).contains(&self.level)
    }

    pub fn kind(&self) -> &'static str {
        match self.level {
            0x01..=0x20 => "progressive",
            0x40 => "non-progressive win",
            0x80 => "cancelled credits",
            _ => "unknown",
        }
    }
}

/// A0: the feature bytes F1–F4 of a game (§13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Features {
    pub game: u16,
    pub bytes: [u8; 4],
}

impl Features {
    /// F3 bit 0: the EGM may be polled every 40 ms instead of every 200 ms.
    pub fn fast_polling(&self) -> bool {
        self.bytes[2] & 0x01 != 0
    }

    /// F2 bit 3: extended meters (6F/AF) are supported.
    pub fn extended_meters(&self) -> bool {
        self.bytes[1] & 0x08 != 0
    }
}

/// The data reply to a long poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 0F, 10–1A, in the poll's layout order.
    Meters {
        poll: MeterPoll,
        meters: Vec<Meter>,
    },
    Handpay(HandpayInfo),
    MachineInfo(MachineInfo),
    /// 2F. Meters the EGM lacks are left out (§7). `unparsed` holds the rest
    /// of the reply from the first code whose width is unknown (§7 host rule:
    /// stop there).
    SelectedMeters {
        game: u16,
        meters: Vec<Meter>,
        unparsed: Vec<u8>,
    },
    LastBill(LastBill),
    GamesImplemented(u16),
    SasVersion(SasVersion),
    SelectedGame(u16),
    /// 6F, or AF when `alternate`.
    ExtendedMeters {
        alternate: bool,
        game: u16,
        meters: Vec<ExtendedMeter>,
    },
    DateTime(DateTime),
    Features(Features),
}

impl Reply {
    pub fn command(&self) -> u8 {
        match self {
            Reply::Meters { poll, .. } => poll.command(),
            Reply::Handpay(_) => 0x1B,
            Reply::MachineInfo(_) => 0x1F,
            Reply::SelectedMeters { .. } => 0x2F,
            Reply::LastBill(_) => 0x48,
            Reply::GamesImplemented(_) => 0x51,
            Reply::SasVersion(_) => 0x54,
            Reply::SelectedGame(_) => 0x55,
            Reply::ExtendedMeters {
                alternate: false, ..
            } => 0x6F,
            Reply::ExtendedMeters {
                alternate: true, ..
            } => 0xAF,
            Reply::DateTime(_) => 0x7E,
            Reply::Features(_) => 0xA0,
        }
    }

    fn parse(command: u8, r: &mut Reader<'_>) -> Result<Reply, Reason> {
        Ok(match command {
            0x1B => Reply::Handpay(HandpayInfo {
                progressive_group: r.u8()?,
                level: r.u8()?,
                amount: r.bcd(5)?,
                partial_pay: r.bcd(2)?,
                reset_id: r.u8()?,
                session_win: r.bcd(5)?,
                session_paid: r.bcd(5)?,
            }),
            0xA0 => {
                let game = r.game()?;
                let bytes = r.array()?;
                let _reserved: [u8; 2] = r.array()?;
                Reply::Features(Features { game, bytes })
            }
            0x1F => Reply::MachineInfo(MachineInfo {
                game_id: Ascii(r.array()?),
                additional_id: Ascii(r.array()?),
                denomination: r.u8()?,
                max_bet: r.u8()?,
                progressive_group: r.u8()?,
                options: r.u16_le()?,
                paytable_id: Ascii(r.array()?),
                base_percent: Ascii(r.array()?),
            }),
            0x2F => {
                let _len = r.u8()?;
                let game = r.game()?;
                let mut meters = Vec::new();
                let mut unparsed = Vec::new();
                while r.remaining() > 0 {
                    let code = MeterCode(r.u8()?);
                    let Some(width) = code.width_2f() else {
                        unparsed.push(code.0);
                        unparsed.extend_from_slice(r.take(r.remaining())?);
                        break;
                    };
                    meters.push(Meter {
                        code,
                        value: r.bcd(width)?,
                        width: width as u8,
                    });
                }
                Reply::SelectedMeters {
                    game,
                    meters,
                    unparsed,
                }
            }
            0x48 => Reply::LastBill(LastBill {
                country: r.u8()?,
                denomination: r.u8()?,
                count: r.bcd(4)?,
            }),
            0x51 => Reply::GamesImplemented(r.game()?),
            0x54 => {
                let _len = r.u8()?;
                Reply::SasVersion(SasVersion {
                    version: Ascii(r.array()?),
                    serial: r.take(r.remaining())?.to_vec(),
                })
            }
            0x55 => Reply::SelectedGame(r.game()?),
            0x6F | 0xAF => {
                let _len = r.u8()?;
                let game = r.game()?;
                let mut meters = Vec::new();
                while r.remaining() > 0 {
                    let code = r.u16_le()?;
                    let size = r.u8()?;
                    if size > MAX_EXTENDED_METER_SIZE {
                        return Err(Reason::BadMeterSize { code, size });
                    }
                    let value = r.bcd(usize::from(size))?;
                    meters.push(ExtendedMeter { code, size, value });
                }
                Reply::ExtendedMeters {
                    alternate: command == 0xAF,
                    game,
                    meters,
                }
            }
            0x7E => Reply::DateTime(DateTime::decode(&r.array()?).map_err(FieldError::Bcd)?),
            cmd => {
                let poll = MeterPoll::from_command(cmd).ok_or(Reason::NotExpected(cmd))?;
                let mut meters = Vec::new();
                for &(code, width) in poll.layout() {
                    meters.push(Meter {
                        code,
                        value: r.bcd(width)?,
                        width: width as u8,
                    });
                }
                Reply::Meters { poll, meters }
            }
        })
    }

    fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let command = self.command();
        let bcd = |v: u64, w: usize, out: &mut Vec<u8>| {
            encode_bcd(v, w, out).map_err(|error: BcdError| EncodeError::Bcd {
                field: "reply data",
                error,
            })
        };
        match self {
            Reply::Meters { poll, meters } => {
                let layout = poll.layout();
                let same = meters.len() == layout.len()
                    && meters
                        .iter()
                        .zip(layout)
                        .all(|(m, (code, _))| m.code == *code);
                if !same {
                    return Err(EncodeError::LayoutMismatch {
                        command,
                        count: meters.len(),
                        want: layout.len(),
                    });
                }
                for (m, (_, width)) in meters.iter().zip(layout) {
                    bcd(m.value, *width, out)?;
                }
            }
            Reply::Handpay(h) => {
                out.extend([h.progressive_group, h.level]);
                bcd(h.amount, 5, out)?;
                bcd(h.partial_pay, 2, out)?;
                out.push(h.reset_id);
                bcd(h.session_win, 5, out)?;
                bcd(h.session_paid, 5, out)?;
            }
            Reply::Features(f) => {
                bcd(u64::from(f.game), 2, out)?;
                out.extend_from_slice(&f.bytes);
                out.extend([0, 0]);
            }
            Reply::MachineInfo(i) => {
                out.extend_from_slice(&i.game_id.0);
                out.extend_from_slice(&i.additional_id.0);
                out.extend([i.denomination, i.max_bet, i.progressive_group]);
                out.extend_from_slice(&i.options.to_le_bytes());
                out.extend_from_slice(&i.paytable_id.0);
                out.extend_from_slice(&i.base_percent.0);
            }
            Reply::SelectedMeters {
                game,
                meters,
                unparsed,
            } => {
                let at = out.len();
                out.push(0);
                bcd(u64::from(*game), 2, out)?;
                for m in meters {
                    let width = m.code.width_2f().ok_or(EncodeError::UnsizedMeter {
                        command,
                        code: u16::from(m.code.0),
                    })?;
                    out.push(m.code.0);
                    bcd(m.value, width, out)?;
                }
                out.extend_from_slice(unparsed);
                set_len(out, at, "2F reply")?;
            }
            Reply::LastBill(b) => {
                out.extend([b.country, b.denomination]);
                bcd(b.count, 4, out)?;
            }
            Reply::GamesImplemented(n) | Reply::SelectedGame(n) => bcd(u64::from(*n), 2, out)?,
            Reply::SasVersion(v) => {
                if v.serial.len() > MAX_SERIAL_LEN {
                    return Err(EncodeError::TooLong {
                        field: "serial number",
                        len: v.serial.len(),
                        max: MAX_SERIAL_LEN,
                    });
                }
                out.push((3 + v.serial.len()) as u8);
                out.extend_from_slice(&v.version.0);
                out.extend_from_slice(&v.serial);
            }
            Reply::ExtendedMeters { game, meters, .. } => {
                let at = out.len();
                out.push(0);
                bcd(u64::from(*game), 2, out)?;
                for m in meters {
                    if m.size > MAX_EXTENDED_METER_SIZE {
                        return Err(EncodeError::UnsizedMeter {
                            command,
                            code: m.code,
                        });
                    }
                    out.extend_from_slice(&m.code.to_le_bytes());
                    out.push(m.size);
                    bcd(m.value, usize::from(m.size), out)?;
                }
                set_len(out, at, "6F/AF reply")?;
            }
            Reply::DateTime(dt) => dt.encode(out).map_err(|error| EncodeError::Bcd {
                field: "date and time",
                error,
            })?,
        }
        Ok(())
    }
}

/// Fills in the length byte at `at` with the count of bytes after it.
fn set_len(out: &mut [u8], at: usize, field: &'static str) -> Result<(), EncodeError> {
    let len = out.len() - at - 1;
    let byte = u8::try_from(len).map_err(|_| EncodeError::TooLong {
        field,
        len,
        max: 255,
    })?;
    if let Some(slot) = out.get_mut(at) {
        *slot = byte;
    }
    Ok(())
}

/// The length rule of a data reply, by command.
enum ReplyLen {
    Fixed(usize),
    /// `addr cmd len data CRC` with `len` at least `min`.
    Counted {
        min: u8,
        max: u8,
    },
}

fn reply_len(command: u8) -> Option<ReplyLen> {
    Some(match command {
        0x1B | 0x1F => ReplyLen::Fixed(24),
        0xA0 => ReplyLen::Fixed(12),
        0x48 => ReplyLen::Fixed(10),
        0x51 | 0x55 => ReplyLen::Fixed(6),
        0x7E => ReplyLen::Fixed(4 + DateTime::LEN),
        0x2F | 0x6F | 0xAF => ReplyLen::Counted { min: 2, max: 0xFF },
        0x54 => ReplyLen::Counted {
            min: 3,
            max: 3 + MAX_SERIAL_LEN as u8,
        },
        cmd => ReplyLen::Fixed(4 + MeterPoll::from_command(cmd)?.reply_data_len()),
    })
}

/// Most bytes any reply can have (a counted reply with length FF).
pub const MAX_REPLY_LEN: usize = 3 + 0xFF + 2;

/// Why a reply could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("reply from address {0} instead")]
    WrongAddress(u8),
    #[error("reply is for command {0:02X}")]
    NotExpected(u8),
    #[error("bad length byte {0:02X}")]
    BadLength(u8),
    #[error("bad CRC")]
    BadCrc,
    #[error("reply cut off after {have} bytes")]
    Truncated { have: usize },
    #[error("reply longer than {MAX_REPLY_LEN} bytes")]
    TooLong,
    #[error("meter {code:04X} has size {size}, at most 9")]
    BadMeterSize { code: u16, size: u8 },
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A reply that could not be read, naming the EGM and the poll.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("EGM at address {address}: reply to {poll}: {reason}")]
pub struct ResponseError {
    pub address: u8,
    pub poll: PollKind,
    pub reason: Reason,
}

/// Step one: is a whole reply to `expect` at the start of `buf`? `idle` says
/// the line has gone quiet, which completes a lone address byte and turns an
/// unfinished frame into an error.
pub fn check(expect: Expect, buf: &[u8], idle: bool) -> Check<Reason> {
    let Some(&first) = buf.first() else {
        return Check::NeedMore;
    };
    let address = expect.address();
    let command = match expect {
        // Not our address: a one-byte exception code.
        Expect::General { .. } if first != address => return Check::Complete(1),
        Expect::General { .. } => None,
        Expect::Long { .. } if first == address | 0x80 => return Check::Complete(1),
        Expect::Long { .. } if first != address => {
            return Check::Invalid(Reason::WrongAddress(first));
        }
        Expect::Long { command, .. } => Some(command),
    };
    let Some(&second) = buf.get(1) else {
        return if idle {
            Check::Complete(1)
        } else {
            Check::NeedMore
        };
    };
    let len = match second {
        0x00 if command.is_some() => return Check::Complete(2),
        0xFF => match buf.get(2) {
            None => None,
            Some(&code) => match event_data_len(code) {
                Some(n) => Some(5 + n),
                None if idle => Some(buf.len()),
                None => return Check::NeedMore,
            },
        },
        0x21 => Some(6),
        b if Some(b) == command => match reply_len(b) {
            Some(ReplyLen::Fixed(n)) => Some(n),
            Some(ReplyLen::Counted { min, max }) => match buf.get(2) {
                None => None,
                Some(&n) if (min..=max).contains(&n) => Some(3 + usize::from(n) + 2),
                Some(&n) => return Check::Invalid(Reason::BadLength(n)),
            },
            None => return Check::Invalid(Reason::NotExpected(b)),
        },
        b => return Check::Invalid(Reason::NotExpected(b)),
    };
    match len.and_then(|n| buf.get(..n)) {
        Some(frame) if crc_ok(frame) => Check::Complete(frame.len()),
        Some(_) => Check::Invalid(Reason::BadCrc),
        None if idle => Check::Invalid(Reason::Truncated { have: buf.len() }),
        None => Check::NeedMore,
    }
}

/// Step two: reads a frame that [`check`] found complete.
pub fn parse(expect: Expect, frame: &[u8]) -> Result<Response, Reason> {
    let mut r = Reader::new(frame);
    let first = r.u8()?;
    if frame.len() == 1 {
        return Ok(match expect {
            Expect::General { .. } => Response::Exception(ExceptionCode(first)),
            Expect::Long { address, .. } if first == address => Response::Ack,
            Expect::Long { .. } => Response::Nack,
        });
    }
    if first != expect.address() {
        return Err(Reason::WrongAddress(first));
    }
    let second = r.u8()?;
    // Drop the CRC: check has verified it.
    let body = frame
        .len()
        .checked_sub(4)
        .map(|n| Reader::new(frame.get(2..2 + n).unwrap_or_default()));
    let (second, mut body) = match (second, body) {
        (0x00, _) if frame.len() == 2 => return Ok(Response::Busy),
        (b, Some(body)) => (b, body),
        (b, None) => return Err(Reason::NotExpected(b)),
    };
    let response = match second {
        0xFF => {
            let code = body.u8()?;
            Response::Event(Event::parse(code, &mut body)?)
        }
        0x21 => Response::RomSignature(body.u16_le()?),
        b => match expect {
            Expect::Long { command, .. } if command == b => {
                Response::Data(Reply::parse(command, &mut body)?)
            }
            _ => return Err(Reason::NotExpected(b)),
        },
    };
    if body.remaining() != 0 {
        return Err(Reason::BadLength(second));
    }
    Ok(response)
}

/// The outcome of feeding a reply to the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    NeedMore,
    Done(Response),
    Invalid(ResponseError),
}

/// Reads one reply to one poll from bytes in any chunking; never panics.
/// A fuzz target is `ResponseParser::new(expect)`, `push` of the input in
/// chunks, then `idle`.
/// Once it has an outcome it keeps it; later bytes are kept as
/// [`trailing`](ResponseParser::trailing) (line noise, a chirp, a reply the
/// host gave up on).
#[derive(Clone, Debug)]
pub struct ResponseParser {
    expect: Expect,
    buf: Vec<u8>,
    frame_len: usize,
    outcome: Option<Parsed>,
}

impl ResponseParser {
    pub fn new(expect: Expect) -> Self {
        ResponseParser {
            expect,
            buf: Vec::new(),
            frame_len: 0,
            outcome: None,
        }
    }

    pub fn expect(&self) -> Expect {
        self.expect
    }

    /// Bytes received so far, the frame and anything after it.
    pub fn received(&self) -> usize {
        self.buf.len()
    }

    /// Bytes that came after the reply was complete or invalid.
    pub fn trailing(&self) -> &[u8] {
        self.buf.get(self.frame_len..).unwrap_or_default()
    }

    /// Feeds more bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Parsed {
        if self.outcome.is_none() {
            // Take only what a reply can hold, so garbage cannot grow the buffer.
            let room = MAX_REPLY_LEN.saturating_sub(self.buf.len());
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            self.step(false);
            if self.outcome.is_none() && !later.is_empty() {
                self.fail(Reason::TooLong, self.buf.len());
            }
            self.buf.extend_from_slice(later);
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.outcome.clone().unwrap_or(Parsed::NeedMore)
    }

    /// The line has been quiet for an inter-byte time: decide with what is
    /// there. With nothing received it stays `NeedMore` (that is a timeout,
    /// the caller's business).
    pub fn idle(&mut self) -> Parsed {
        if self.outcome.is_none() && !self.buf.is_empty() {
            self.step(true);
        }
        self.outcome.clone().unwrap_or(Parsed::NeedMore)
    }

    fn step(&mut self, idle: bool) {
        match check(self.expect, &self.buf, idle) {
            Check::NeedMore => {}
            Check::Invalid(reason) => self.fail(reason, self.buf.len()),
            Check::Complete(n) => {
                let frame = self.buf.get(..n).unwrap_or_default();
                match parse(self.expect, frame) {
                    Ok(response) => {
                        self.frame_len = n;
                        self.outcome = Some(Parsed::Done(response));
                    }
                    Err(reason) => self.fail(reason, n),
                }
            }
        }
    }

    fn fail(&mut self, reason: Reason, frame_len: usize) {
        self.frame_len = frame_len;
        self.outcome = Some(Parsed::Invalid(ResponseError {
            address: self.expect.address(),
            poll: self.expect.kind(),
            reason,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::proto::hex;

    fn lp(command: u8) -> Expect {
        Expect::Long {
            address: 1,
            command,
        }
    }

    const GP: Expect = Expect::General { address: 1 };

    fn done(expect: Expect, bytes: &[u8]) -> Response {
        let mut p = ResponseParser::new(expect);
        match p.push(bytes) {
            Parsed::Done(r) => r,
            Parsed::NeedMore => match p.idle() {
                Parsed::Done(r) => r,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn document_2f_frame() {
        // §7: real frame from SPK, right only with A0/B8/A2/BA 5 bytes wide.
        let frame = hex(
            "01 2F 38 0000 A0 0089475290 B8 0090352290 02 00000000 03 00000000 \
             1E 00000000 00 13187000 01 12998200 0B 00276500 A2 0000000000 BA 0000000000 51 4C",
        );
        assert!(crc_ok(&frame));
        let Response::Data(Reply::SelectedMeters {
            game,
            meters,
            unparsed,
        }) = done(lp(0x2F), &frame)
        else {
            panic!()
        };
        assert_eq!(game, 0);
        assert!(unparsed.is_empty());
        let got: Vec<(u8, u64, u8)> = meters
            .iter()
            .map(|m| (m.code.0, m.value, m.width))
            .collect();
        assert_eq!(
            got,
            [
                (0xA0, 89_475_290, 5),
                (0xB8, 90_352_290, 5),
                (0x02, 0, 4),
                (0x03, 0, 4),
                (0x1E, 0, 4),
                (0x00, 13_187_000, 4),
                (0x01, 12_998_200, 4),
                (0x0B, 276_500, 4),
                (0xA2, 0, 5),
                (0xBA, 0, 5),
            ]
        );
        // And it re-encodes to the same bytes.
        let again = done(lp(0x2F), &frame).encode(1).unwrap();
        assert_eq!(again, frame);
    }

    #[test]
    fn document_rte_frames() {
        // §3 / §6: real RTE frames; 00 and 1F mean nothing pending.
        for (bytes, code) in [
            (hex("01FF6FED3E"), 0x6F),
            (hex("01FF001CA5"), 0x00),
            (hex("01FF1F6A4D"), 0x1F),
            (hex("01FF201E84"), 0x20),
        ] {
            assert_eq!(
                done(GP, &bytes),
                Response::Event(Event {
                    code: ExceptionCode(code),
                    data: EventData::None
                })
            );
        }
        // The same frame answering a long poll: the long poll went unanswered.
        assert!(matches!(
            done(lp(0x1A), &hex("01FF6FED3E")),
            Response::Event(_)
        ));
    }

    #[test]
    fn one_byte_replies() {
        // Not the address: an exception at once, no need to wait.
        let mut p = ResponseParser::new(GP);
        assert_eq!(
            p.push(&[0x7E]),
            Parsed::Done(Response::Exception(ExceptionCode(0x7E)))
        );
        assert_eq!(done(GP, &[0x00]), Response::Exception(ExceptionCode::NONE));
        // The address itself: only the idle gap tells an exception from a frame.
        let g = Expect::General { address: 0x11 };
        let mut p = ResponseParser::new(g);
        assert_eq!(p.push(&[0x11]), Parsed::NeedMore);
        assert_eq!(
            p.idle(),
            Parsed::Done(Response::Exception(ExceptionCode(0x11)))
        );
        // ACK, NACK, BUSY (§2.1).
        let mut p = ResponseParser::new(lp(0x01));
        assert_eq!(p.push(&[0x01]), Parsed::NeedMore);
        assert_eq!(p.idle(), Parsed::Done(Response::Ack));
        assert_eq!(done(lp(0x01), &[0x81]), Response::Nack);
        assert_eq!(done(lp(0x01), &[0x01, 0x00]), Response::Busy);
    }

    #[test]
    fn signature_and_meters() {
        let sig = Response::RomSignature(0xBEEF).encode(1).unwrap();
        assert_eq!(sig.len(), 6);
        assert_eq!(done(lp(0x21), &sig), Response::RomSignature(0xBEEF));
        assert_eq!(done(lp(0x1A), &sig), Response::RomSignature(0xBEEF));
        assert_eq!(done(GP, &sig), Response::RomSignature(0xBEEF));

        let mut f = hex("01 1A 00 01 23 45");
        push_crc(&mut f);
        assert_eq!(
            done(lp(0x1A), &f),
            Response::Data(Reply::Meters {
                poll: MeterPoll::CurrentCredits,
                meters: vec![Meter {
                    code: MeterCode::CURRENT_CREDITS,
                    value: 12_345,
                    width: 4
                }]
            })
        );
    }

    #[test]
    fn sas_version_and_bill() {
        let mut f = vec![0x01, 0x54, 0x08];
        f.extend_from_slice(b"60212345");
        push_crc(&mut f);
        let Response::Data(Reply::SasVersion(v)) = done(lp(0x54), &f) else {
            panic!()
        };
        assert_eq!(v.number(), Some(602));
        assert_eq!(v.serial, b"12345");
        let mut f = hex("01 48 37 10 00 00 00 07");
        push_crc(&mut f);
        assert_eq!(
            done(lp(0x48), &f),
            Response::Data(Reply::LastBill(LastBill {
                country: 0x37,
                denomination: 0x10,
                count: 7
            }))
        );
    }

    #[test]
    fn handpay_and_features() {
        // §7/§9: 1B = group, level, amount BCD5, partial pay BCD2, reset ID,
        // 6.03 session win and paid BCD5 each: 24 bytes with CRC.
        let mut f = hex("01 1B 00 40 00 00 12 50 00 00 10 01 00 00 00 00 00 00 00 00 00 00");
        push_crc(&mut f);
        assert_eq!(f.len(), 24);
        let Response::Data(Reply::Handpay(h)) = done(lp(0x1B), &f) else {
            panic!()
        };
        assert_eq!(
            (h.level, h.amount, h.partial_pay, h.reset_id),
            (0x40, 125_000, 10, 1)
        );
        assert_eq!(h.kind(), "non-progressive win");
        assert!(!h.amount_in_cents() && !h.is_none());
        let mut zeros = hex("01 1B");
        zeros.extend([0; 20]);
        push_crc(&mut zeros);
        let Response::Data(Reply::Handpay(h)) = done(lp(0x1B), &zeros) else {
            panic!()
        };
        assert!(h.is_none(), "all zeros is no handpay (§9)");
        // §13: A0 = game BCD2, F1–F4, two reserved bytes: 12 with CRC.
        let mut f = hex("01 A0 00 00 00 08 01 00 00 00");
        push_crc(&mut f);
        let Response::Data(Reply::Features(ft)) = done(lp(0xA0), &f) else {
            panic!()
        };
        assert!(ft.fast_polling() && ft.extended_meters());
        assert_eq!(ft.game, 0);
        f[6] = 0;
        let crc_at = f.len() - 2;
        f.truncate(crc_at);
        push_crc(&mut f);
        let Response::Data(Reply::Features(ft)) = done(lp(0xA0), &f) else {
            panic!()
        };
        assert!(!ft.fast_polling());
    }

    #[test]
    fn rejects_with_address_and_poll() {
        let mut f = hex("01 1A 00 01 23 45");
        push_crc(&mut f);
        let last = f.len() - 1;
        f[last] ^= 1;
        let mut p = ResponseParser::new(lp(0x1A));
        let Parsed::Invalid(e) = p.push(&f) else {
            panic!()
        };
        assert_eq!(e.reason, Reason::BadCrc);
        assert_eq!(
            e.to_string(),
            "EGM at address 1: reply to long poll 1A (current credits): bad CRC"
        );
        // Bad BCD with a good CRC.
        let mut f = hex("01 1A 00 01 23 4A");
        push_crc(&mut f);
        assert!(matches!(
            ResponseParser::new(lp(0x1A)).push(&f),
            Parsed::Invalid(ResponseError {
                reason: Reason::Field(FieldError::Bcd(_)),
                ..
            })
        ));
        assert!(matches!(
            ResponseParser::new(lp(0x1A)).push(&[0x02]),
            Parsed::Invalid(ResponseError {
                reason: Reason::WrongAddress(2),
                ..
            })
        ));
        assert!(matches!(
            ResponseParser::new(lp(0x1A)).push(&[0x01, 0x1B]),
            Parsed::Invalid(ResponseError {
                reason: Reason::NotExpected(0x1B),
                ..
            })
        ));
        // An ACK-only poll has no data reply.
        assert!(matches!(
            ResponseParser::new(lp(0x01)).push(&[0x01, 0x01]),
            Parsed::Invalid(_)
        ));
        let mut p = ResponseParser::new(lp(0x1A));
        assert_eq!(p.push(&[0x01, 0x1A, 0x00]), Parsed::NeedMore);
        assert!(matches!(
            p.idle(),
            Parsed::Invalid(ResponseError {
                reason: Reason::Truncated { have: 3 },
                ..
            })
        ));
    }

    #[test]
    fn unsized_2f_code_stops_parsing() {
        let mut f = hex("01 2F 0D 0000 00 00000005 3A 01020304 05");
        push_crc(&mut f);
        let Response::Data(Reply::SelectedMeters {
            meters, unparsed, ..
        }) = done(lp(0x2F), &f)
        else {
            panic!()
        };
        assert_eq!(meters.len(), 1);
        assert_eq!(unparsed, hex("3A 01020304 05"));
    }

    #[test]
    fn trailing_bytes_are_kept_apart() {
        let mut p = ResponseParser::new(GP);
        assert!(matches!(p.push(&[0x7E, 0x81]), Parsed::Done(_)));
        assert_eq!(
            p.push(&[0x82]),
            Parsed::Done(Response::Exception(ExceptionCode(0x7E)))
        );
        assert_eq!(p.trailing(), [0x81, 0x82]);
        assert_eq!(p.received(), 3);
    }

    #[test]
    fn event_89_ends_at_idle_with_good_crc() {
        let ev = Response::Event(Event {
            code: ExceptionCode(0x89),
            data: EventData::Raw(vec![0x00, 0x25]),
        });
        let bytes = ev.encode(1).unwrap();
        let mut p = ResponseParser::new(GP);
        assert_eq!(p.push(&bytes), Parsed::NeedMore);
        assert_eq!(p.idle(), Parsed::Done(ev));
    }

    #[test]
    fn encode_checks_event_layout() {
        let bad = Response::Event(Event {
            code: ExceptionCode(0x7F),
            data: EventData::None,
        });
        assert!(matches!(
            bad.encode(1),
            Err(EncodeError::LayoutMismatch { .. })
        ));
    }
}
