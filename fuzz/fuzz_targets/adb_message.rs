//! The ADB message decoder and both connection state machines, fed hostile
//! bytes in hostile chunks: nothing may panic, a decoded message never
//! exceeds the payload limit, and with sums checked every decoded message
//! re-encodes to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitelink::adb::proto::message::VERSION_SKIP_CHECKSUM;
use sitelink::adb::proto::{
    Banner, Config, Connection, Decoded, Device, DeviceConfig, Message, MessageDecoder,
};

fuzz_target!(|data: &[u8]| {
    let [flags, chunk, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*chunk % 32) + 1;
    let verify = flags & 1 == 1;
    let max = [0u32, 24, 4096, 1 << 20][usize::from(flags >> 1 & 3)];

    let mut decoder = MessageDecoder::new(max);
    decoder.set_verify_checksum(verify);
    let (mut start, mut seen) = (0usize, 0usize);
    'feed: for piece in rest.chunks(step) {
        let mut input = piece;
        loop {
            let before = input.len();
            let outcome = decoder.decode(&mut input);
            seen += before - input.len();
            match outcome {
                Decoded::Done(m) => {
                    assert!(m.payload.len() <= max as usize, "payload over the limit");
                    if verify {
                        assert_eq!(&rest[start..seen], &m.encode()[..], "re-encoding differs");
                    }
                    start = seen;
                }
                Decoded::NeedMore => break,
                Decoded::Invalid(_) => break 'feed,
            }
        }
    }

    // Both sides, optionally already past the handshake.
    let online = flags & 8 != 0;
    let mut host = Connection::new(Config::new(Vec::new(), "fuzz@host"));
    let mut device = Device::new(DeviceConfig::new(Banner::parse(
        b"device::features=shell_v2",
    )));
    if online {
        let cnxn = Message::cnxn(VERSION_SKIP_CHECKSUM, 256, b"device::");
        let _ = host.handle_bytes(&cnxn.encode());
        let _ = host.open("shell,v2,raw:ls");
        let _ = device.handle_bytes(&Message::cnxn(VERSION_SKIP_CHECKSUM, 256, b"host::").encode());
    }
    let (mut host_ok, mut device_ok) = (true, true);
    for piece in rest.chunks(step) {
        host_ok = host_ok && host.handle_bytes(piece).is_ok();
        device_ok = device_ok && device.handle_bytes(piece).is_ok();
        while host.poll_event().is_some() {}
        while let Some(event) = device.poll_event() {
            if let sitelink::adb::proto::DeviceEvent::OpenRequested { id, .. } = event {
                let _ = device.accept(id);
                let _ = device.write(id, &[0; 300]);
            }
        }
        while host.poll_transmit().is_some() {}
        while device.poll_transmit().is_some() {}
    }
});
