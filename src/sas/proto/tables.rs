//! The code tables: exception codes (general-poll replies), meter codes (2F,
//! 6F/AF), denominations (1F) and bill denominations (48, event 4F), with
//! names a technician recognises. Sources are the tags of the protocol
//! document (§6, §7, §14); rows it marks unverified are left out, so their
//! codes show up as "unknown" rather than with a guessed meaning.

use std::fmt;

/// What kind of event an exception is, for routing and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExceptionClass {
    /// A door, the card cage or the cashbox opened, closed or removed.
    Door,
    /// A fault: hardware, memory, reels, bill acceptor, printer, hopper.
    Tilt,
    /// Money moved or is waiting: bills, tickets, handpays, transfers, wins.
    Money,
    /// Play: game start and end, reel and card events, game selection.
    Game,
    /// Power, operator menus, configuration and protocol housekeeping.
    Other,
}

/// How the EGM orders the exception (§6): priority exceptions are not queued
/// and jump ahead of queued ones; "either" depends on the EGM's mode, so the
/// host never relies on the order of those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    Queued,
    Priority,
    Either,
}

/// What the tables know about one exception code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionInfo {
    pub code: u8,
    /// Short label, as a technician would say it.
    pub name: &'static str,
    /// What it means or what the host should do about it.
    pub meaning: &'static str,
    pub class: ExceptionClass,
    pub priority: Priority,
}

/// An exception code as a general poll returns it. `00` means nothing pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExceptionCode(pub u8);

impl ExceptionCode {
    pub const NONE: ExceptionCode = ExceptionCode(0x00);
    /// Obsolete "no activity"; NC and real RTE frames use it as "nothing".
    pub const NO_ACTIVITY: ExceptionCode = ExceptionCode(0x1F);
    pub const HANDPAY_PENDING: ExceptionCode = ExceptionCode(0x51);
    pub const OPTIONS_CHANGED: ExceptionCode = ExceptionCode(0x3C);
    pub const BILL_ACCEPTED: ExceptionCode = ExceptionCode(0x4F);
    pub const SOFT_METERS_RESET: ExceptionCode = ExceptionCode(0x7A);
    pub const GAME_STARTED: ExceptionCode = ExceptionCode(0x7E);
    pub const GAME_ENDED: ExceptionCode = ExceptionCode(0x7F);

    /// The table row, or `None` for a code the tables do not know (log it and
    /// acknowledge it as usual: never stall on it).
    pub fn info(self) -> Option<&'static ExceptionInfo> {
        EXCEPTIONS.iter().find(|e| e.code == self.0)
    }

    /// "Nothing to report": `00`, and the obsolete `1F` (§6: NC treats it as
    /// 00; real RTE EGMs send `addr FF 1F CRC` when idle).
    pub fn is_nothing(self) -> bool {
        self == Self::NONE || self == Self::NO_ACTIVITY
    }

    pub fn class(self) -> ExceptionClass {
        self.info().map_or(ExceptionClass::Other, |i| i.class)
    }

    pub fn is_door(self) -> bool {
        self.class() == ExceptionClass::Door
    }

    pub fn is_tilt(self) -> bool {
        self.class() == ExceptionClass::Tilt
    }

    pub fn is_money(self) -> bool {
        self.class() == ExceptionClass::Money
    }

    pub fn is_game(self) -> bool {
        self.class() == ExceptionClass::Game
    }
}

impl fmt::Display for ExceptionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(i) => f.write_str(i.name),
            None => write!(f, "unknown exception {:02X}", self.0),
        }
    }
}

const fn ex(
    code: u8,
    name: &'static str,
    meaning: &'static str,
    class: ExceptionClass,
    priority: Priority,
) -> ExceptionInfo {
    ExceptionInfo {
        code,
        name,
        meaning,
        class,
        priority,
    }
}

use ExceptionClass::{Door, Game, Money, Other, Tilt};
use Priority::{Either, Queued};

const P: Priority = Priority::Priority;

/// §6. The 6.03 rows (2F, 59, 5A, 5F, 9E, 9F, A0–A2) come from MON only and
/// their priority is unverified: listed as queued. MON's extra 26
/// ("player-initiated cashout") is unverified and left out.
static EXCEPTIONS: &[ExceptionInfo] = &[
    ex(
        0x00,
        "nothing pending",
        "no event is waiting",
        Other,
        Queued,
    ),
    ex(
        0x11,
        "slot door opened",
        "main cabinet door opened",
        Door,
        Queued,
    ),
    ex(
        0x12,
        "slot door closed",
        "main cabinet door closed",
        Door,
        Queued,
    ),
    ex(
        0x13,
        "drop door opened",
        "drop (belly box) door opened",
        Door,
        Queued,
    ),
    ex(
        0x14,
        "drop door closed",
        "drop (belly box) door closed",
        Door,
        Queued,
    ),
    ex(
        0x15,
        "card cage opened",
        "logic board cage opened",
        Door,
        Queued,
    ),
    ex(
        0x16,
        "card cage closed",
        "logic board cage closed",
        Door,
        Queued,
    ),
    ex(
        0x17,
        "AC power applied",
        "machine powered up",
        Other,
        Queued,
    ),
    ex(
        0x18,
        "AC power lost",
        "machine lost mains power",
        Other,
        Queued,
    ),
    ex(
        0x19,
        "cashbox door opened",
        "cashbox door opened",
        Door,
        Queued,
    ),
    ex(
        0x1A,
        "cashbox door closed",
        "cashbox door closed",
        Door,
        Queued,
    ),
    ex(0x1B, "cashbox removed", "cashbox taken out", Door, Queued),
    ex(0x1C, "cashbox installed", "cashbox put back", Door, Queued),
    ex(0x1D, "belly door opened", "belly door opened", Door, Queued),
    ex(0x1E, "belly door closed", "belly door closed", Door, Queued),
    ex(
        0x1F,
        "no activity",
        "obsolete: waiting for player; treated as nothing pending",
        Other,
        Queued,
    ),
    ex(
        0x20,
        "general tilt",
        "machine tilted; check its display",
        Tilt,
        Queued,
    ),
    ex(0x21, "coin-in tilt", "coin acceptor fault", Tilt, Queued),
    ex(0x22, "coin-out tilt", "hopper payout fault", Tilt, Queued),
    ex(
        0x23,
        "hopper empty",
        "hopper ran out of coins",
        Tilt,
        Queued,
    ),
    ex(
        0x24,
        "extra coin paid",
        "hopper paid more than asked",
        Tilt,
        Queued,
    ),
    ex(
        0x25,
        "diverter fault",
        "coin diverter malfunction",
        Tilt,
        Queued,
    ),
    ex(
        0x27,
        "cashbox full",
        "cashbox is full; empty it",
        Tilt,
        Queued,
    ),
    ex(
        0x28,
        "bill jam",
        "a bill is stuck in the bill acceptor",
        Tilt,
        Queued,
    ),
    ex(
        0x29,
        "bill acceptor failure",
        "bill acceptor hardware fault",
        Tilt,
        Queued,
    ),
    ex(
        0x2A,
        "reverse bill detected",
        "bill pulled back out",
        Tilt,
        Queued,
    ),
    ex(
        0x2B,
        "bill rejected",
        "bill acceptor refused a bill",
        Tilt,
        Queued,
    ),
    ex(
        0x2C,
        "counterfeit bill detected",
        "bill acceptor flagged a counterfeit",
        Tilt,
        Queued,
    ),
    ex(
        0x2D,
        "reverse coin-in detected",
        "coin pulled back out",
        Tilt,
        Queued,
    ),
    ex(
        0x2E,
        "cashbox near full",
        "cashbox almost full",
        Tilt,
        Queued,
    ),
    ex(
        0x2F,
        "bill acceptor version changed",
        "SAS 6.03: bill acceptor firmware changed",
        Other,
        Queued,
    ),
    ex(
        0x31,
        "RAM error, data recovered",
        "memory error; data recovered from EEPROM",
        Tilt,
        Queued,
    ),
    ex(
        0x32,
        "RAM error, data not recovered",
        "memory error; data could not be recovered",
        Tilt,
        Queued,
    ),
    ex(
        0x33,
        "RAM error, bad device",
        "memory device failed",
        Tilt,
        Queued,
    ),
    ex(
        0x34,
        "EEPROM data error",
        "critical memory error; the SAS address may have reset to 0",
        Tilt,
        Queued,
    ),
    ex(0x35, "EEPROM bad device", "EEPROM failed", Tilt, Queued),
    ex(
        0x36,
        "EPROM error, version changed",
        "program memory checksum changed",
        Tilt,
        Queued,
    ),
    ex(
        0x37,
        "EPROM error, bad checksum",
        "program memory checksum compare failed",
        Tilt,
        Queued,
    ),
    ex(
        0x38,
        "partitioned EPROM error, version changed",
        "program memory partition changed",
        Tilt,
        Queued,
    ),
    ex(
        0x39,
        "partitioned EPROM error, bad checksum",
        "program memory partition compare failed",
        Tilt,
        Queued,
    ),
    ex(
        0x3A,
        "memory error reset",
        "operator reset memory",
        Tilt,
        Queued,
    ),
    ex(
        0x3B,
        "low backup battery",
        "replace the memory backup battery",
        Tilt,
        Queued,
    ),
    ex(
        0x3C,
        "operator changed options",
        "re-read machine info (1F, 53, 54, 56, A0, B2-B5)",
        Other,
        Queued,
    ),
    ex(
        0x3D,
        "cash-out ticket printed",
        "read LP 3D for the ticket",
        Money,
        Either,
    ),
    ex(
        0x3E,
        "handpay validated",
        "read LP 3D for the validation",
        Money,
        Either,
    ),
    ex(
        0x3F,
        "validation ID not configured",
        "set the validation ID (LP 4C)",
        Other,
        P,
    ),
    ex(
        0x40,
        "reel tilt",
        "a reel tilted (reel not known)",
        Tilt,
        Queued,
    ),
    ex(0x41, "reel 1 tilt", "reel 1 tilted", Tilt, Queued),
    ex(0x42, "reel 2 tilt", "reel 2 tilted", Tilt, Queued),
    ex(0x43, "reel 3 tilt", "reel 3 tilted", Tilt, Queued),
    ex(0x44, "reel 4 tilt", "reel 4 tilted", Tilt, Queued),
    ex(0x45, "reel 5 tilt", "reel 5 tilted", Tilt, Queued),
    ex(
        0x46,
        "reel disconnected",
        "reel mechanism disconnected",
        Tilt,
        Queued,
    ),
    ex(
        0x47,
        "$1 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x48,
        "$5 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x49,
        "$10 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4A,
        "$20 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4B,
        "$50 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4C,
        "$100 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4D,
        "$2 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4E,
        "$500 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x4F,
        "bill accepted",
        "read LP 48 for the bill (in RTE the event carries it)",
        Money,
        Queued,
    ),
    ex(
        0x50,
        "$200 bill accepted",
        "non-RTE bill report",
        Money,
        Queued,
    ),
    ex(
        0x51,
        "handpay pending",
        "read LP 1B now (not necessarily a new handpay)",
        Money,
        Either,
    ),
    ex(
        0x52,
        "handpay reset",
        "attendant reset the handpay",
        Money,
        Either,
    ),
    ex(
        0x53,
        "no progressive info",
        "no progressive update for 5 s",
        Other,
        Queued,
    ),
    ex(
        0x54,
        "progressive win",
        "a progressive was won",
        Money,
        Queued,
    ),
    ex(
        0x55,
        "player cancelled handpay",
        "player cancelled the handpay request",
        Money,
        Either,
    ),
    ex(
        0x56,
        "SAS progressive level hit",
        "read LP 85 or 87",
        Money,
        P,
    ),
    ex(
        0x57,
        "system validation request",
        "answer with LP 57/58 within 10 s",
        Money,
        P,
    ),
    ex(
        0x59,
        "non-SAS progressive level hit",
        "SAS 6.03",
        Money,
        Queued,
    ),
    ex(
        0x5A,
        "jackpot keyed off to machine pay",
        "SAS 6.03: handpay paid to the credit meter",
        Money,
        Queued,
    ),
    ex(0x5F, "tip awarded", "SAS 6.03", Money, Queued),
    ex(
        0x60,
        "printer communication error",
        "check the printer cable",
        Tilt,
        Queued,
    ),
    ex(0x61, "printer paper out", "load paper", Tilt, Queued),
    ex(
        0x66,
        "cash-out button pressed",
        "player asked to cash out",
        Money,
        Queued,
    ),
    ex(
        0x67,
        "ticket inserted",
        "read LP 70 for the ticket",
        Money,
        P,
    ),
    ex(
        0x68,
        "ticket transfer complete",
        "send LP 71 with transfer code FF",
        Money,
        P,
    ),
    ex(
        0x69,
        "AFT transfer complete",
        "interrogate with LP 72",
        Money,
        P,
    ),
    ex(
        0x6A,
        "AFT host cash-out request",
        "send LP 72 to host",
        Money,
        P,
    ),
    ex(
        0x6B,
        "AFT host cash-out win request",
        "send LP 72 to host",
        Money,
        P,
    ),
    ex(
        0x6C,
        "AFT registration request",
        "register with LP 73",
        Other,
        P,
    ),
    ex(
        0x6D,
        "AFT registration acknowledged",
        "LP 73 registration confirmed",
        Other,
        P,
    ),
    ex(
        0x6E,
        "AFT registration cancelled",
        "AFT registration removed",
        Other,
        Queued,
    ),
    ex(
        0x6F,
        "game locked",
        "machine locked for a transfer (AFT)",
        Other,
        P,
    ),
    ex(
        0x70,
        "exception buffer overflow",
        "events were lost on the machine",
        Other,
        P,
    ),
    ex(
        0x71,
        "change lamp on",
        "player asked for an attendant",
        Other,
        Queued,
    ),
    ex(
        0x72,
        "change lamp off",
        "attendant request cleared",
        Other,
        Queued,
    ),
    ex(0x74, "printer paper low", "load paper soon", Tilt, Queued),
    ex(
        0x75,
        "printer power off",
        "printer switched off",
        Tilt,
        Queued,
    ),
    ex(
        0x76,
        "printer power on",
        "printer switched on",
        Tilt,
        Queued,
    ),
    ex(
        0x77,
        "replace printer ribbon",
        "printer ribbon worn",
        Tilt,
        Queued,
    ),
    ex(0x78, "printer carriage jammed", "printer jam", Tilt, Queued),
    ex(
        0x79,
        "coin-in lockout fault",
        "coin lockout malfunction",
        Tilt,
        Queued,
    ),
    ex(
        0x7A,
        "soft meters reset",
        "meters reset to zero on purpose: restart deltas",
        Other,
        Queued,
    ),
    ex(
        0x7B,
        "bill totals reset",
        "bill validator period totals reset",
        Other,
        Queued,
    ),
    ex(
        0x7C,
        "legacy bonus or multiplied jackpot",
        "read LP 90",
        Money,
        Queued,
    ),
    ex(0x7E, "game started", "a game started", Game, Queued),
    ex(0x7F, "game ended", "a game ended", Game, Queued),
    ex(0x80, "hopper full", "hopper full", Tilt, Queued),
    ex(0x81, "hopper low", "hopper level low", Tilt, Queued),
    ex(
        0x82,
        "attendant menu entered",
        "display meters or attendant menu opened",
        Other,
        Queued,
    ),
    ex(
        0x83,
        "attendant menu exited",
        "display meters or attendant menu closed",
        Other,
        Queued,
    ),
    ex(
        0x84,
        "operator menu entered",
        "self test or operator menu opened",
        Other,
        Queued,
    ),
    ex(
        0x85,
        "operator menu exited",
        "self test or operator menu closed",
        Other,
        Queued,
    ),
    ex(
        0x86,
        "out of service",
        "machine taken out of service by an attendant",
        Other,
        Queued,
    ),
    ex(0x87, "draw cards requested", "RTE only", Game, Queued),
    ex(
        0x88,
        "reel stopped",
        "RTE only: carries reel and stop",
        Game,
        Queued,
    ),
    ex(0x89, "credits wagered", "RTE only", Game, Queued),
    ex(
        0x8A,
        "game recall shown",
        "game recall entry displayed",
        Other,
        Queued,
    ),
    ex(
        0x8B,
        "card held",
        "RTE only: carries the card and whether held",
        Game,
        Queued,
    ),
    ex(
        0x8C,
        "game selected",
        "player selected a game",
        Game,
        Queued,
    ),
    ex(
        0x8E,
        "component list changed",
        "re-read component authentication (LP 6E)",
        Other,
        Queued,
    ),
    ex(
        0x8F,
        "authentication complete",
        "read the result with LP 6E",
        Other,
        P,
    ),
    ex(
        0x98,
        "card cage accessed while off",
        "power-off card cage access",
        Door,
        Queued,
    ),
    ex(
        0x99,
        "slot door accessed while off",
        "power-off slot door access",
        Door,
        Queued,
    ),
    ex(
        0x9A,
        "cashbox door accessed while off",
        "power-off cashbox door access",
        Door,
        Queued,
    ),
    ex(
        0x9B,
        "drop door accessed while off",
        "power-off drop door access",
        Door,
        Queued,
    ),
    ex(
        0x9E,
        "session started",
        "SAS 6.03: player session start",
        Game,
        Queued,
    ),
    ex(
        0x9F,
        "session ended",
        "SAS 6.03: player session end",
        Game,
        Queued,
    ),
    ex(0xA0, "meter change pending", "SAS 6.03", Other, Queued),
    ex(0xA1, "meter change cancelled", "SAS 6.03", Other, Queued),
    ex(
        0xA2,
        "games or denominations changed",
        "SAS 6.03: re-read the game list",
        Other,
        Queued,
    ),
];

/// The unit a meter counts in (§7): credit meters are in the accounting
/// denomination from 1F; cents and counts are absolute. Never inferred from a
/// code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeterUnit {
    Credits,
    Cents,
    Count,
    /// Hundredths of a percent (meter 7F).
    Percent,
}

impl fmt::Display for MeterUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MeterUnit::Credits => "credits",
            MeterUnit::Cents => "cents",
            MeterUnit::Count => "count",
            MeterUnit::Percent => "1/100 %",
        })
    }
}

/// What the tables know about a meter code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterInfo {
    pub code: u8,
    pub name: &'static str,
    pub unit: MeterUnit,
}

impl MeterInfo {
    /// Bytes of BCD in a 2F reply: every cents meter is 5, all others 4 (§7;
    /// NC's "5 only for 0D–10" loses sync above 10).
    pub fn width_2f(&self) -> usize {
        if self.unit == MeterUnit::Cents { 5 } else { 4 }
    }
}

/// A one-byte meter code (2F); 6F/AF use the same values in two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterCode(pub u8);

impl MeterCode {
    pub const COIN_IN: MeterCode = MeterCode(0x00);
    pub const COIN_OUT: MeterCode = MeterCode(0x01);
    pub const JACKPOT: MeterCode = MeterCode(0x02);
    pub const CANCELLED_CREDITS: MeterCode = MeterCode(0x04);
    pub const GAMES_PLAYED: MeterCode = MeterCode(0x05);
    pub const GAMES_WON: MeterCode = MeterCode(0x06);
    pub const GAMES_LOST: MeterCode = MeterCode(0x07);
    pub const CURRENT_CREDITS: MeterCode = MeterCode(0x0C);
    pub const TOTAL_DROP: MeterCode = MeterCode(0x24);
    pub const GAMES_SINCE_POWER_UP: MeterCode = MeterCode(0x25);
    pub const GAMES_SINCE_DOOR_CLOSED: MeterCode = MeterCode(0x26);

    /// The table row, or `None` for a code the document leaves unverified.
    pub fn info(self) -> Option<MeterInfo> {
        meter_info(self.0)
    }

    /// Width in a 2F reply, `None` when the code cannot be sized (then a 2F
    /// reply cannot be read past it).
    pub fn width_2f(self) -> Option<usize> {
        self.info().map(|i| i.width_2f())
    }
}

impl fmt::Display for MeterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(i) => write!(f, "{} ({})", i.name, i.unit),
            None => write!(f, "unknown meter {:02X}", self.0),
        }
    }
}

/// Bill values of meters 40–57 and of the bill denomination codes, in dollars.
const BILL_DOLLARS: [u64; 24] = [
    1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 25_000,
    50_000, 100_000, 200_000, 250_000, 500_000, 1_000_000,
];

const BILL_NAMES: [&str; 24] = [
    "$1 bills accepted",
    "$2 bills accepted",
    "$5 bills accepted",
    "$10 bills accepted",
    "$20 bills accepted",
    "$25 bills accepted",
    "$50 bills accepted",
    "$100 bills accepted",
    "$200 bills accepted",
    "$250 bills accepted",
    "$500 bills accepted",
    "$1000 bills accepted",
    "$2000 bills accepted",
    "$2500 bills accepted",
    "$5000 bills accepted",
    "$10000 bills accepted",
    "$20000 bills accepted",
    "$25000 bills accepted",
    "$50000 bills accepted",
    "$100000 bills accepted",
    "$200000 bills accepted",
    "$250000 bills accepted",
    "$500000 bills accepted",
    "$1000000 bills accepted",
];

fn meter_info(code: u8) -> Option<MeterInfo> {
    use MeterUnit::{Cents, Count, Credits, Percent};
    let (name, unit) = match code {
        0x00 => ("total coin in", Credits),
        0x01 => ("total coin out", Credits),
        0x02 => ("total jackpot", Credits),
        0x03 => ("hand-paid cancelled credits", Credits),
        0x04 => ("cancelled credits", Credits),
        0x05 => ("games played", Count),
        0x06 => ("games won", Count),
        0x07 => ("games lost", Count),
        0x08 => ("credits from coin acceptor", Credits),
        0x09 => ("credits paid from hopper", Credits),
        0x0A => ("credits from coins to drop", Credits),
        0x0B => ("credits from bills accepted", Credits),
        0x0C => ("current credits", Credits),
        0x0D => ("SAS cashable ticket in", Cents),
        0x0E => ("SAS cashable ticket out", Cents),
        0x0F => ("SAS restricted ticket in", Cents),
        0x10 => ("SAS restricted ticket out", Cents),
        0x11 => ("SAS cashable tickets in", Count),
        0x12 => ("SAS cashable tickets out", Count),
        0x13 => ("SAS restricted tickets in", Count),
        0x14 => ("SAS restricted tickets out", Count),
        0x15 => ("total ticket in", Credits),
        0x16 => ("total ticket out", Credits),
        0x17 => ("electronic transfers to machine", Credits),
        0x18 => ("electronic transfers to host", Credits),
        0x19 => ("restricted amount played", Credits),
        0x1A => ("nonrestricted amount played", Credits),
        0x1B => ("current restricted credits", Credits),
        0x1C => ("machine-paid paytable win", Credits),
        0x1D => ("machine-paid progressive win", Credits),
        0x1E => ("machine-paid external bonus win", Credits),
        0x1F => ("attendant-paid paytable win", Credits),
        0x20 => ("attendant-paid progressive win", Credits),
        0x21 => ("attendant-paid external bonus win", Credits),
        0x22 => ("total won credits", Credits),
        0x23 => ("total hand-paid credits", Credits),
        0x24 => ("total drop", Credits),
        0x25 => ("games since power reset", Count),
        0x26 => ("games since slot door closed", Count),
        0x27 => ("credits from external coin acceptor", Credits),
        0x28 => ("cashable ticket in, incl. nonrestricted promo", Credits),
        0x29 => ("regular cashable ticket in", Credits),
        0x2A => ("restricted promo ticket in", Credits),
        0x2B => ("nonrestricted promo ticket in", Credits),
        0x2C => ("cashable ticket out", Credits),
        0x2D => ("restricted promo ticket out", Credits),
        0x2E => ("electronic cashable transfers to machine", Credits),
        0x2F => ("electronic restricted transfers to machine", Credits),
        0x30 => ("electronic nonrestricted transfers to machine", Credits),
        0x31 => ("electronic debit transfers to machine", Credits),
        0x32 => ("electronic cashable transfers to host", Credits),
        0x33 => ("electronic restricted transfers to host", Credits),
        0x34 => ("electronic nonrestricted transfers to host", Credits),
        0x35 => ("regular cashable tickets in", Count),
        0x36 => ("restricted promo tickets in", Count),
        0x37 => ("nonrestricted promo tickets in", Count),
        0x38 => ("cashable tickets out", Count),
        0x39 => ("restricted promo tickets out", Count),
        0x3E => ("bills in stacker", Count),
        0x3F => ("value of bills in stacker", Credits),
        0x40..=0x57 => (BILL_NAMES[usize::from(code - 0x40)], Count),
        0x58 => ("credits from bills to drop", Credits),
        // Which denomination each of 59–62 counts is not in the document.
        0x59..=0x62 => ("bills to drop (one denomination)", Count),
        0x7F => ("weighted average theoretical payback", Percent),
        0x80 => ("regular cashable ticket in", Cents),
        0x81 => ("regular cashable tickets in", Count),
        0x82 => ("restricted promo ticket in", Cents),
        0x83 => ("restricted promo tickets in", Count),
        0x84 => ("nonrestricted promo ticket in", Cents),
        0x85 => ("nonrestricted promo tickets in", Count),
        0x86 => ("regular cashable ticket out", Cents),
        0x87 => ("regular cashable tickets out", Count),
        0x88 => ("restricted promo ticket out", Cents),
        0x89 => ("restricted promo tickets out", Count),
        0x8A => ("nonrestricted promo ticket out", Cents),
        0x8B => ("nonrestricted promo tickets out", Count),
        0x8C => ("validated cancelled-credit handpay, receipt", Cents),
        0x8D => ("validated cancelled-credit handpays, receipt", Count),
        0x8E => ("validated jackpot handpay, receipt", Cents),
        0x8F => ("validated jackpot handpays, receipt", Count),
        0x90 => ("validated cancelled-credit handpay, no receipt", Cents),
        0x91 => ("validated cancelled-credit handpays, no receipt", Count),
        0x92 => ("validated jackpot handpay, no receipt", Cents),
        0x93 => ("validated jackpot handpays, no receipt", Count),
        0xA0..=0xB1 | 0xB8..=0xBD => aft_meter(code),
        0xFA => ("keyed-on cashable funds", Credits),
        0xFB => ("keyed-on restricted funds", Credits),
        0xFC => ("keyed-on nonrestricted funds", Credits),
        0xFD => ("keyed-off cashable funds", Credits),
        0xFE => ("keyed-off restricted funds", Credits),
        0xFF => ("keyed-off nonrestricted funds", Credits),
        _ => return None,
    };
    Some(MeterInfo { code, name, unit })
}

/// AFT meters: even codes are amounts in cents, odd codes their counts.
fn aft_meter(code: u8) -> (&'static str, MeterUnit) {
    let name = match code & !1 {
        0xA0 => "AFT cashable in",
        0xA2 => "AFT restricted in",
        0xA4 => "AFT nonrestricted in",
        0xA6 => "AFT debit in",
        0xA8 => "AFT cashable to ticket",
        0xAA => "AFT restricted to ticket",
        0xAC => "AFT debit to ticket",
        0xAE => "AFT bonus cashable in",
        0xB0 => "AFT bonus nonrestricted in",
        0xB8 => "AFT cashable out",
        0xBA => "AFT restricted out",
        _ => "AFT nonrestricted out",
    };
    let unit = if code & 1 == 0 {
        MeterUnit::Cents
    } else {
        MeterUnit::Count
    };
    (name, unit)
}

/// The accounting denomination of a 1F denomination code, in cents (§7).
pub fn denomination_cents(code: u8) -> Option<u64> {
    Some(match code {
        0x01 => 1,
        0x02 => 5,
        0x03 => 10,
        0x04 => 25,
        0x05 => 50,
        0x06 => 100,
        0x07 => 500,
        0x08 => 1000,
        0x09 => 2000,
        0x0A => 10_000,
        0x0B => 20,
        0x0C => 200,
        0x0D => 250,
        0x0E => 2500,
        0x0F => 5000,
        0x10 => 20_000,
        0x11 => 25_000,
        0x12 => 50_000,
        0x13 => 100_000,
        0x14 => 200_000,
        0x15 => 250_000,
        0x16 => 500_000,
        0x17 => 2,
        0x18 => 3,
        0x19 => 15,
        0x1A => 40,
        _ => return None,
    })
}

/// The value of a bill denomination code (48, event 4F) in dollars: the code
/// is the BCD of an index in MON's list. SPEC-SUM App. C says `0A` = $500, in
/// conflict; host rule: map by MON, let the caller log unknown codes, never
/// reject the reply.
pub fn bill_dollars(code: u8) -> Option<u64> {
    let index = super::bcd::decode_bcd(&[code]).ok()?;
    BILL_DOLLARS.get(usize::try_from(index).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_table_is_sorted_and_unique() {
        assert!(EXCEPTIONS.windows(2).all(|w| w[0].code < w[1].code));
    }

    #[test]
    fn exception_names_and_classes() {
        assert_eq!(ExceptionCode(0x11).to_string(), "slot door opened");
        assert!(ExceptionCode(0x11).is_door());
        assert!(ExceptionCode(0x28).is_tilt());
        assert!(ExceptionCode(0x4F).is_money());
        assert!(ExceptionCode(0x7E).is_game());
        assert_eq!(ExceptionCode(0x26).to_string(), "unknown exception 26");
        assert_eq!(ExceptionCode(0x26).class(), ExceptionClass::Other);
        assert_eq!(
            ExceptionCode(0x56).info().unwrap().priority,
            Priority::Priority
        );
        assert_eq!(
            ExceptionCode(0x51).info().unwrap().priority,
            Priority::Either
        );
        assert!(ExceptionCode(0x00).is_nothing() && ExceptionCode(0x1F).is_nothing());
        assert!(!ExceptionCode(0x7F).is_nothing());
    }

    #[test]
    fn meter_widths_follow_the_cents_rule() {
        // §7: every cents meter is 5 bytes in 2F, the rest 4.
        for c in [0x0Du8, 0x10, 0x80, 0x92, 0xA0, 0xAE, 0xB0, 0xB8, 0xBA, 0xBC] {
            assert_eq!(MeterCode(c).width_2f(), Some(5), "{c:02X}");
        }
        for c in [0x00u8, 0x05, 0x0C, 0x11, 0x7F, 0x81, 0xA1, 0xBD, 0xFA] {
            assert_eq!(MeterCode(c).width_2f(), Some(4), "{c:02X}");
        }
        for c in [0x3Au8, 0x63, 0x7E, 0x94, 0xB2, 0xBE, 0xF9] {
            assert_eq!(MeterCode(c).width_2f(), None, "{c:02X}");
        }
        assert_eq!(MeterCode(0x4A).to_string(), "$500 bills accepted (count)");
        assert_eq!(
            MeterCode(0x57).to_string(),
            "$1000000 bills accepted (count)"
        );
        assert_eq!(MeterCode(0x0D).info().unwrap().unit, MeterUnit::Cents);
    }

    #[test]
    fn denominations() {
        assert_eq!(denomination_cents(0x01), Some(1));
        assert_eq!(denomination_cents(0x1A), Some(40));
        assert_eq!(denomination_cents(0x00), None);
        assert_eq!(bill_dollars(0x00), Some(1));
        assert_eq!(bill_dollars(0x10), Some(500));
        assert_eq!(bill_dollars(0x23), Some(1_000_000));
        assert_eq!(bill_dollars(0x0A), None, "not BCD: logged, not $500");
        assert_eq!(bill_dollars(0x24), None);
    }
}
