//! Model tests: byte sequences of the protocol document in, expected bytes
//! out; the implied-ACK rules; meters; commands; fault rates.

use std::time::{Duration, Instant};

use super::journal::{Entry, FaultKind};
use super::model::{EgmConfig, FaultPlan, LOOP_BREAK, Line, wrap};
use crate::sas::proto::{
    Event, EventData, ExceptionCode, Expect, LongPoll, MeterCode, MeterPoll, Parsed, Poll, Reply,
    Response, ResponseParser, crc_ok,
};

use crate::sas::proto::hex;

/// A quiet EGM (no games by themselves, no random doors or handpays).
fn quiet(address: u8) -> EgmConfig {
    EgmConfig {
        game_rate: 0.0,
        jackpot_chance: 0.0,
        door_chance: 0.0,
        cashout_chance: 0.0,
        ..EgmConfig::new(address)
    }
}

struct Rig {
    line: Line,
    now: Instant,
}

impl Rig {
    fn new(configs: Vec<EgmConfig>, faults: FaultPlan) -> Rig {
        let now = Instant::now();
        let mut rig = Rig {
            line: Line::new(configs, faults, 7, now).unwrap(),
            now,
        };
        // §5: an EGM syncs on a global poll before it answers its own.
        assert!(rig.send(&[0x80]).is_empty());
        rig
    }

    fn one(address: u8) -> Rig {
        Rig::new(vec![quiet(address)], FaultPlan::default())
    }

    /// One frame in (followed by the idle gap), the replies out.
    fn send(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.now += Duration::from_millis(40);
        let out = self.line.receive(self.now, bytes);
        self.line.idle();
        out.into_iter().map(|o| o.bytes).collect()
    }

    /// Exactly one reply.
    fn reply(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = self.send(bytes);
        assert_eq!(out.len(), 1, "replies to {bytes:02X?}: {out:02X?}");
        out.remove(0)
    }

    fn poll(&mut self, address: u8, poll: LongPoll) -> Vec<u8> {
        self.reply(&Poll::Long { address, poll }.encode().unwrap())
    }

    fn raise(&mut self, address: u8, code: u8) {
        let now = self.now;
        self.line.egm_mut(address).unwrap().raise(
            now,
            Event {
                code: ExceptionCode(code),
                data: EventData::None,
            },
        );
    }

    fn journal(&mut self) -> Vec<Entry> {
        self.line.take_journal()
    }
}

fn parse(expect: Expect, bytes: &[u8]) -> Response {
    let mut p = ResponseParser::new(expect);
    match p.push(bytes) {
        Parsed::Done(r) => r,
        Parsed::NeedMore => match p.idle() {
            Parsed::Done(r) => r,
            other => panic!("{bytes:02X?}: {other:?}"),
        },
        other => panic!("{bytes:02X?}: {other:?}"),
    }
}

fn lp(command: u8) -> Expect {
    Expect::Long {
        address: 1,
        command,
    }
}

#[test]
fn document_frames_in_and_out() {
    let mut r = Rig::one(1);
    // §6: nothing pending is 00.
    assert_eq!(r.reply(&[0x81]), [0x00]);
    // §2/§3: shutdown, type S without data, CRC 51 08 -> ACK = the address.
    assert_eq!(r.reply(&hex("01 01 51 08")), [0x01]);
    assert!(r.line.egm(1).unwrap().is_locked());
    // §3: 2F for game 0, meters 00, 01, 0C: each 4 bytes of BCD (§7).
    let reply = r.reply(&hex("01 2F 05 00 00 00 01 0C FB 3C"));
    let mut want = hex("01 2F 11 0000 00 00000000 01 00000000 0C 00000000");
    crate::sas::proto::push_crc(&mut want);
    assert_eq!(reply, want);
    // §3: 1F goes without CRC; the reply is 24 bytes (§7).
    let reply = r.reply(&hex("01 1F"));
    assert_eq!(reply.len(), 24);
    assert!(crc_ok(&reply));
    let Response::Data(Reply::MachineInfo(info)) = parse(lp(0x1F), &reply) else {
        panic!()
    };
    assert_eq!(info.denomination, 0x01);
    assert_eq!(info.base_percent_hundredths(), Some(9550));
    // §3: RTE on, CRC 45 D1 -> ACK.
    assert_eq!(r.reply(&hex("01 0E 01 45 D1")), [0x01]);
    // §6: in RTE mode nothing pending is the frame SPK saw from real EGMs.
    assert_eq!(r.reply(&[0x81]), hex("01FF001CA5"));
    // §3: game locked (6F) as an RTE frame, the bytes SPK quotes. A poll
    // to another address first: a second GP in a row would be a NACK.
    r.raise(1, 0x6F);
    assert!(r.send(&[0x82]).is_empty());
    assert_eq!(r.reply(&[0x81]), hex("01FF6FED3E"));
    // §5: a bad CRC is NACKed (addr|80).
    assert_eq!(r.reply(&hex("01 02 51 08")), [0x81]);
    // §13: a long poll the EGM lacks (7E here) gets no reply at all.
    assert!(r.send(&hex("01 7E")).is_empty());
    // §13: A0 for game 0: F2 bit 3 (6F/AF) and F3 bit 0 (40 ms polling).
    let mut a0 = hex("01 A0 00 00");
    crate::sas::proto::crc::push_crc(&mut a0);
    let reply = r.reply(&a0);
    assert_eq!(reply.len(), 12);
    assert_eq!(reply[..8], hex("01 A0 00 00 00 08 01 00"));
}

#[test]
fn fixed_meter_polls_have_the_document_lengths() {
    let mut r = Rig::one(3);
    for (mp, len) in [
        (MeterPoll::Basic, 28),
        (MeterPoll::CoinIn, 8),
        (MeterPoll::GamesSince, 8),
        (MeterPoll::Totals, 24),
        (MeterPoll::CurrentCredits, 8),
    ] {
        let reply = r.poll(3, LongPoll::Meters(mp));
        assert_eq!(reply.len(), len, "{mp:?}");
        assert_eq!(reply[..2], [0x03, mp.command()]);
        assert!(crc_ok(&reply));
        // Another command in between: never the same long poll twice.
        r.send(&[0x83]);
    }
    let reply = r.poll(3, LongPoll::SasVersion);
    let Response::Data(Reply::SasVersion(v)) = parse(
        Expect::Long {
            address: 3,
            command: 0x54,
        },
        &reply,
    ) else {
        panic!()
    };
    assert_eq!(v.number(), Some(602));
    assert_eq!(v.serial, b"SIM003");
}

#[test]
fn repeated_general_poll_resends_and_next_poll_acknowledges() {
    let mut r = Rig::one(1);
    for code in [0x11, 0x12, 0x13] {
        r.raise(1, code);
    }
    assert_eq!(r.reply(&[0x81]), [0x11]);
    // Same GP again = NACK: the same exception again.
    assert_eq!(r.reply(&[0x81]), [0x11]);
    // The second repeat is the final NACK: silence, and 11 stays queued.
    assert!(r.send(&[0x81]).is_empty());
    assert_eq!(r.reply(&[0x81]), [0x11]);
    // A long poll implies the ACK: 11 is gone.
    r.poll(1, LongPoll::Meters(MeterPoll::CurrentCredits));
    assert_eq!(r.reply(&[0x81]), [0x12]);
    // A poll to another address implies the ACK too.
    assert!(r.send(&[0x82]).is_empty());
    assert_eq!(r.reply(&[0x81]), [0x13]);
    // So does a global poll.
    assert!(r.send(&[0x80]).is_empty());
    assert_eq!(r.reply(&[0x81]), [0x00]);
    let acked: Vec<(u64, bool)> = r
        .journal()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Acked { seq, intact, .. } => Some((seq, intact)),
            _ => None,
        })
        .collect();
    assert_eq!(acked, [(1, true), (2, true), (3, true)]);
}

#[test]
fn repeated_long_poll_resends_the_same_bytes() {
    let mut r = Rig::one(1);
    let first = r.poll(1, LongPoll::Meters(MeterPoll::GamesPlayed));
    r.line.egm_mut(1).unwrap().play(r.now);
    // The retry gets the reply it repeats, not the meters of now.
    let again = r.poll(1, LongPoll::Meters(MeterPoll::GamesPlayed));
    assert_eq!(first, again);
    assert!(
        r.send(
            &Poll::Long {
                address: 1,
                poll: LongPoll::Meters(MeterPoll::GamesPlayed)
            }
            .encode()
            .unwrap()
        )
        .is_empty()
    );
    r.send(&[0x81]);
    let fresh = r.poll(1, LongPoll::Meters(MeterPoll::GamesPlayed));
    assert_eq!(fresh, {
        let mut f = hex("01 15 00000001");
        crate::sas::proto::push_crc(&mut f);
        f
    });
}

#[test]
fn queue_overflow_loses_the_oldest_and_reports_70_first() {
    let cfg = EgmConfig {
        queue_capacity: 3,
        ..quiet(1)
    };
    let mut r = Rig::new(vec![cfg], FaultPlan::default());
    for code in [0x11, 0x12, 0x13, 0x14, 0x15] {
        r.raise(1, code);
    }
    let journal = r.journal();
    let dropped: Vec<u64> = journal
        .iter()
        .filter_map(|e| match e {
            Entry::Dropped { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [1, 2]);
    // 70 is a priority exception, raised once while pending.
    let seventies = journal
        .iter()
        .filter(|e| matches!(e, Entry::Exception { code: 0x70, .. }))
        .count();
    assert_eq!(seventies, 1);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(r.reply(&[0x81])[0]);
        r.send(&[0x82]);
    }
    assert_eq!(got, [0x70, 0x13, 0x14, 0x15, 0x00]);
}

#[test]
fn an_unsynced_egm_ignores_its_polls() {
    let now = Instant::now();
    let mut line = Line::new(vec![quiet(1)], FaultPlan::default(), 1, now).unwrap();
    assert!(line.receive(now, &[0x81]).is_empty());
    line.idle();
    // A poll to another address syncs it.
    assert!(line.receive(now, &[0x85]).is_empty());
    line.idle();
    assert_eq!(line.receive(now, &[0x81])[0].bytes, [0x00]);
}

#[test]
fn loop_break_chirps_and_needs_a_resync() {
    let mut r = Rig::one(4);
    r.raise(4, 0x11);
    assert_eq!(r.reply(&[0x84]), [0x11]);
    let t = r.now + LOOP_BREAK;
    assert_eq!(r.line.tick(t), [0x04]);
    // The next chirp 200 ms later, not before.
    assert!(r.line.tick(t + Duration::from_millis(100)).is_empty());
    assert_eq!(r.line.tick(t + Duration::from_millis(200)), [0x04]);
    assert!(
        r.line
            .take_journal()
            .iter()
            .any(|e| matches!(e, Entry::LoopBreak { address: 4, .. }))
    );
    r.now = t + Duration::from_millis(250);
    assert!(r.send(&[0x84]).is_empty(), "unsynced after the loop break");
    assert!(r.send(&[0x80]).is_empty());
    // The loop break was an implied NACK: 11 is still there.
    assert_eq!(r.reply(&[0x84]), [0x11]);
}

#[test]
fn meters_add_up_after_games() {
    let mut r = Rig::one(1);
    let n = 500;
    let mut played = 0;
    for _ in 0..n {
        let now = r.now;
        if r.line.egm_mut(1).unwrap().play(now) {
            played += 1;
        }
    }
    assert_eq!(played, n);
    let journal = r.journal();
    let games: Vec<_> = journal
        .iter()
        .filter_map(|e| match e {
            Entry::Game {
                bet, win, meters, ..
            } => Some((*bet, *win, *meters)),
            _ => None,
        })
        .collect();
    assert_eq!(games.len(), n);
    let m = *r.line.egm(1).unwrap().meters();
    assert_eq!(games.last().unwrap().2, m);
    assert_eq!(m.coin_in, games.iter().map(|g| g.0).sum::<u64>());
    assert_eq!(m.coin_out, games.iter().map(|g| g.1).sum::<u64>());
    assert_eq!(m.games_played, n as u64);
    assert_eq!(m.games_won + m.games_lost, m.games_played);
    assert_eq!(
        m.credits_from_bills + m.coin_out,
        m.coin_in + m.current_credits + m.cancelled_credits
    );
    let starts = journal
        .iter()
        .filter(|e| matches!(e, Entry::Exception { code: 0x7E, .. }))
        .count();
    assert_eq!(starts, n);
    // The wire agrees: 0F (BCD4 x6) and 2F for the same meters.
    let reply = r.poll(1, LongPoll::Meters(MeterPoll::Basic));
    let Response::Data(Reply::Meters { meters, .. }) = parse(lp(0x0F), &reply) else {
        panic!()
    };
    let values: Vec<u64> = meters.iter().map(|x| x.value).collect();
    assert_eq!(
        values,
        [0, m.coin_in, m.coin_out, m.credits_from_bills, 0, n as u64]
    );
    assert!(meters.iter().all(|x| x.width == 4));
    r.send(&[0x81]);
    let reply = r.poll(
        1,
        LongPoll::SelectedMeters {
            game: 0,
            codes: vec![MeterCode(0x0D), MeterCode::GAMES_PLAYED, MeterCode(0x3A)],
        },
    );
    let Response::Data(Reply::SelectedMeters { meters, .. }) = parse(lp(0x2F), &reply) else {
        panic!()
    };
    // 0D (cents, 5 bytes) reads zero; 3A is unknown, left out (§7).
    let got: Vec<(u8, u64, u8)> = meters
        .iter()
        .map(|x| (x.code.0, x.value, x.width))
        .collect();
    assert_eq!(got, [(0x0D, 0, 5), (0x05, n as u64, 4)]);
}

#[test]
fn bcd2_meters_wrap_on_the_wire() {
    assert_eq!(wrap(123_456, 2), 3456);
    assert_eq!(wrap(99_999_999 + 7, 4), 6);
    let mut r = Rig::one(1);
    for _ in 0..10_003 {
        let now = r.now;
        assert!(r.line.egm_mut(1).unwrap().play(now));
    }
    r.journal();
    let reply = r.poll(1, LongPoll::Meters(MeterPoll::GamesSince));
    assert_eq!(reply[2..6], [0x00, 0x03, 0x00, 0x03]);
    r.send(&[0x81]);
    let reply = r.poll(1, LongPoll::Meters(MeterPoll::GamesPlayed));
    assert_eq!(reply[2..6], [0x00, 0x01, 0x00, 0x03]);
}

#[test]
fn lock_sound_and_bill_acceptor_are_obeyed_with_an_ack() {
    let mut r = Rig::one(2);
    let egm = |r: &Rig| {
        let e = r.line.egm(2).unwrap();
        (e.is_locked(), e.sound_on(), e.bills_enabled())
    };
    assert_eq!(egm(&r), (false, true, true));
    for (poll, state) in [
        (LongPoll::Shutdown, (true, true, true)),
        (LongPoll::SoundOff, (true, false, true)),
        (LongPoll::DisableBillAcceptor, (true, false, false)),
        (LongPoll::Startup, (false, false, false)),
        (LongPoll::SoundOn, (false, true, false)),
        (LongPoll::EnableBillAcceptor, (false, true, true)),
    ] {
        assert_eq!(r.poll(2, poll.clone()), [0x02], "{poll:?}");
        assert_eq!(egm(&r), state, "{poll:?}");
    }
    // Locked: no game.
    r.poll(2, LongPoll::Shutdown);
    let now = r.now;
    assert!(!r.line.egm_mut(2).unwrap().play(now));
    let commands: Vec<String> = r
        .journal()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Command { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        [
            "lock",
            "sound-off",
            "bills-off",
            "unlock",
            "sound-on",
            "bills-on",
            "lock"
        ]
    );
    // Without credits and with bills off the player cannot play.
    r.poll(2, LongPoll::Startup);
    r.poll(2, LongPoll::DisableBillAcceptor);
    let now = r.now;
    assert!(!r.line.egm_mut(2).unwrap().play(now));
}

#[test]
fn multidrop_only_the_addressed_egm_answers() {
    let mut r = Rig::new(vec![quiet(1), quiet(2)], FaultPlan::default());
    r.raise(2, 0x19);
    assert_eq!(r.line.receive(r.now, &[0x81])[0].address, 1);
    r.line.idle();
    let out = r.line.receive(r.now, &[0x82]);
    assert_eq!((out[0].address, out[0].bytes.clone()), (2, vec![0x19]));
    r.line.idle();
    let frame = Poll::Long {
        address: 0,
        poll: LongPoll::Meters(MeterPoll::CoinIn),
    }
    .encode()
    .unwrap();
    assert!(r.send(&frame).is_empty(), "nobody answers a global");
    // The global acknowledged 19 at EGM 2.
    assert_eq!(r.reply(&[0x82]), [0x00]);
}

#[test]
fn rte_long_poll_meets_the_pending_event_first() {
    let mut r = Rig::one(1);
    r.poll(1, LongPoll::RealTimeEvents(true));
    let now = r.now;
    assert!(r.line.egm_mut(1).unwrap().play(now));
    let want_start = r.poll(1, LongPoll::Meters(MeterPoll::CurrentCredits));
    // A bill first (no credits yet), as 4F with data in RTE mode.
    let Response::Event(e) = parse(lp(0x1A), &want_start) else {
        panic!()
    };
    assert_eq!(e.code, ExceptionCode::BILL_ACCEPTED);
    assert!(matches!(
        e.data,
        EventData::BillAccepted {
            country: 0x37,
            count: 1,
            ..
        }
    ));
    // Repeating that long poll is a NACK: the same event frame.
    assert_eq!(
        r.poll(1, LongPoll::Meters(MeterPoll::CurrentCredits)),
        want_start
    );
    // A general poll acknowledges it and gets the game start with its data.
    let Response::Event(e) = parse(Expect::General { address: 1 }, &r.reply(&[0x81])) else {
        panic!()
    };
    let coin_in = r.line.egm(1).unwrap().meters().coin_in;
    assert!(matches!(
        e.data,
        EventData::GameStarted { coin_in_meter, .. } if coin_in_meter == coin_in
    ));
}

#[test]
fn garbage_is_dropped_until_the_idle_gap() {
    let mut r = Rig::one(1);
    // `01 99` is no poll; without the gap, 81 would be misread from its tail.
    assert!(r.line.receive(r.now, &[0x01, 0x99, 0x81]).is_empty());
    assert!(r.line.receive(r.now, &[0x81]).is_empty());
    r.line.idle();
    assert_eq!(r.reply(&[0x81]), [0x00]);
    // Split across reads, a poll still completes.
    assert!(r.line.receive(r.now, &[0x01, 0x2F, 0x05]).is_empty());
    let out = r.line.receive(r.now, &hex("00 00 00 01 0C FB 3C"));
    assert_eq!(out.len(), 1);
}

#[test]
fn faults_occur_at_the_configured_rates() {
    let faults = FaultPlan {
        no_reply: 0.10,
        corrupt: 0.05,
        slow: 0.05,
        slow_delay: Duration::from_millis(80),
        ..FaultPlan::default()
    };
    let mut r = Rig::new(vec![quiet(1)], faults);
    let n: usize = 20_000;
    let (mut silent, mut bad, mut late) = (0u32, 0u32, 0u32);
    for i in 0..n {
        // Rotate through twelve long polls: a lost poll must not make the
        // next one a repeat of the last answered (a NACK, then a final NACK).
        let mp = MeterPoll::ALL[i % MeterPoll::ALL.len()];
        let frame = Poll::Long {
            address: 1,
            poll: LongPoll::Meters(mp),
        }
        .encode()
        .unwrap();
        r.now += Duration::from_millis(40);
        let out = r.line.receive(r.now, &frame);
        r.line.idle();
        match out.first() {
            None => silent += 1,
            Some(o) if !crc_ok(&o.bytes) => bad += 1,
            Some(o) if o.delay == Duration::from_millis(80) => late += 1,
            Some(o) => assert!(o.delay.is_zero()),
        }
    }
    let rate = |k: u32| f64::from(k) / n as f64;
    // 20 000 polls: the standard error of 10 % is 0.2 %, of 5 % 0.15 %.
    assert!(
        (rate(silent) - 0.10).abs() < 0.01,
        "no reply {}",
        rate(silent)
    );
    assert!((rate(bad) - 0.05).abs() < 0.008, "corrupt {}", rate(bad));
    assert!((rate(late) - 0.05).abs() < 0.008, "slow {}", rate(late));
    let stats = r.line.egm(1).unwrap().stats();
    assert_eq!(
        (stats.no_reply, stats.corrupt, stats.slow),
        (u64::from(silent), u64::from(bad), u64::from(late))
    );
    let journal = r.journal();
    let count = |k: FaultKind| {
        journal
            .iter()
            .filter(|e| matches!(e, Entry::Fault { fault, .. } if *fault == k))
            .count() as u32
    };
    assert_eq!(
        (count(FaultKind::NoReply), count(FaultKind::Corrupt)),
        (silent, bad)
    );
}

#[test]
fn a_corrupted_exception_is_acked_as_not_intact() {
    let faults = FaultPlan {
        corrupt: 1.0,
        ..FaultPlan::default()
    };
    let mut r = Rig::new(vec![quiet(1)], faults);
    r.poll(1, LongPoll::RealTimeEvents(true));
    r.raise(1, 0x11);
    let bad = r.reply(&[0x81]);
    assert!(!crc_ok(&bad));
    r.send(&[0x82]);
    let acked: Vec<bool> = r
        .journal()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Acked { intact, .. } => Some(intact),
            _ => None,
        })
        .collect();
    assert_eq!(acked, [false]);
}

#[test]
fn unplug_fault_silences_for_its_period() {
    let faults = FaultPlan {
        unplug: 1.0,
        unplug_for: Duration::from_secs(2),
        ..FaultPlan::default()
    };
    let mut r = Rig::new(vec![quiet(1)], faults);
    assert!(r.send(&[0x81]).is_empty());
    assert!(r.send(&[0x80]).is_empty());
    let silent: Vec<bool> = r
        .journal()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Silent { silent, .. } => Some(silent),
            _ => None,
        })
        .collect();
    assert_eq!(silent, [true]);
    r.line.tick(r.now + Duration::from_secs(3));
    assert!(
        r.journal()
            .iter()
            .any(|e| matches!(e, Entry::Silent { silent: false, .. }))
    );
}

#[test]
fn games_follow_the_rate() {
    let cfg = EgmConfig {
        game_rate: 10.0,
        ..quiet(1)
    };
    let now = Instant::now();
    let mut line = Line::new(vec![cfg], FaultPlan::default(), 3, now).unwrap();
    for s in 1..=100 {
        line.tick(now + Duration::from_millis(100 * s));
    }
    // 10 s at 10 games/s: Poisson, 100 ± 10 (one sigma).
    let played = line.egm(1).unwrap().meters().games_played;
    assert!((60..=140).contains(&played), "{played}");
}

#[test]
fn bad_configurations_are_refused() {
    let now = Instant::now();
    let f = FaultPlan::default();
    assert!(Line::new(vec![quiet(0)], f.clone(), 0, now).is_err());
    assert!(Line::new(vec![quiet(1), quiet(1)], f.clone(), 0, now).is_err());
    assert!(Line::new(vec![], f.clone(), 0, now).is_err());
    assert!(FaultPlan::from_percents(60.0, 50.0, 0.0, Duration::ZERO).is_err());
    assert!(FaultPlan::from_percents(-1.0, 0.0, 0.0, Duration::ZERO).is_err());
    let bad_denom = EgmConfig {
        denomination: 0x00,
        ..quiet(1)
    };
    assert!(Line::new(vec![bad_denom], f, 0, now).is_err());
}

#[test]
fn door_rate_raises_lone_door_exceptions_without_games() {
    let start = Instant::now();
    let cfg = EgmConfig {
        door_rate: 1.0,
        // Nobody polls, so nothing leaves the queue: room for the minute.
        queue_capacity: 200,
        ..quiet(1)
    };
    let mut line = Line::new(vec![cfg], FaultPlan::default(), 3, start).unwrap();
    // A minute of virtual time, each deadline in turn (bounded).
    let end = start + Duration::from_secs(60);
    let mut now = start;
    for _ in 0..10_000 {
        let Some(next) = line.deadline().filter(|&t| t <= end) else {
            break;
        };
        now = next.max(now);
        line.tick(now);
    }
    let raised: Vec<(u64, u8)> = line
        .take_journal()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Exception { t_ms, code, .. } => Some((t_ms, code)),
            _ => None,
        })
        .collect();
    let opens = raised.iter().filter(|r| r.1 == 0x11).count();
    // Poisson at 1/s with the door held 3 s: about one opening every 4 s.
    assert!((8..=25).contains(&opens), "{opens} openings: {raised:?}");
    // Open, closed, open, closed...: each alone, 3 s apart inside a pair.
    for pair in raised.chunks_exact(2) {
        assert_eq!((pair[0].1, pair[1].1), (0x11, 0x12), "{raised:?}");
        assert_eq!(pair[1].0 - pair[0].0, 3000, "{raised:?}");
    }
    assert!(!raised.iter().any(|r| r.1 == 0x7E), "no games");
}
