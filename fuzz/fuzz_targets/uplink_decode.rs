//! The uplink decoders (both directions), fed hostile text: they must never
//! panic, and every message they decode must encode back to text that
//! decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sitelink::uplink::proto::{self, Incoming};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Incoming::Known(m)) = proto::decode_agent(text) {
        if let proto::AgentMessage::Batch(b) = &m {
            let _ = b.check();
        }
        let again = proto::decode_agent(&proto::encode(&m));
        assert_eq!(
            again,
            Ok(Incoming::Known(m)),
            "re-encoded agent message decodes differently"
        );
    }
    if let Ok(Incoming::Known(m)) = proto::decode_upstream(text) {
        let again = proto::decode_upstream(&proto::encode(&m));
        assert_eq!(
            again,
            Ok(Incoming::Known(m)),
            "re-encoded upstream message decodes differently"
        );
    }
});
