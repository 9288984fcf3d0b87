//! The simulated EGMs, sans-IO: bytes from the host in, reply bytes out,
//! time as an argument. Polls are decoded and replies encoded by
//! `sas::proto`; this module holds what an EGM does in between: meters that
//! move as games are played, the exception queue and the implied-ACK rules
//! of §5 (modelled on MON, the certified EGM side the document cites), the
//! long polls `sas::proto` knows, and a fault plan.
//!
//! Implied ACK, as MON keeps it: the EGM remembers the first two bytes of the
//! poll it last answered (`80|addr`, or `addr cmd`). The next poll is
//! - the same two bytes: a NACK, the EGM sends the same reply again; the
//!   second repeat is the final NACK: no reply, and the exception it carried
//!   stays queued;
//! - anything else (another command, a general poll, a global, a poll to
//!   another address): an ACK, the exception it carried is gone.
//!
//! Start-up and loop break (no poll on the line for 5 s): the EGM ignores
//! polls to itself until it has seen a global poll or a poll to another
//! address, and chirps its address every 200 ms while the loop is broken.

use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::journal::{Entry, FaultKind};
use super::queue::{DEFAULT_CAPACITY, ExceptionQueue, Pending, Pushed};
use crate::sas::proto::response::{MAX_SERIAL_LEN, SasVersion};
use crate::sas::proto::{
    Ascii, Event, EventData, ExceptionCode, ExtendedMeter, Features, HandpayInfo, LastBill,
    LongPoll, MachineInfo, Meter, MeterCode, Poll, PollDecoder, PollError, Priority, Reply,
    Response, denomination_cents,
};

/// No address byte on the line for this long is a loop break (§4).
pub const LOOP_BREAK: Duration = Duration::from_secs(5);
/// Chirp spacing during a loop break (§4, MON `ChirpInterval`).
pub const CHIRP_INTERVAL: Duration = Duration::from_millis(200);
/// MON: the second repeat of a poll is the final NACK.
const FINAL_NACK: u8 = 2;
/// Games one `tick` may catch up, so a long pause cannot stall the line.
const MAX_CATCH_UP: u32 = 1000;
/// Bytes of BCD for meters in a 6F/AF reply: wider than 2F's 4, which is
/// what extended meters are for.
const EXTENDED_METER_SIZE: u8 = 5;
/// US (§14), for bills.
const COUNTRY_US: u8 = 0x37;

/// A bill the simulated acceptor takes: its meter (40–47), its denomination
/// code in 48 and 4F (MON's index, §14) and its non-RTE exception (§6).
#[derive(Clone, Copy, Debug)]
struct Bill {
    dollars: u64,
    meter: u8,
    denomination: u8,
    exception: u8,
}

const BILLS: [Bill; 6] = [
    Bill {
        dollars: 1,
        meter: 0x40,
        denomination: 0x00,
        exception: 0x47,
    },
    Bill {
        dollars: 5,
        meter: 0x42,
        denomination: 0x02,
        exception: 0x48,
    },
    Bill {
        dollars: 10,
        meter: 0x43,
        denomination: 0x03,
        exception: 0x49,
    },
    Bill {
        dollars: 20,
        meter: 0x44,
        denomination: 0x04,
        exception: 0x4A,
    },
    Bill {
        dollars: 50,
        meter: 0x46,
        denomination: 0x06,
        exception: 0x4B,
    },
    Bill {
        dollars: 100,
        meter: 0x47,
        denomination: 0x07,
        exception: 0x4C,
    },
];

/// Meter codes that count per game in 2F/6F for a game other than 0.
const PER_GAME: [u8; 8] = [0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x1C, 0x1F];

/// A configuration the model refuses.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("address {0} is not an EGM address (1 to 127)")]
    BadAddress(u8),
    #[error("address {0} is given twice")]
    DuplicateAddress(u8),
    #[error("no EGM on the line")]
    NoEgm,
    #[error("{name} must be between 0 and 100 %, got {value} %")]
    BadPercent { name: &'static str, value: f64 },
    #[error("fault percentages add up to {0} %, more than 100 %")]
    FaultsOver100(f64),
    #[error("game rate must be finite and at least 0, got {0}")]
    BadGameRate(f64),
    #[error("denomination code {0:02X} is not in the 1F table")]
    BadDenomination(u8),
    #[error("serial number is {0} bytes, at most {MAX_SERIAL_LEN}")]
    SerialTooLong(usize),
    #[error("the exception queue needs room for at least one entry")]
    EmptyQueue,
    #[error("{0}")]
    BadValue(String),
}

/// One EGM's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EgmConfig {
    pub address: u8,
    /// Mean games per second (Poisson); 0 = none unless `play` is called.
    pub game_rate: f64,
    /// 1F accounting denomination code (01 = $0.01).
    pub denomination: u8,
    /// Largest bet in credits.
    pub max_bet: u64,
    /// Games implemented (LP 51); only game 1 is played.
    pub games: u16,
    pub queue_capacity: usize,
    /// LP 54.
    pub serial: String,
    /// A win of at least this many credits locks up as a handpay.
    pub handpay_limit: u64,
    /// Chance per game of a jackpot handpay regardless of the win.
    pub jackpot_chance: f64,
    /// Chance per game that the player cashes out afterwards.
    pub cashout_chance: f64,
    /// Chance per game that an attendant opens the slot door afterwards.
    pub door_chance: f64,
    /// Mean slot-door openings per second regardless of play (Poisson): each
    /// opening and closing is an exception on its own, as on a quiet floor.
    pub door_rate: f64,
    /// How long the door stays open and a handpay stays locked up.
    pub door_open_for: Duration,
    pub handpay_for: Duration,
    /// LP A0 announces 40 ms polling (F3 bit 0); without it a host must
    /// keep 200 ms between polls to this EGM.
    pub fast_polling: bool,
}

impl EgmConfig {
    pub fn new(address: u8) -> EgmConfig {
        EgmConfig {
            address,
            game_rate: 1.0,
            denomination: 0x01,
            max_bet: 10,
            games: 1,
            queue_capacity: DEFAULT_CAPACITY,
            serial: format!("SIM{address:03}"),
            handpay_limit: 120_000,
            jackpot_chance: 0.002,
            cashout_chance: 0.02,
            door_chance: 0.005,
            door_rate: 0.0,
            door_open_for: Duration::from_secs(3),
            handpay_for: Duration::from_secs(5),
            fast_polling: true,
        }
    }

    fn check(&self) -> Result<(), ModelError> {
        if !(1..=0x7F).contains(&self.address) {
            return Err(ModelError::BadAddress(self.address));
        }
        if !self.game_rate.is_finite() || self.game_rate < 0.0 {
            return Err(ModelError::BadGameRate(self.game_rate));
        }
        if !self.door_rate.is_finite() || self.door_rate < 0.0 {
            return Err(ModelError::BadValue(format!(
                "door rate {} must be 0 or more per second",
                self.door_rate
            )));
        }
        if denomination_cents(self.denomination).is_none() {
            return Err(ModelError::BadDenomination(self.denomination));
        }
        if self.serial.len() > MAX_SERIAL_LEN {
            return Err(ModelError::SerialTooLong(self.serial.len()));
        }
        if self.queue_capacity == 0 {
            return Err(ModelError::EmptyQueue);
        }
        if self.max_bet == 0 || self.games == 0 || self.games > 9999 {
            return Err(ModelError::BadValue(format!(
                "max bet {} and games {} must be at least 1 (games at most 9999)",
                self.max_bet, self.games
            )));
        }
        for (name, p) in [
            ("jackpot chance", self.jackpot_chance),
            ("cash-out chance", self.cashout_chance),
            ("door chance", self.door_chance),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ModelError::BadPercent {
                    name,
                    value: p * 100.0,
                });
            }
        }
        Ok(())
    }
}

/// Per-poll fault probabilities (0–1, exclusive of each other: one roll per
/// poll addressed to the EGM) and the fault parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// The poll is lost: no reply and no effect.
    pub no_reply: f64,
    /// The reply's CRC is broken. One-byte replies (exception codes, ACK,
    /// NACK) have no CRC, so a roll that lands on one leaves it intact.
    pub corrupt: f64,
    /// The reply goes out `slow_delay` late.
    pub slow: f64,
    pub slow_delay: Duration,
    /// The EGM goes silent for `unplug_for`.
    pub unplug: f64,
    pub unplug_for: Duration,
}

impl FaultPlan {
    /// From percentages, as the command line gives them.
    pub fn from_percents(
        no_reply: f64,
        corrupt: f64,
        slow: f64,
        slow_delay: Duration,
    ) -> Result<FaultPlan, ModelError> {
        let plan = FaultPlan {
            no_reply: no_reply / 100.0,
            corrupt: corrupt / 100.0,
            slow: slow / 100.0,
            slow_delay,
            ..FaultPlan::default()
        };
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), ModelError> {
        let parts = [
            ("no-reply", self.no_reply),
            ("corrupt", self.corrupt),
            ("slow", self.slow),
            ("unplug", self.unplug),
        ];
        for (name, p) in parts {
            if !(0.0..=1.0).contains(&p) {
                return Err(ModelError::BadPercent {
                    name,
                    value: p * 100.0,
                });
            }
        }
        let sum: f64 = parts.iter().map(|(_, p)| p).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ModelError::FaultsOver100(sum * 100.0));
        }
        Ok(())
    }
}

/// Faults applied so far, for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Polls addressed to the EGM while it could hear them.
    pub polls: u64,
    pub no_reply: u64,
    /// Replies with a CRC that went out broken.
    pub corrupt: u64,
    pub slow: u64,
    pub unplug: u64,
}

/// The meters the simulated EGM keeps, in credits unless named a count.
/// Values never wrap here; the wire does (§7: only the low digits that fit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meters {
    pub coin_in: u64,
    pub coin_out: u64,
    /// Hand-paid jackpots.
    pub jackpot: u64,
    pub cancelled_credits: u64,
    pub games_played: u64,
    pub games_won: u64,
    pub games_lost: u64,
    pub credits_from_bills: u64,
    pub current_credits: u64,
    pub games_since_power_up: u64,
    pub games_since_door_closed: u64,
    /// Counts of $1, $5, $10, $20, $50, $100 bills.
    pub bills: [u64; 6],
}

impl Meters {
    /// The value of a 2F/6F meter code, `None` for meters this EGM lacks
    /// (left out of replies, §7).
    pub fn get(&self, code: MeterCode) -> Option<u64> {
        Some(match code.0 {
            0x00 => self.coin_in,
            // Every win is paid to the credit meter by the machine.
            0x01 | 0x1C => self.coin_out,
            0x02 | 0x1F => self.jackpot,
            // No tickets or hand-paid cancelled credits: known zeros, sent
            // as such (SPEC-SUM §4.4); 0D–10 are cents, 5 bytes in 2F.
            0x03 | 0x0D..=0x10 => 0,
            0x04 => self.cancelled_credits,
            0x05 => self.games_played,
            0x06 => self.games_won,
            0x07 => self.games_lost,
            0x0B => self.credits_from_bills,
            0x0C => self.current_credits,
            0x22 => self.coin_out + self.jackpot,
            0x23 => self.jackpot,
            // No coins: the drop is the bills.
            0x24 | 0x3F => self.credits_from_bills,
            0x25 => self.games_since_power_up,
            0x26 => self.games_since_door_closed,
            0x3E => self.bills.iter().sum(),
            c => {
                let i = BILLS.iter().position(|b| b.meter == c)?;
                self.bills[i]
            }
        })
    }
}

/// The low digits of a meter that fit in `width` BCD bytes.
pub fn wrap(value: u64, width: usize) -> u64 {
    match u32::try_from(width * 2)
        .ok()
        .and_then(|d| 10u64.checked_pow(d))
    {
        Some(m) => value % m,
        None => value,
    }
}

/// A reply to send, `delay` after the poll (zero unless a slow fault hit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub address: u8,
    pub bytes: Vec<u8>,
    pub delay: Duration,
}

/// What the EGM made of a poll it heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard<'a> {
    Poll(&'a Poll),
    /// A long poll the EGM could not accept (bad CRC, length or value):
    /// NACKed when addressed to it.
    Refused {
        address: u8,
        command: u8,
    },
}

impl Heard<'_> {
    fn address(&self) -> u8 {
        match self {
            Heard::Poll(p) => p.address(),
            Heard::Refused { address, .. } => *address,
        }
    }

    /// The first two bytes MON compares for the implied ACK.
    fn key(&self) -> Key {
        match self {
            Heard::Poll(Poll::General { .. }) => Key::General,
            Heard::Poll(Poll::Long { poll, .. }) => Key::Long(poll.command()),
            Heard::Refused { command, .. } => Key::Long(*command),
        }
    }

    fn describe(&self) -> String {
        match self {
            Heard::Poll(p) => p.to_string(),
            Heard::Refused { address, command } => {
                format!("refused long poll {command:02X} to address {address}")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    General,
    Long(u8),
}

/// The last reply, waiting for its implied ACK.
#[derive(Clone, Debug)]
struct Last {
    key: Key,
    bytes: Vec<u8>,
    /// The exception it carried.
    item: Option<u64>,
    nacks: u8,
    intact: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sync {
    /// Ignores polls to itself until it hears a global or a foreign poll.
    AwaitingOther,
    Synced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Silence {
    Hearing,
    Until(Instant),
    Indefinite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Roll {
    Clean,
    NoReply,
    Corrupt,
    Slow,
    Unplug,
}

/// One simulated EGM.
#[derive(Debug)]
pub struct Egm {
    cfg: EgmConfig,
    faults: FaultPlan,
    start: Instant,
    game_rng: Xoshiro256PlusPlus,
    fault_rng: Xoshiro256PlusPlus,
    meters: Meters,
    last_bill: Option<usize>,
    locked: bool,
    sound: bool,
    bills_enabled: bool,
    rte: bool,
    door_closes_at: Option<Instant>,
    handpay_resets_at: Option<Instant>,
    /// The handpay locked up now, as LP 1B reports it.
    handpay: Option<HandpayInfo>,
    next_game: Option<Instant>,
    next_door: Option<Instant>,
    queue: ExceptionQueue,
    next_seq: u64,
    last: Option<Last>,
    sync: Sync,
    last_heard: Instant,
    next_chirp: Option<Instant>,
    silence: Silence,
    stats: FaultStats,
    journal: Vec<Entry>,
}

impl Egm {
    /// A fresh EGM (meters at zero, play enabled, not synced). The seed
    /// fixes its games and, separately, its faults: the same seed plays the
    /// same games whatever faults are injected.
    pub fn new(
        cfg: EgmConfig,
        faults: FaultPlan,
        seed: u64,
        now: Instant,
    ) -> Result<Egm, ModelError> {
        cfg.check()?;
        faults.check()?;
        let mix = |stream: u64| {
            seed ^ u64::from(cfg.address).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (stream << 56)
        };
        let mut egm = Egm {
            queue: ExceptionQueue::new(cfg.queue_capacity),
            game_rng: Xoshiro256PlusPlus::seed_from_u64(mix(1)),
            fault_rng: Xoshiro256PlusPlus::seed_from_u64(mix(2)),
            cfg,
            faults,
            start: now,
            meters: Meters::default(),
            last_bill: None,
            locked: false,
            sound: true,
            bills_enabled: true,
            rte: false,
            door_closes_at: None,
            handpay_resets_at: None,
            handpay: None,
            next_game: None,
            next_door: None,
            next_seq: 1,
            last: None,
            sync: Sync::AwaitingOther,
            last_heard: now,
            next_chirp: None,
            silence: Silence::Hearing,
            stats: FaultStats::default(),
            journal: Vec::new(),
        };
        egm.next_game = egm.game_gap().map(|g| now + g);
        egm.next_door = egm.door_gap().map(|g| now + g);
        Ok(egm)
    }

    pub fn address(&self) -> u8 {
        self.cfg.address
    }

    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    pub fn sound_on(&self) -> bool {
        self.sound
    }

    pub fn bills_enabled(&self) -> bool {
        self.bills_enabled
    }

    pub fn rte(&self) -> bool {
        self.rte
    }

    /// Takes what the journal gathered since the last call.
    pub fn take_journal(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.journal)
    }

    fn t_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// Raises an exception now: into the priority set or the queue, as the
    /// tables class it (Q/P codes are queued: legacy reporting, §9).
    pub fn raise(&mut self, now: Instant, event: Event) {
        let seq = self.next_seq;
        let priority = event.code.info().map(|i| i.priority) == Some(Priority::Priority);
        let code = event.code;
        let in_flight = self.last.as_ref().and_then(|l| l.item);
        let pushed = self.queue.push(Pending { seq, event }, priority, in_flight);
        if pushed == Pushed::Duplicate {
            return;
        }
        self.next_seq += 1;
        let t_ms = self.t_ms(now);
        self.journal.push(Entry::Exception {
            address: self.cfg.address,
            seq,
            t_ms,
            code: code.0,
            name: code.to_string(),
            games: self.meters.games_played,
        });
        if let Pushed::Overflow { dropped } = pushed {
            self.journal.push(Entry::Dropped {
                address: self.cfg.address,
                seq: dropped,
                t_ms,
            });
            let overflow = ExceptionCode(0x70);
            if !self.queue.has_priority(overflow) {
                self.raise(now, plain(overflow));
            }
        }
    }

    /// Goes silent (hears nothing, says nothing) or hears again.
    pub fn set_silent(&mut self, now: Instant, silent: bool) {
        let was = self.silence != Silence::Hearing;
        self.silence = if silent {
            Silence::Indefinite
        } else {
            Silence::Hearing
        };
        if was != silent {
            self.note_silence(now, silent);
        }
    }

    fn note_silence(&mut self, now: Instant, silent: bool) {
        let t_ms = self.t_ms(now);
        self.journal.push(Entry::Silent {
            address: self.cfg.address,
            t_ms,
            silent,
        });
    }

    fn silent(&mut self, now: Instant) -> bool {
        match self.silence {
            Silence::Hearing => false,
            Silence::Indefinite => true,
            Silence::Until(t) if now < t => true,
            Silence::Until(_) => {
                self.silence = Silence::Hearing;
                self.note_silence(now, false);
                false
            }
        }
    }

    /// Opens the slot door now; it closes by itself after `door_open_for`.
    pub fn open_door(&mut self, now: Instant) {
        if self.door_closes_at.is_none() {
            self.raise(now, plain(ExceptionCode(0x11)));
            self.door_closes_at = Some(now + self.cfg.door_open_for);
        }
    }

    /// A bill goes in, if the acceptor is enabled; `which` indexes $1, $5,
    /// $10, $20, $50, $100. Returns whether it was taken.
    pub fn insert_bill(&mut self, now: Instant, which: usize) -> bool {
        let Some(bill) = BILLS.get(which).copied() else {
            return false;
        };
        if !self.bills_enabled {
            return false;
        }
        let cents = denomination_cents(self.cfg.denomination)
            .unwrap_or(1)
            .max(1);
        let credits = bill.dollars * 100 / cents;
        self.meters.credits_from_bills += credits;
        self.meters.current_credits += credits;
        self.meters.bills[which] += 1;
        self.last_bill = Some(which);
        let event = if self.rte {
            Event {
                code: ExceptionCode::BILL_ACCEPTED,
                data: EventData::BillAccepted {
                    country: COUNTRY_US,
                    denomination: bill.denomination,
                    count: wrap(self.meters.bills[which], 4),
                },
            }
        } else {
            plain(ExceptionCode(bill.exception))
        };
        self.raise(now, event);
        true
    }

    fn can_play(&self) -> bool {
        !self.locked && self.door_closes_at.is_none() && self.handpay_resets_at.is_none()
    }

    /// Plays one game now, if play is possible (not locked, no open door,
    /// no handpay lockup, credits or a bill to buy them). Returns whether a
    /// game was played.
    pub fn play(&mut self, now: Instant) -> bool {
        if !self.can_play() {
            return false;
        }
        let bet = self.game_rng.random_range(1..=self.cfg.max_bet);
        if self.meters.current_credits < bet {
            let which = self.game_rng.random_range(0..BILLS.len());
            if !self.insert_bill(now, which) || self.meters.current_credits < bet {
                return false;
            }
        }
        let m = &mut self.meters;
        m.coin_in += bet;
        m.current_credits -= bet;
        m.games_played += 1;
        m.games_since_power_up += 1;
        m.games_since_door_closed += 1;
        let coin_in_meter = wrap(m.coin_in, 4);
        self.raise(
            now,
            Event {
                code: ExceptionCode::GAME_STARTED,
                data: EventData::GameStarted {
                    credits_wagered: u16::try_from(wrap(bet, 2)).unwrap_or(0),
                    coin_in_meter,
                    wager_type: 0,
                    progressive_group: 0,
                },
            },
        );
        let jackpot = self.game_rng.random_bool(self.cfg.jackpot_chance);
        let mut win = if jackpot {
            self.cfg.handpay_limit
        } else {
            self.win_for(bet)
        };
        let handpay = win >= self.cfg.handpay_limit;
        let m = &mut self.meters;
        if handpay {
            m.jackpot += win;
            m.games_won += 1;
        } else if win > 0 {
            m.coin_out += win;
            m.current_credits += win;
            m.games_won += 1;
        } else {
            m.games_lost += 1;
            win = 0;
        }
        self.raise(
            now,
            Event {
                code: ExceptionCode::GAME_ENDED,
                data: EventData::GameEnded { win: wrap(win, 4) },
            },
        );
        if handpay {
            // A jackpot win, not a progressive: level 40, amount in credits.
            self.handpay = Some(HandpayInfo {
                level: 0x40,
                amount: wrap(win, 5),
                reset_id: 0x01,
                ..HandpayInfo::default()
            });
            self.raise(now, plain(ExceptionCode::HANDPAY_PENDING));
            self.handpay_resets_at = Some(now + self.cfg.handpay_for);
        } else if self.meters.current_credits > 0
            && self.game_rng.random_bool(self.cfg.cashout_chance)
        {
            self.meters.cancelled_credits += self.meters.current_credits;
            self.meters.current_credits = 0;
            self.raise(now, plain(ExceptionCode(0x66)));
        }
        if self.game_rng.random_bool(self.cfg.door_chance) {
            self.open_door(now);
        }
        let t_ms = self.t_ms(now);
        self.journal.push(Entry::Game {
            address: self.cfg.address,
            t_ms,
            bet,
            win,
            handpay,
            meters: self.meters,
        });
        true
    }

    /// A paytable that returns a bit under the bet on average.
    fn win_for(&mut self, bet: u64) -> u64 {
        let r: f64 = self.game_rng.random();
        let mult = match r {
            r if r < 0.55 => 0,
            r if r < 0.80 => 1,
            r if r < 0.93 => 2,
            r if r < 0.985 => 4,
            r if r < 0.998 => 10,
            _ => 100,
        };
        bet * mult
    }

    fn game_gap(&mut self) -> Option<Duration> {
        self.poisson_gap(self.cfg.game_rate)
    }

    fn door_gap(&mut self) -> Option<Duration> {
        self.poisson_gap(self.cfg.door_rate)
    }

    /// The wait to the next event of a Poisson process; none at rate 0 (and
    /// then no draw, so the games of a seed stay the same).
    fn poisson_gap(&mut self, rate: f64) -> Option<Duration> {
        if rate <= 0.0 {
            return None;
        }
        let u: f64 = self.game_rng.random();
        let secs = -(1.0 - u).ln() / rate;
        Some(Duration::from_secs_f64(secs.min(3600.0)))
    }

    /// Lets time pass: games, doors closing, handpays reset, loop break.
    /// Returns a chirp (the EGM's address) when one is due.
    pub fn tick(&mut self, now: Instant) -> Option<u8> {
        if self.door_closes_at.is_some_and(|t| t <= now) {
            self.door_closes_at = None;
            self.meters.games_since_door_closed = 0;
            self.raise(now, plain(ExceptionCode(0x12)));
        }
        if self.handpay_resets_at.is_some_and(|t| t <= now) {
            self.handpay_resets_at = None;
            self.handpay = None;
            self.raise(now, plain(ExceptionCode(0x52)));
        }
        if let Some(at) = self.next_door.filter(|&t| t <= now) {
            self.open_door(at);
            self.next_door = self.door_gap().map(|g| at + g);
        }
        let mut caught_up = 0;
        while let Some(at) = self.next_game.filter(|&t| t <= now) {
            if caught_up == MAX_CATCH_UP {
                self.next_game = self.game_gap().map(|g| now + g);
                break;
            }
            self.play(at);
            caught_up += 1;
            self.next_game = self.game_gap().map(|g| at + g);
        }
        let silent = self.silent(now);
        if now.saturating_duration_since(self.last_heard) < LOOP_BREAK {
            return None;
        }
        if self.next_chirp.is_none() {
            // MON: a loop break is a link down and an implied NACK; the
            // exception in flight stays queued.
            self.last = None;
            self.sync = Sync::AwaitingOther;
            self.next_chirp = Some(now);
            let t_ms = self.t_ms(now);
            self.journal.push(Entry::LoopBreak {
                address: self.cfg.address,
                t_ms,
            });
        }
        match self.next_chirp {
            Some(t) if t <= now => {
                self.next_chirp = Some(now + CHIRP_INTERVAL);
                (!silent).then_some(self.cfg.address)
            }
            _ => None,
        }
    }

    /// When `tick` has something to do next.
    pub fn deadline(&self) -> Instant {
        let chirp = self.next_chirp.unwrap_or(self.last_heard + LOOP_BREAK);
        let silence = match self.silence {
            Silence::Until(t) => Some(t),
            _ => None,
        };
        [
            self.next_game,
            self.next_door,
            self.door_closes_at,
            self.handpay_resets_at,
            silence,
        ]
        .into_iter()
        .flatten()
        .fold(chirp, Instant::min)
    }

    /// One poll heard on the line, for whatever address.
    fn hear(&mut self, now: Instant, heard: Heard<'_>) -> Option<Output> {
        if self.silent(now) {
            return None;
        }
        let address = heard.address();
        let mine = address == self.cfg.address;
        if mine && self.sync == Sync::Synced {
            match self.roll() {
                Roll::NoReply => {
                    self.stats.no_reply += 1;
                    self.fault(now, FaultKind::NoReply, &heard);
                    return None;
                }
                Roll::Unplug => {
                    self.stats.unplug += 1;
                    self.fault(now, FaultKind::Unplug, &heard);
                    self.silence = Silence::Until(now + self.faults.unplug_for);
                    self.note_silence(now, true);
                    return None;
                }
                roll => return self.answer(now, heard, roll),
            }
        }
        self.last_heard = now;
        self.next_chirp = None;
        if !mine {
            // Global or foreign: an implied ACK and the sync an unsynced
            // EGM waits for. A global long poll would be obeyed here; none
            // of the ones this EGM knows is a global one.
            self.ack(now);
            self.sync = Sync::Synced;
        }
        None
    }

    fn roll(&mut self) -> Roll {
        self.stats.polls += 1;
        let f = &self.faults;
        let u: f64 = self.fault_rng.random();
        let mut edge = 0.0;
        for (p, roll) in [
            (f.no_reply, Roll::NoReply),
            (f.corrupt, Roll::Corrupt),
            (f.slow, Roll::Slow),
            (f.unplug, Roll::Unplug),
        ] {
            edge += p;
            if u < edge {
                return roll;
            }
        }
        Roll::Clean
    }

    fn fault(&mut self, now: Instant, fault: FaultKind, heard: &Heard<'_>) {
        let t_ms = self.t_ms(now);
        self.journal.push(Entry::Fault {
            address: self.cfg.address,
            t_ms,
            fault,
            poll: heard.describe(),
        });
    }

    /// A poll to this EGM, synced, that reached it.
    fn answer(&mut self, now: Instant, heard: Heard<'_>, roll: Roll) -> Option<Output> {
        self.last_heard = now;
        self.next_chirp = None;
        let key = heard.key();
        if let Some(last) = self.last.as_mut().filter(|l| l.key == key) {
            last.nacks += 1;
            if last.nacks >= FINAL_NACK {
                self.last = None;
                return None;
            }
            let bytes = last.bytes.clone();
            return Some(self.send(now, &heard, bytes, roll));
        }
        self.ack(now);
        let (bytes, item) = match heard {
            Heard::Poll(Poll::General { .. }) => self.general_reply(),
            Heard::Poll(Poll::Long { poll, .. }) => {
                // MON: in RTE mode a long poll meets a pending event first;
                // that long poll was not answered (§6).
                if self.rte && !self.queue.is_empty() {
                    self.general_reply()
                } else {
                    (self.long_reply(now, poll)?, None)
                }
            }
            Heard::Refused { .. } => {
                // MON sends the NACK without waiting for an implied ACK.
                let out = self.send(now, &heard, vec![self.cfg.address | 0x80], roll);
                return Some(out);
            }
        };
        self.last = Some(Last {
            key,
            bytes: bytes.clone(),
            item,
            nacks: 0,
            intact: true,
        });
        Some(self.send(now, &heard, bytes, roll))
    }

    /// Applies the fault roll to a reply and notes whether it left intact.
    fn send(&mut self, now: Instant, heard: &Heard<'_>, mut bytes: Vec<u8>, roll: Roll) -> Output {
        let has_crc = bytes.len() >= 4;
        let mut delay = Duration::ZERO;
        let mut intact = true;
        match roll {
            Roll::Corrupt if has_crc => {
                if let Some(b) = bytes.last_mut() {
                    *b ^= 0xFF;
                }
                self.stats.corrupt += 1;
                self.fault(now, FaultKind::Corrupt, heard);
                intact = false;
            }
            Roll::Slow => {
                delay = self.faults.slow_delay;
                self.stats.slow += 1;
                self.fault(now, FaultKind::Slow, heard);
                intact = false;
            }
            _ => {}
        }
        if let Some(last) = self.last.as_mut() {
            last.intact = intact;
        }
        Output {
            address: self.cfg.address,
            bytes,
            delay,
        }
    }

    /// The host's poll implied the ACK of the last reply.
    fn ack(&mut self, now: Instant) {
        let Some(last) = self.last.take() else {
            return;
        };
        if let Some(seq) = last.item
            && self.queue.remove(seq)
        {
            let t_ms = self.t_ms(now);
            self.journal.push(Entry::Acked {
                address: self.cfg.address,
                seq,
                t_ms,
                intact: last.intact,
            });
        }
    }

    fn general_reply(&self) -> (Vec<u8>, Option<u64>) {
        let address = self.cfg.address;
        let (event, item) = match self.queue.peek() {
            Some(p) => (p.event.clone(), Some(p.seq)),
            None => (plain(ExceptionCode::NONE), None),
        };
        let response = if self.rte {
            Response::Event(event)
        } else {
            Response::Exception(event.code)
        };
        (encode(&response, address), item)
    }

    fn command(&mut self, now: Instant, command: &str) -> Option<Vec<u8>> {
        let t_ms = self.t_ms(now);
        self.journal.push(Entry::Command {
            address: self.cfg.address,
            t_ms,
            command: command.to_string(),
        });
        Some(vec![self.cfg.address])
    }

    /// The reply to a long poll, `None` for one this EGM ignores (§13: no
    /// NACK for a poll it lacks).
    fn long_reply(&mut self, now: Instant, poll: &LongPoll) -> Option<Vec<u8>> {
        let reply = match poll {
            LongPoll::Shutdown => {
                self.locked = true;
                return self.command(now, "lock");
            }
            LongPoll::Startup => {
                self.locked = false;
                return self.command(now, "unlock");
            }
            LongPoll::SoundOff => {
                self.sound = false;
                return self.command(now, "sound-off");
            }
            LongPoll::SoundOn => {
                self.sound = true;
                return self.command(now, "sound-on");
            }
            LongPoll::EnableBillAcceptor => {
                self.bills_enabled = true;
                return self.command(now, "bills-on");
            }
            LongPoll::DisableBillAcceptor => {
                self.bills_enabled = false;
                return self.command(now, "bills-off");
            }
            LongPoll::RealTimeEvents(on) => {
                self.rte = *on;
                return self.command(now, if *on { "rte-on" } else { "rte-off" });
            }
            LongPoll::Meters(mp) => Reply::Meters {
                poll: *mp,
                meters: mp
                    .layout()
                    .iter()
                    .map(|&(code, width)| Meter {
                        code,
                        value: wrap(self.meters.get(code).unwrap_or(0), width),
                        width: width as u8,
                    })
                    .collect(),
            },
            LongPoll::MachineInfo => Reply::MachineInfo(MachineInfo {
                game_id: Ascii(*b"SL"),
                additional_id: Ascii(*b"000"),
                denomination: self.cfg.denomination,
                max_bet: u8::try_from(self.cfg.max_bet).unwrap_or(0xFF),
                progressive_group: 0,
                options: 0,
                paytable_id: Ascii(*b"SL0001"),
                base_percent: Ascii(*b"9550"),
            }),
            LongPoll::SelectedMeters { game, codes } => Reply::SelectedMeters {
                game: *game,
                meters: codes
                    .iter()
                    .filter_map(|&code| {
                        let width = code.width_2f()?;
                        let value = self.game_meter(*game, code)?;
                        Some(Meter {
                            code,
                            value: wrap(value, width),
                            width: width as u8,
                        })
                    })
                    .collect(),
                unparsed: Vec::new(),
            },
            LongPoll::ExtendedMeters {
                alternate,
                game,
                codes,
            } => Reply::ExtendedMeters {
                alternate: *alternate,
                game: *game,
                meters: codes
                    .iter()
                    .filter_map(|&code| {
                        let value = self.game_meter(*game, MeterCode(u8::try_from(code).ok()?))?;
                        Some(ExtendedMeter {
                            code,
                            size: EXTENDED_METER_SIZE,
                            value: wrap(value, usize::from(EXTENDED_METER_SIZE)),
                        })
                    })
                    .collect(),
            },
            LongPoll::LastBill => Reply::LastBill(match self.last_bill {
                Some(i) => LastBill {
                    country: COUNTRY_US,
                    denomination: BILLS[i].denomination,
                    count: wrap(self.meters.bills[i], 4),
                },
                None => LastBill {
                    country: 0,
                    denomination: 0,
                    count: 0,
                },
            }),
            LongPoll::GamesImplemented => Reply::GamesImplemented(self.cfg.games),
            LongPoll::SasVersion => Reply::SasVersion(SasVersion {
                version: Ascii(*b"602"),
                serial: self.cfg.serial.clone().into_bytes(),
            }),
            LongPoll::SelectedGame => Reply::SelectedGame(1),
            // Legacy reporting: the current lockup, all zeros outside one (§9).
            LongPoll::HandpayInfo => Reply::Handpay(self.handpay.unwrap_or_default()),
            LongPoll::EnabledFeatures { game } => Reply::Features(Features {
                game: *game,
                // F2 bit 3: 6F/AF meters; F3 bit 0: 40 ms polling.
                bytes: [0, 0x08, u8::from(self.cfg.fast_polling), 0],
            }),
            // Not simulated: ignored, as an EGM ignores what it lacks.
            LongPoll::RomSignature { .. } | LongPoll::ReadDateTime | LongPoll::SetDateTime(_) => {
                return None;
            }
        };
        Some(encode(&Response::Data(reply), self.cfg.address))
    }

    /// A meter for 2F/6F: game 0 is the machine; game 1 is the one played,
    /// so its per-game meters equal the machine's; other games implemented
    /// read zero; a game out of range has no meters (MON).
    fn game_meter(&self, game: u16, code: MeterCode) -> Option<u64> {
        match game {
            0 => self.meters.get(code),
            g if g > self.cfg.games || !PER_GAME.contains(&code.0) => None,
            1 => self.meters.get(code),
            _ => Some(0),
        }
    }
}

fn plain(code: ExceptionCode) -> Event {
    Event {
        code,
        data: EventData::None,
    }
}

/// Encodes a reply; the model only builds values that fit their fields, so
/// a failure is a bug, answered with silence rather than a panic.
fn encode(response: &Response, address: u8) -> Vec<u8> {
    response.encode(address).unwrap_or_else(|e| {
        tracing::error!("EGM {address}: cannot encode {response:?}: {e}");
        Vec::new()
    })
}

/// Several EGMs on one multidrop line: every EGM hears every poll; only the
/// addressed one answers; nobody answers a global poll (address 0).
///
/// The bytes carry no wakeup bit (a PTY or TCP cannot), so frames are found
/// by the idle gap: the shell calls [`Line::idle`] when the line has been
/// quiet for longer than the inter-byte limit, and the next byte starts a
/// frame. After a frame it cannot read, the line drops bytes until then,
/// as an EGM waits for the next wakeup byte.
#[derive(Debug)]
pub struct Line {
    egms: Vec<Egm>,
    decoder: PollDecoder,
    discard: bool,
    start: Instant,
}

impl Line {
    pub fn new(
        configs: Vec<EgmConfig>,
        faults: FaultPlan,
        seed: u64,
        now: Instant,
    ) -> Result<Line, ModelError> {
        if configs.is_empty() {
            return Err(ModelError::NoEgm);
        }
        let mut egms: Vec<Egm> = Vec::with_capacity(configs.len());
        for cfg in configs {
            if egms.iter().any(|e| e.address() == cfg.address) {
                return Err(ModelError::DuplicateAddress(cfg.address));
            }
            egms.push(Egm::new(cfg, faults.clone(), seed, now)?);
        }
        Ok(Line {
            egms,
            decoder: PollDecoder::new(),
            discard: false,
            start: now,
        })
    }

    /// Milliseconds since the line started, the journal's time base.
    pub fn t_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn egm(&self, address: u8) -> Option<&Egm> {
        self.egms.iter().find(|e| e.address() == address)
    }

    pub fn egm_mut(&mut self, address: u8) -> Option<&mut Egm> {
        self.egms.iter_mut().find(|e| e.address() == address)
    }

    /// Bytes from the host; returns the replies, in order.
    pub fn receive(&mut self, now: Instant, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        if self.discard {
            return out;
        }
        self.decoder.push(bytes);
        while let Some(decoded) = self.decoder.next_poll() {
            let refused = match decoded {
                Ok(poll) => {
                    out.extend(self.dispatch(now, Heard::Poll(&poll)));
                    continue;
                }
                Err(
                    PollError::BadCrc { address, command }
                    | PollError::BadLength {
                        address, command, ..
                    }
                    | PollError::BadValue {
                        address, command, ..
                    }
                    | PollError::Field {
                        address, command, ..
                    },
                ) => Some(Heard::Refused { address, command }),
                // MON skips a command it does not know without taking it
                // as an ACK.
                Err(PollError::UnknownCommand { .. }) => None,
                Err(PollError::Empty | PollError::Truncated { .. }) => continue,
            };
            if let Some(heard) = refused {
                out.extend(self.dispatch(now, heard));
            }
            // The rest of the frame is not a poll: wait for the gap.
            self.decoder.idle();
            self.discard = true;
            break;
        }
        out
    }

    fn dispatch(&mut self, now: Instant, heard: Heard<'_>) -> Vec<Output> {
        self.egms
            .iter_mut()
            .filter_map(|e| e.hear(now, heard))
            .collect()
    }

    /// The line has been quiet past the inter-byte limit: the next byte
    /// starts a frame.
    pub fn idle(&mut self) {
        self.decoder.idle();
        self.discard = false;
    }

    /// Lets time pass on every EGM; returns the chirps due.
    pub fn tick(&mut self, now: Instant) -> Vec<u8> {
        self.egms.iter_mut().filter_map(|e| e.tick(now)).collect()
    }

    /// When `tick` has something to do next.
    pub fn deadline(&self) -> Option<Instant> {
        self.egms.iter().map(Egm::deadline).min()
    }

    /// Every EGM goes silent or hears again (the line's cable).
    pub fn set_silent(&mut self, now: Instant, silent: bool) {
        for e in &mut self.egms {
            e.set_silent(now, silent);
        }
    }

    /// Takes the journal of every EGM, address by address.
    pub fn take_journal(&mut self) -> Vec<Entry> {
        self.egms.iter_mut().flat_map(Egm::take_journal).collect()
    }
}
