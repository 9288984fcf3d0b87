//! Helpers shared by the store's integration tests.

use sitelink::store::{Reader, Record};

/// Every record in the file, in sequence order, through the outbox reader.
pub fn all_records(reader: &Reader) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let batch = reader.read_batch(after, 10_000).expect("read_batch");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}
