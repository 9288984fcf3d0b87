//! Property tests of the sans-IO ADB core: messages, shell v2 packets and
//! sync packets survive encode → decode whatever the chunking; arbitrary
//! bytes never panic a decoder or a connection; a host and a simulated TV
//! agree on a whole session however TCP splits the bytes.

use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;

use sitelink::adb::proto::message::{MAX_PAYLOAD, VERSION_MIN, VERSION_SKIP_CHECKSUM};
use sitelink::adb::proto::sync::MAX_DATA;
use sitelink::adb::proto::{
    AdbKey, Banner, Command, Config, Connection, Decoded, Device, DeviceConfig, DeviceEvent, Event,
    Features, Message, MessageDecoder, ShellDecoder, ShellMode, ShellPacket, ShellRequest, State,
    SyncExpect, SyncReply, SyncReplyDecoder, SyncRequest, SyncRequestDecoder, WindowSize,
};

/// Splits `bytes` at the given cut lengths (the rest is the last chunk).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &c in cuts {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(c.min(rest.len()));
        out.push(head.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

/// Runs a decoder over chunks and collects every frame; panics on Invalid.
fn decode_chunks<T, E: std::fmt::Debug>(
    pieces: &[Vec<u8>],
    mut decode: impl FnMut(&mut &[u8]) -> Decoded<T, E>,
) -> Vec<T> {
    let mut out = Vec::new();
    for piece in pieces {
        let mut input = &piece[..];
        loop {
            match decode(&mut input) {
                Decoded::Done(t) => out.push(t),
                Decoded::NeedMore => break,
                Decoded::Invalid(e) => panic!("invalid: {e:?}"),
            }
        }
        assert!(input.is_empty(), "NeedMore left input unread");
    }
    out
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::sample::select(Command::ALL.to_vec()),
        any::<u32>(),
        any::<u32>(),
        vec(any::<u8>(), 0..600),
    )
        .prop_map(|(command, arg0, arg1, payload)| Message::new(command, arg0, arg1, payload))
}

fn shell_packet() -> impl Strategy<Value = ShellPacket> {
    let data = || vec(any::<u8>(), 0..300);
    prop_oneof![
        data().prop_map(ShellPacket::Stdin),
        data().prop_map(ShellPacket::Stdout),
        data().prop_map(ShellPacket::Stderr),
        any::<u8>().prop_map(ShellPacket::Exit),
        Just(ShellPacket::CloseStdin),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(r, c, x, y)| {
            ShellPacket::WindowSize(WindowSize {
                rows: r,
                cols: c,
                x_pixels: x,
                y_pixels: y,
            })
        }),
    ]
}

fn path() -> impl Strategy<Value = String> {
    "/[a-z0-9_ ,.é/-]{0,40}"
}

fn sync_request() -> impl Strategy<Value = SyncRequest> {
    prop_oneof![
        path().prop_map(SyncRequest::Stat),
        path().prop_map(SyncRequest::List),
        path().prop_map(SyncRequest::Recv),
        (path(), any::<u32>()).prop_map(|(path, mode)| SyncRequest::Send { path, mode }),
        vec(any::<u8>(), 0..300).prop_map(SyncRequest::Data),
        any::<u32>().prop_map(|mtime| SyncRequest::Done { mtime }),
        Just(SyncRequest::Quit),
    ]
}

fn sync_reply() -> impl Strategy<Value = SyncReply> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(mode, size, mtime)| SyncReply::Stat { mode, size, mtime }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            "[a-zA-Z0-9._é-]{0,30}"
        )
            .prop_map(|(mode, size, mtime, name)| SyncReply::Dent {
                mode,
                size,
                mtime,
                name
            }),
        Just(SyncReply::ListDone),
        vec(any::<u8>(), 0..300).prop_map(SyncReply::Data),
        Just(SyncReply::Done),
        Just(SyncReply::Okay),
        "[ -~]{0,60}".prop_map(SyncReply::Fail),
    ]
}

/// The request a reply answers, which the host's decoder is told.
fn expect_for(reply: &SyncReply, fail_as: SyncExpect) -> SyncExpect {
    match reply {
        SyncReply::Stat { .. } => SyncExpect::Stat,
        SyncReply::Dent { .. } | SyncReply::ListDone => SyncExpect::List,
        SyncReply::Data(_) | SyncReply::Done => SyncExpect::Recv,
        SyncReply::Okay => SyncExpect::Send,
        SyncReply::Fail(_) => fail_as,
    }
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    vec(0usize..64, 0..64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip_in_any_chunking(
        msgs in vec(message(), 1..8),
        cuts in cuts(),
        verify in any::<bool>(),
    ) {
        let bytes: Vec<u8> = msgs.iter().flat_map(Message::encode).collect();
        let mut dec = MessageDecoder::new(MAX_PAYLOAD);
        // The encoder always writes the sum, so checking it changes nothing.
        dec.set_verify_checksum(verify);
        let got = decode_chunks(&chunks(&bytes, &cuts), |i| dec.decode(i));
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn message_decoder_never_panics(
        bytes in vec(any::<u8>(), 0..400),
        cuts in cuts(),
        max in 0u32..300,
        verify in any::<bool>(),
    ) {
        let mut dec = MessageDecoder::new(max);
        dec.set_verify_checksum(verify);
        // Where the current message started and how far the decoder read.
        let (mut start, mut seen) = (0usize, 0usize);
        'feed: for piece in chunks(&bytes, &cuts) {
            let mut input = &piece[..];
            loop {
                let before = input.len();
                let outcome = dec.decode(&mut input);
                seen += before - input.len();
                match outcome {
                    Decoded::Done(m) => {
                        prop_assert!(m.payload.len() <= max as usize);
                        // A checked message re-encodes to exactly its bytes.
                        if verify {
                            prop_assert_eq!(&bytes[start..seen], &m.encode()[..]);
                        }
                        start = seen;
                    }
                    Decoded::NeedMore => break,
                    Decoded::Invalid(_) => break 'feed,
                }
            }
        }
    }

    #[test]
    fn shell_packets_round_trip_in_any_chunking(
        packets in vec(shell_packet(), 1..10),
        cuts in cuts(),
    ) {
        let bytes: Vec<u8> = packets.iter().flat_map(ShellPacket::encode).collect();
        let mut dec = ShellDecoder::default();
        let got = decode_chunks(&chunks(&bytes, &cuts), |i| dec.decode(i));
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn sync_requests_round_trip_in_any_chunking(
        reqs in vec(sync_request(), 1..10),
        cuts in cuts(),
    ) {
        let mut bytes = Vec::new();
        for r in &reqs {
            r.encode_into(&mut bytes).unwrap();
        }
        let mut dec = SyncRequestDecoder::new();
        let got = decode_chunks(&chunks(&bytes, &cuts), |i| dec.decode(i));
        prop_assert_eq!(got, reqs);
    }

    #[test]
    fn sync_replies_round_trip_in_any_chunking(
        replies in vec(sync_reply(), 1..10),
        cuts in cuts(),
    ) {
        let bytes: Vec<u8> = replies.iter().flat_map(SyncReply::encode).collect();
        let mut dec = SyncReplyDecoder::new();
        // The host knows what it asked for: the kind of the next reply.
        let mut next = 0;
        let mut got = Vec::new();
        for piece in chunks(&bytes, &cuts) {
            let mut input = &piece[..];
            while next < replies.len() {
                let expect = expect_for(&replies[next], SyncExpect::Recv);
                match dec.decode(expect, &mut input) {
                    Decoded::Done(r) => {
                        got.push(r);
                        next += 1;
                    }
                    Decoded::NeedMore => break,
                    Decoded::Invalid(e) => panic!("{e}"),
                }
            }
        }
        prop_assert_eq!(got, replies);
    }

    #[test]
    fn shell_and_sync_decoders_never_panic(
        bytes in vec(any::<u8>(), 0..300),
        cuts in cuts(),
        expect in proptest::sample::select(vec![
            SyncExpect::Stat, SyncExpect::List, SyncExpect::Recv, SyncExpect::Send,
        ]),
    ) {
        let mut shell = ShellDecoder::new(200);
        let mut req = SyncRequestDecoder::new();
        let mut rep = SyncReplyDecoder::new();
        for piece in chunks(&bytes, &cuts) {
            for decoder in 0..3 {
                let mut input = &piece[..];
                loop {
                    let before = input.len();
                    let done = match decoder {
                        0 => !matches!(shell.decode(&mut input), Decoded::Done(_)),
                        1 => !matches!(req.decode(&mut input), Decoded::Done(_)),
                        _ => !matches!(rep.decode(expect, &mut input), Decoded::Done(_)),
                    };
                    prop_assert!(input.len() <= before);
                    if done {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn collectors_never_panic(bytes in vec(any::<u8>(), 0..300), cuts in cuts()) {
        for mode in [ShellMode::V2, ShellMode::Legacy, ShellMode::Raw] {
            let mut c = sitelink::adb::proto::ShellCollector::new(mode, 100);
            for piece in chunks(&bytes, &cuts) {
                if c.push(&piece).is_err() {
                    break;
                }
            }
            let out = c.finish();
            prop_assert!(out.stdout.len() + out.stderr.len() <= 100);
        }
    }

    #[test]
    fn a_connection_never_panics_on_garbage(
        bytes in vec(any::<u8>(), 0..400),
        cuts in cuts(),
        online in any::<bool>(),
    ) {
        let mut conn = Connection::new(Config::new(vec![key().clone()], "t@h"));
        if online {
            let cnxn = Message::cnxn(VERSION_SKIP_CHECKSUM, 64, b"device::features=shell_v2");
            conn.handle_bytes(&cnxn.encode()).unwrap();
            conn.open("shell:x").unwrap();
        }
        for piece in chunks(&bytes, &cuts) {
            if conn.handle_bytes(&piece).is_err() {
                prop_assert_eq!(conn.state(), &State::Failed);
                break;
            }
            while conn.poll_event().is_some() {}
            while let Some(out) = conn.poll_transmit() {
                prop_assert!(out.len() >= 24);
            }
        }
    }
}

fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

/// Well-formed messages with small ids, so that they hit real streams.
fn stream_message() -> impl Strategy<Value = Message> {
    (
        proptest::sample::select(Command::ALL.to_vec()),
        0u32..4,
        0u32..4,
        vec(any::<u8>(), 0..40),
    )
        .prop_map(|(command, arg0, arg1, payload)| Message::new(command, arg0, arg1, payload))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of well-formed messages, on either side: no panic, and
    /// an error only for what the connection may not survive.
    #[test]
    fn both_sides_survive_any_message_sequence(msgs in vec(stream_message(), 0..30)) {
        let mut host = Connection::new(Config::new(vec![key().clone()], "t@h"));
        let cnxn = Message::cnxn(VERSION_SKIP_CHECKSUM, 64, b"device::features=shell_v2");
        host.handle_bytes(&cnxn.encode()).unwrap();
        let a = host.open("shell:a").unwrap();
        let _ = host.open("shell:b").unwrap();
        host.write(a, &[0; 100]).unwrap();
        let mut dev = Device::new(DeviceConfig::new(Banner::parse(b"device::")));
        dev.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, 64, b"host::").encode()).unwrap();
        let mut host_ok = true;
        let mut dev_ok = true;
        for m in &msgs {
            let bytes = m.encode();
            if host_ok && host.handle_bytes(&bytes).is_err() {
                host_ok = false;
            }
            if dev_ok && dev.handle_bytes(&bytes).is_err() {
                dev_ok = false;
            }
            while let Some(e) = host.poll_event() {
                if let Event::Data { id, .. } = e {
                    let _ = host.write(id, b"echo");
                }
            }
            while let Some(e) = dev.poll_event() {
                if let DeviceEvent::OpenRequested { id, .. } = e {
                    dev.accept(id).unwrap();
                    dev.write(id, &[1; 70]).unwrap();
                }
            }
            while let Some(out) = host.poll_transmit() {
                prop_assert!(out.len() <= 24 + 64);
            }
            while let Some(out) = dev.poll_transmit() {
                prop_assert!(out.len() <= 24 + 64);
            }
        }
    }
}

fn key() -> &'static AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate(&mut rand::rngs::SysRng).unwrap())
}

/// Moves bytes between the two sides, each direction cut by its own list,
/// until both are quiet.
fn pump(host: &mut Connection, dev: &mut Device, up: &[usize], down: &[usize]) {
    loop {
        let to_dev: Vec<u8> = std::iter::from_fn(|| host.poll_transmit())
            .flatten()
            .collect();
        let to_host: Vec<u8> = std::iter::from_fn(|| dev.poll_transmit())
            .flatten()
            .collect();
        if to_dev.is_empty() && to_host.is_empty() {
            return;
        }
        for piece in chunks(&to_dev, up) {
            dev.handle_bytes(&piece).unwrap();
        }
        for piece in chunks(&to_host, down) {
            host.handle_bytes(&piece).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Auth (refused key → public key → accepted), a v2 shell command whose
    /// output spans many WRTEs, and a refused service, over any TCP
    /// chunking, with a modern or a legacy TV.
    #[test]
    fn host_and_device_agree_in_any_chunking(
        up in cuts(),
        down in cuts(),
        legacy in any::<bool>(),
        stdout in vec(any::<u8>(), 0..20_000),
        exit in any::<u8>(),
    ) {
        let features = if legacy { Features::default() } else { Features::parse("shell_v2") };
        let mut dev = Device::new(DeviceConfig {
            auth: true,
            version: if legacy { VERSION_MIN } else { VERSION_SKIP_CHECKSUM },
            max_payload: if legacy { 4096 } else { MAX_PAYLOAD },
            token_seed: [1; 32],
            ..DeviceConfig::new(Banner::device("p", "m", "d", features))
        });
        let mut host = Connection::new(Config::new(vec![key().clone()], "sitelink@test"));
        pump(&mut host, &mut dev, &up, &down);
        let offered = std::iter::from_fn(|| dev.poll_event()).find_map(|e| match e {
            DeviceEvent::KeyOffered { key, .. } => Some(key),
            _ => None,
        });
        let unauthorized = matches!(host.state(), State::Unauthorized { .. });
        prop_assert!(unauthorized, "{:?}", host.state());
        dev.accept_key(offered.unwrap());
        pump(&mut host, &mut dev, &up, &down);
        prop_assert_eq!(host.state(), &State::Online);
        while dev.poll_event().is_some() {}
        while host.poll_event().is_some() {}

        let req = ShellRequest::new("cat /data/x; exit 7", host.has_feature("shell_v2"));
        prop_assert_eq!(req.mode, if legacy { ShellMode::Legacy } else { ShellMode::V2 });
        let id = host.open(&req.service).unwrap();
        host.write(id, &req.initial_input()).unwrap();
        let refused = host.open("nope:").unwrap();
        pump(&mut host, &mut dev, &up, &down);
        // The TV: refuse "nope:", run the shell and answer in its framing.
        let requests: Vec<DeviceEvent> = std::iter::from_fn(|| dev.poll_event()).collect();
        for e in requests {
            if let DeviceEvent::OpenRequested { id: dev_id, service } = e {
                if service == "nope:" {
                    dev.refuse(dev_id).unwrap();
                    continue;
                }
                prop_assert_eq!(&service, &req.service);
                dev.accept(dev_id).unwrap();
                let mut out = Vec::new();
                if legacy {
                    out.extend_from_slice(&stdout);
                    out.extend_from_slice(format!("SITELINK_EXIT_STATUS={exit}\r\n").as_bytes());
                } else {
                    for piece in stdout.chunks(3000) {
                        out.extend(ShellPacket::Stdout(piece.to_vec()).encode());
                    }
                    out.extend(ShellPacket::Exit(exit).encode());
                }
                dev.write(dev_id, &out).unwrap();
                dev.close(dev_id).unwrap();
            }
        }
        let mut collector = req.collector(1 << 20);
        let mut result = None;
        let mut was_refused = false;
        for _ in 0..200 {
            pump(&mut host, &mut dev, &up, &down);
            while let Some(e) = host.poll_event() {
                match e {
                    Event::Data { id: d, data } if d == id => collector.push(&data).unwrap(),
                    Event::Closed(c) if c == id => result = Some(collector.clone().finish()),
                    Event::Refused(r) => {
                        prop_assert_eq!(r, refused);
                        was_refused = true;
                    }
                    Event::Opened(_) => {}
                    other => panic!("{other:?}"),
                }
            }
            while dev.poll_event().is_some() {}
            if result.is_some() {
                break;
            }
        }
        let out = result.unwrap();
        prop_assert!(was_refused);
        prop_assert_eq!(out.exit, Some(exit));
        // The legacy collector turns the PTY's CRLF into LF.
        let expected = if legacy { crlf_to_lf(&stdout) } else { stdout };
        prop_assert_eq!(out.stdout, expected);
        prop_assert_eq!(host.open_streams(), 0);
        prop_assert_eq!(dev.open_streams(), 0);
    }
}

#[test]
fn send_chunks_stay_within_max_data() {
    let data = vec![1u8; MAX_DATA * 3];
    let bytes = sitelink::adb::proto::sync::send_requests("/f", 0o644, &data, 0).unwrap();
    let mut dec = SyncRequestDecoder::new();
    let got = decode_chunks(&[bytes], |i| dec.decode(i));
    assert_eq!(got.len(), 5);
    for r in &got[1..4] {
        assert!(matches!(r, SyncRequest::Data(d) if d.len() == MAX_DATA));
    }
}
