//! The host-side SAS reply parser, fed hostile bytes in hostile chunks: it
//! must never panic, and whatever it accepts must re-encode to a frame the
//! parser takes back as the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitelink::sas::proto::{Expect, Parsed, ResponseParser};

fuzz_target!(|data: &[u8]| {
    let [address, command, chunk, rest @ ..] = data else {
        return;
    };
    // The host only ever waits on a real EGM address (1..=127).
    let address = &(address % 127 + 1);
    // Command 0 stands for "a general poll is outstanding".
    let expect = match command {
        0 => Expect::General { address: *address },
        c => Expect::Long {
            address: *address,
            command: *c,
        },
    };
    let mut parser = ResponseParser::new(expect);
    let step = usize::from(*chunk % 16) + 1;
    let mut outcome = Parsed::NeedMore;
    for piece in rest.chunks(step) {
        outcome = parser.push(piece);
        if !matches!(outcome, Parsed::NeedMore) {
            break;
        }
    }
    if matches!(outcome, Parsed::NeedMore) {
        outcome = parser.idle();
    }
    if let Parsed::Done(response) = outcome {
        if let Ok(bytes) = response.encode(*address) {
            let mut again = ResponseParser::new(expect);
            let mut second = again.push(&bytes);
            if matches!(second, Parsed::NeedMore) {
                second = again.idle();
            }
            assert_eq!(
                second,
                Parsed::Done(response),
                "re-encoded reply parses differently"
            );
        }
    }
});
