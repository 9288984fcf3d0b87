//! Property tests of the sans-IO SAS core: every poll and reply survives
//! encode → parse, whatever the chunking; arbitrary bytes never panic; the
//! link never sends the same poll twice in a row except as its one retry.

use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;

use sitelink::sas::proto::{
    Ascii, Check, DateTime, Event, EventData, ExceptionCode, Expect, ExtendedMeter, Features,
    HandpayInfo, LastBill, Link, LinkConfig, LongPoll, MachineInfo, Meter, MeterCode, MeterPoll,
    Parsed, Poll, PollDecoder, Reply, Response, ResponseParser, SasVersion, meter_delta, response,
};

fn bcd_value(width: usize) -> BoxedStrategy<u64> {
    let max = 10u64.saturating_pow(2 * width as u32);
    (0..max).boxed()
}

fn game() -> impl Strategy<Value = u16> {
    0u16..=9999
}

fn date_time() -> impl Strategy<Value = DateTime> {
    (
        0u16..=9999,
        0u8..=99,
        0u8..=99,
        0u8..=99,
        0u8..=99,
        0u8..=99,
    )
        .prop_map(|(year, month, day, hour, minute, second)| DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
}

fn long_poll() -> impl Strategy<Value = LongPoll> {
    prop_oneof![
        Just(LongPoll::Shutdown),
        Just(LongPoll::Startup),
        Just(LongPoll::SoundOff),
        Just(LongPoll::SoundOn),
        Just(LongPoll::EnableBillAcceptor),
        Just(LongPoll::DisableBillAcceptor),
        any::<bool>().prop_map(LongPoll::RealTimeEvents),
        proptest::sample::select(MeterPoll::ALL.to_vec()).prop_map(LongPoll::Meters),
        Just(LongPoll::MachineInfo),
        any::<u16>().prop_map(|seed| LongPoll::RomSignature { seed }),
        (game(), vec(any::<u8>(), 1..=10)).prop_map(|(game, codes)| LongPoll::SelectedMeters {
            game,
            codes: codes.into_iter().map(MeterCode).collect(),
        }),
        Just(LongPoll::LastBill),
        Just(LongPoll::GamesImplemented),
        Just(LongPoll::SasVersion),
        Just(LongPoll::SelectedGame),
        (any::<bool>(), game(), vec(any::<u16>(), 1..=12)).prop_map(|(alternate, game, codes)| {
            LongPoll::ExtendedMeters {
                alternate,
                game,
                codes,
            }
        }),
        Just(LongPoll::ReadDateTime),
        date_time().prop_map(LongPoll::SetDateTime),
        Just(LongPoll::HandpayInfo),
        game().prop_map(|game| LongPoll::EnabledFeatures { game }),
    ]
}

fn poll() -> impl Strategy<Value = Poll> {
    prop_oneof![
        (0u8..=0x7F).prop_map(|address| Poll::General { address }),
        (0u8..=0x7F, long_poll()).prop_map(|(address, poll)| Poll::Long { address, poll }),
    ]
}

fn sized_meter() -> impl Strategy<Value = Meter> {
    any::<u8>()
        .prop_filter_map("meter code with a known 2F width", |c| {
            MeterCode(c).width_2f().map(|w| (MeterCode(c), w))
        })
        .prop_flat_map(|(code, width)| {
            bcd_value(width).prop_map(move |value| Meter {
                code,
                value,
                width: width as u8,
            })
        })
}

fn unparsed_tail() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        (
            any::<u8>().prop_filter("unsized code", |c| MeterCode(*c).width_2f().is_none()),
            vec(any::<u8>(), 0..8)
        )
            .prop_map(|(code, rest)| {
                let mut v = vec![code];
                v.extend(rest);
                v
            }),
    ]
}

fn meters_reply() -> impl Strategy<Value = Reply> {
    proptest::sample::select(MeterPoll::ALL.to_vec()).prop_flat_map(|poll| {
        let values: Vec<_> = poll
            .layout()
            .iter()
            .map(|&(code, width)| {
                bcd_value(width).prop_map(move |value| Meter {
                    code,
                    value,
                    width: width as u8,
                })
            })
            .collect();
        values.prop_map(move |meters| Reply::Meters { poll, meters })
    })
}

fn extended_meter() -> impl Strategy<Value = ExtendedMeter> {
    (any::<u16>(), 0u8..=9).prop_flat_map(|(code, size)| {
        bcd_value(usize::from(size)).prop_map(move |value| ExtendedMeter { code, size, value })
    })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        meters_reply(),
        (
            any::<[u8; 2]>(),
            any::<[u8; 3]>(),
            any::<(u8, u8, u8, u16)>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>()
        )
            .prop_map(
                |(g, a, (d, m, p, o), t, b)| Reply::MachineInfo(MachineInfo {
                    game_id: Ascii(g),
                    additional_id: Ascii(a),
                    denomination: d,
                    max_bet: m,
                    progressive_group: p,
                    options: o,
                    paytable_id: Ascii(t),
                    base_percent: Ascii(b),
                })
            ),
        (game(), vec(sized_meter(), 0..12), unparsed_tail()).prop_map(
            |(game, meters, unparsed)| Reply::SelectedMeters {
                game,
                meters,
                unparsed
            }
        ),
        (any::<u8>(), any::<u8>(), bcd_value(4)).prop_map(|(country, denomination, count)| {
            Reply::LastBill(LastBill {
                country,
                denomination,
                count,
            })
        }),
        game().prop_map(Reply::GamesImplemented),
        (any::<[u8; 3]>(), vec(any::<u8>(), 0..=40)).prop_map(|(v, serial)| {
            Reply::SasVersion(SasVersion {
                version: Ascii(v),
                serial,
            })
        }),
        game().prop_map(Reply::SelectedGame),
        (any::<bool>(), game(), vec(extended_meter(), 0..14)).prop_map(
            |(alternate, game, meters)| Reply::ExtendedMeters {
                alternate,
                game,
                meters
            }
        ),
        date_time().prop_map(Reply::DateTime),
        (
            any::<(u8, u8, u8)>(),
            bcd_value(5),
            bcd_value(2),
            bcd_value(5),
            bcd_value(5)
        )
            .prop_map(
                |(
                    (progressive_group, level, reset_id),
                    amount,
                    partial_pay,
                    session_win,
                    session_paid,
                )| {
                    Reply::Handpay(HandpayInfo {
                        progressive_group,
                        level,
                        amount,
                        partial_pay,
                        reset_id,
                        session_win,
                        session_paid,
                    })
                }
            ),
        (game(), any::<[u8; 4]>())
            .prop_map(|(game, bytes)| Reply::Features(Features { game, bytes })),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let with = |code: u8, data: BoxedStrategy<EventData>| {
        data.prop_map(move |data| Event {
            code: ExceptionCode(code),
            data,
        })
    };
    prop_oneof![
        any::<u8>()
            .prop_filter("code without extended data", |c| {
                ![0x4F, 0x7C, 0x7E, 0x7F, 0x88, 0x89, 0x8A, 0x8B, 0x8C].contains(c)
            })
            .prop_map(|c| Event {
                code: ExceptionCode(c),
                data: EventData::None
            }),
        with(
            0x4F,
            (any::<u8>(), any::<u8>(), bcd_value(4))
                .prop_map(|(country, denomination, count)| EventData::BillAccepted {
                    country,
                    denomination,
                    count
                })
                .boxed()
        ),
        with(
            0x7C,
            (any::<u8>(), bcd_value(4), any::<u8>(), bcd_value(4))
                .prop_map(|(multiplier, multiplied_win, tax_status, bonus)| {
                    EventData::LegacyBonus {
                        multiplier,
                        multiplied_win,
                        tax_status,
                        bonus,
                    }
                })
                .boxed()
        ),
        with(
            0x7E,
            (game(), bcd_value(4), any::<u8>(), any::<u8>())
                .prop_map(
                    |(credits_wagered, coin_in_meter, wager_type, progressive_group)| {
                        EventData::GameStarted {
                            credits_wagered,
                            coin_in_meter,
                            wager_type,
                            progressive_group,
                        }
                    }
                )
                .boxed()
        ),
        with(
            0x7F,
            bcd_value(4)
                .prop_map(|win| EventData::GameEnded { win })
                .boxed()
        ),
        with(
            0x88,
            any::<(u8, u8)>()
                .prop_map(|(reel, stop)| EventData::ReelStopped { reel, stop })
                .boxed()
        ),
        with(
            0x8A,
            (game(), game())
                .prop_map(|(game, entry)| EventData::GameRecall { game, entry })
                .boxed()
        ),
        with(
            0x8B,
            (any::<bool>(), 0u8..0x80)
                .prop_map(|(held, card)| EventData::CardHeld { held, card })
                .boxed()
        ),
        with(
            0x8C,
            game()
                .prop_map(|game| EventData::GameSelected { game })
                .boxed()
        ),
        with(
            0x89,
            vec(any::<u8>(), 0..12).prop_map(EventData::Raw).boxed()
        ),
    ]
}

/// A reply and the poll shape it answers.
fn exchange() -> impl Strategy<Value = (Expect, Response)> {
    let address = 1u8..=0x7F;
    prop_oneof![
        (address.clone(), any::<u8>()).prop_map(|(address, c)| (
            Expect::General { address },
            Response::Exception(ExceptionCode(c))
        )),
        (address.clone(), event())
            .prop_map(|(address, e)| (Expect::General { address }, Response::Event(e))),
        (address.clone(), any::<u16>())
            .prop_map(|(address, s)| (Expect::General { address }, Response::RomSignature(s))),
        (address.clone(), long_poll(), event()).prop_map(|(address, p, e)| (
            Expect::Long {
                address,
                command: p.command()
            },
            Response::Event(e)
        )),
        (
            address.clone(),
            long_poll(),
            prop_oneof![
                Just(Response::Ack),
                Just(Response::Nack),
                Just(Response::Busy)
            ]
        )
            .prop_map(|(address, p, r)| (
                Expect::Long {
                    address,
                    command: p.command()
                },
                r
            )),
        (address, reply()).prop_map(|(address, r)| (
            Expect::Long {
                address,
                command: r.command()
            },
            Response::Data(r)
        )),
    ]
}

/// Splits `bytes` at the given cut sizes (the rest in one last chunk).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &c in cuts {
        let (head, tail) = rest.split_at(c.min(rest.len()));
        out.push(head.to_vec());
        rest = tail;
    }
    out.push(rest.to_vec());
    out
}

/// Feeds chunks, then the idle gap if the reply is still open.
fn feed(expect: Expect, parts: &[Vec<u8>]) -> Parsed {
    let mut p = ResponseParser::new(expect);
    let mut last = Parsed::NeedMore;
    for part in parts {
        last = p.push(part);
    }
    match last {
        Parsed::NeedMore => p.idle(),
        done => done,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_poll_round_trips(poll in poll()) {
        let bytes = poll.encode().unwrap();
        prop_assert_eq!(Poll::check(&bytes), Check::Complete(bytes.len()));
        // Every shorter prefix asks for more, never completes early.
        for n in 0..bytes.len() {
            prop_assert_eq!(Poll::check(&bytes[..n]), Check::NeedMore, "prefix {}", n);
        }
        prop_assert_eq!(Poll::parse(&bytes), Ok(poll));
    }

    #[test]
    fn a_poll_stream_decodes_the_same_in_any_chunking(
        polls in vec(poll(), 1..8),
        cuts in vec(0usize..12, 0..20),
    ) {
        let stream: Vec<u8> = polls.iter().flat_map(|p| p.encode().unwrap()).collect();
        let mut d = PollDecoder::new();
        let mut got = Vec::new();
        for part in chunks(&stream, &cuts) {
            d.push(&part);
            while let Some(p) = d.next_poll() {
                got.push(p.unwrap());
            }
        }
        prop_assert_eq!(got, polls);
        prop_assert_eq!(d.idle(), None);
    }

    #[test]
    fn every_reply_round_trips_in_any_chunking(
        (expect, response) in exchange(),
        cuts in vec(0usize..8, 0..12),
    ) {
        let bytes = response.encode(expect.address()).unwrap();
        let whole = feed(expect, std::slice::from_ref(&bytes));
        prop_assert_eq!(&whole, &Parsed::Done(response.clone()));
        let split = feed(expect, &chunks(&bytes, &cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn a_flipped_bit_in_a_crc_frame_is_never_accepted_as_the_same_reply(
        (expect, response) in exchange(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut bytes = response.encode(expect.address()).unwrap();
        // Only frames with a CRC are protected; one-byte replies are not.
        prop_assume!(bytes.len() >= 4);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert_ne!(feed(expect, &[bytes]), Parsed::Done(response));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        address in any::<u8>(),
        command in any::<u8>(),
        general in any::<bool>(),
        bytes in vec(any::<u8>(), 0..300),
        cuts in vec(0usize..40, 0..10),
    ) {
        let expect = if general {
            Expect::General { address }
        } else {
            Expect::Long { address, command }
        };
        let mut p = ResponseParser::new(expect);
        for part in chunks(&bytes, &cuts) {
            p.push(&part);
        }
        p.idle();
        prop_assert!(p.trailing().len() <= p.received());
        let _ = response::check(expect, &bytes, true);
        let _ = response::parse(expect, &bytes);
        let _ = Poll::check(&bytes);
        let _ = Poll::parse(&bytes);
        let mut d = PollDecoder::new();
        d.push(&bytes);
        let mut n = 0;
        while d.next_poll().is_some() {
            n += 1;
            prop_assert!(n <= bytes.len(), "the decoder always makes progress");
        }
        d.idle();
    }

    #[test]
    fn meter_delta_inverts_a_wrapping_counter(
        digits in 1u32..=18,
        start in any::<u64>(),
        step in any::<u64>(),
    ) {
        let modulus = 10u64.pow(digits);
        let (start, step) = (start % modulus, step % modulus);
        let now = (start + step) % modulus;
        prop_assert_eq!(meter_delta(start, now, digits), step);
    }
}

/// What the line can do to a link between its transmissions.
#[derive(Clone, Debug)]
enum Step {
    Wait(u64),
    Reply(Vec<u8>),
    Foreign,
    Submit(LongPoll),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..400).prop_map(Step::Wait),
        prop_oneof![
            Just(vec![0x00]),
            Just(vec![0x7E]),
            Just(vec![0x01]),
            Just(vec![0x01, 0x00]),
            Just(vec![0x01, 0xFF, 0x6F, 0xED, 0x3E]),
            vec(any::<u8>(), 1..8),
        ]
        .prop_map(Step::Reply),
        Just(Step::Foreign),
        long_poll().prop_map(Step::Submit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn link_never_repeats_a_poll_except_one_retry_and_keeps_spacing(
        steps in vec(step(), 1..200),
    ) {
        let config = LinkConfig::default();
        let start = Instant::now();
        let mut link = Link::new(1, config.clone(), start).unwrap();
        let mut now = start;
        // (time, bytes, retry) of sends since the last foreign poll.
        let mut sent: Vec<(Instant, Vec<u8>, bool)> = Vec::new();
        let mut last_sent_at: Option<Instant> = None;
        for s in steps {
            match s {
                Step::Wait(ms) => now += Duration::from_millis(ms),
                Step::Reply(bytes) => link.handle_bytes(now, &bytes),
                Step::Foreign => {
                    link.note_foreign_poll(now);
                    sent.clear();
                }
                Step::Submit(poll) => {
                    let _ = link.submit(poll);
                }
            }
            if now >= link.poll_timeout() {
                link.handle_timeout(now);
            }
            if let Some(t) = link.poll_transmit(now) {
                // The spacing is between polls to this EGM; a global (the
                // sync, the filler that acknowledges) is to every EGM.
                if t.bytes != [0x80] {
                    if let Some(prev) = last_sent_at {
                        prop_assert!(now - prev >= config.poll_interval, "spacing");
                    }
                    last_sent_at = Some(now);
                }
                if let Some((_, prev, _)) = sent.last() {
                    let global = t.bytes == [0x80];
                    if *prev == t.bytes && !global {
                        prop_assert!(t.retry, "same poll twice without being a retry: {:02X?}", t.bytes);
                    }
                    if let [.., (_, a, _), (_, b, _)] = sent.as_slice() {
                        prop_assert!(
                            global || !(*a == t.bytes && *b == t.bytes),
                            "a third identical poll: {:02X?}", t.bytes
                        );
                    }
                }
                if t.retry {
                    prop_assert_eq!(sent.last().map(|s| &s.1), Some(&t.bytes), "a retry repeats the previous poll");
                }
                sent.push((now, t.bytes, t.retry));
            }
            while link.poll_event().is_some() {}
        }
    }
}
