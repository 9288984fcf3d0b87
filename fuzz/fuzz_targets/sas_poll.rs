//! The EGM-side SAS poll decoder (the simulator's input), fed hostile bytes
//! in hostile chunks: it must never panic, and every poll it decodes must
//! encode back to bytes that decode to the same poll.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitelink::sas::proto::PollDecoder;

fuzz_target!(|data: &[u8]| {
    let [chunk, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*chunk % 16) + 1;
    let mut decoder = PollDecoder::new();
    let mut polls = Vec::new();
    for piece in rest.chunks(step) {
        decoder.push(piece);
        while let Some(result) = decoder.next_poll() {
            polls.extend(result.ok());
        }
    }
    let _ = decoder.idle();
    while let Some(result) = decoder.next_poll() {
        polls.extend(result.ok());
    }
    for poll in polls {
        let Ok(bytes) = poll.encode() else { continue };
        let mut again = PollDecoder::new();
        again.push(&bytes);
        let mut back = again.next_poll();
        if back.is_none() {
            let _ = again.idle();
            back = again.next_poll();
        }
        assert_eq!(
            back.and_then(Result::ok),
            Some(poll),
            "re-encoded poll decodes differently"
        );
    }
});
