//! The sans-IO SAS core: bytes in, typed values and link decisions out. No
//! runtime, clock or port lives here; time comes in as an argument. The same
//! code serves the host poller (encode polls, parse replies, run the link
//! state) and the EGM simulator (parse polls, encode replies).
//!
//! - [`crc`]: CRC-16/KERMIT, low byte first.
//! - [`bcd`]: packed BCD, meter rollover, date/time.
//! - [`tables`]: exception and meter codes, denominations.
//! - [`poll`]: general and long polls, encode and decode.
//! - [`response`]: replies, encode and an incremental, never-panicking parser.
//! - [`link`]: the per-address link state machine (sync, implied ACK, retries).

pub mod bcd;
pub mod crc;
pub mod frame;
pub mod link;
pub mod poll;
pub mod response;
pub mod tables;

pub use bcd::{BcdError, DateTime, decode_bcd, encode_bcd, meter_delta};
pub use crc::{crc_ok, crc16, push_crc};
pub use frame::{Check, FieldError};
pub use link::{
    DownReason, Failure, Filler, Link, LinkConfig, LinkError, LinkEvent, LinkState, LinkStats,
    PollId, Transmit,
};
pub use poll::{
    EncodeError, LongPoll, MeterPoll, Poll, PollDecoder, PollError, PollKind, PollType,
    long_poll_name,
};
pub use response::{
    Ascii, Event, EventData, Expect, ExtendedMeter, Features, HandpayInfo, LastBill, MachineInfo,
    Meter, Parsed, Reason, Reply, Response, ResponseError, ResponseParser, SasVersion,
};
pub use tables::{
    ExceptionClass, ExceptionCode, ExceptionInfo, MeterCode, MeterInfo, MeterUnit, Priority,
    bill_dollars, denomination_cents,
};

/// Bytes from the hex the protocol document writes them in (`"01 1F"`), for tests.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}
