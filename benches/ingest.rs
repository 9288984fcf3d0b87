//! Ingest benchmarks: arriving in the next commit.
fn main() {}
