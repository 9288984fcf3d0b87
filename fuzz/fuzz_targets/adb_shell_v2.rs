//! The decoders that read stream contents: shell v2 packets (both ways),
//! the shell collector and the sync request and reply decoders, fed hostile
//! bytes in hostile chunks. Nothing may panic, and whatever decodes must
//! encode back to something that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitelink::adb::proto::{
    Decoded, ShellCollector, ShellDecoder, ShellMode, SyncExpect, SyncReplyDecoder,
    SyncRequestDecoder,
};

fuzz_target!(|data: &[u8]| {
    let [which, chunk, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*chunk % 32) + 1;
    match which % 4 {
        0 => {
            let mut decoder = ShellDecoder::new(4096);
            let mut collector = ShellCollector::new(ShellMode::V2, 1000);
            'feed: for piece in rest.chunks(step) {
                let _ = collector.push(piece);
                let mut input = piece;
                loop {
                    match decoder.decode(&mut input) {
                        Decoded::Done(p) => {
                            let mut again = ShellDecoder::new(4096);
                            let bytes = p.encode();
                            assert_eq!(again.decode(&mut &bytes[..]), Decoded::Done(p));
                        }
                        Decoded::NeedMore => break,
                        Decoded::Invalid(_) => break 'feed,
                    }
                }
            }
            let out = collector.finish();
            assert!(out.stdout.len() + out.stderr.len() <= 1000);
        }
        1 => {
            let mut decoder = SyncRequestDecoder::new();
            'feed: for piece in rest.chunks(step) {
                let mut input = piece;
                loop {
                    match decoder.decode(&mut input) {
                        Decoded::Done(r) => {
                            let bytes = r.encode().expect("a decoded request encodes");
                            let mut again = SyncRequestDecoder::new();
                            assert_eq!(again.decode(&mut &bytes[..]), Decoded::Done(r));
                        }
                        Decoded::NeedMore => break,
                        Decoded::Invalid(_) => break 'feed,
                    }
                }
            }
        }
        2 => {
            let expect = [
                SyncExpect::Stat,
                SyncExpect::List,
                SyncExpect::Recv,
                SyncExpect::Send,
            ][usize::from(which >> 2) % 4];
            let mut decoder = SyncReplyDecoder::new();
            'feed: for piece in rest.chunks(step) {
                let mut input = piece;
                loop {
                    match decoder.decode(expect, &mut input) {
                        Decoded::Done(r) => {
                            let bytes = r.encode();
                            let mut again = SyncReplyDecoder::new();
                            let back = again.decode(expect, &mut &bytes[..]);
                            // FAIL text is read lossily; everything else is exact.
                            if !matches!(r, sitelink::adb::proto::SyncReply::Fail(_)) {
                                assert_eq!(back, Decoded::Done(r));
                            }
                        }
                        Decoded::NeedMore => break,
                        Decoded::Invalid(_) => break 'feed,
                    }
                }
            }
        }
        _ => {
            // Legacy output and the marker at its end.
            let mut collector = ShellCollector::new(ShellMode::Legacy, 100);
            for piece in rest.chunks(step) {
                let _ = collector.push(piece);
            }
            let out = collector.finish();
            assert!(out.stdout.len() <= 100);
        }
    }
});
