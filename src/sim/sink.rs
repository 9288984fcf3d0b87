//! An in-process consumer of the outbox: reads batches after its cursor,
//! checks the generators' counters, acknowledges. The demo's stand-in for
//! the upstream until the uplink lands.

use crate::generator::Tick;
use crate::store::{Reader, StoreError, StoreHandle};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Records taken per read.
const BATCH: usize = 2000;

/// What the sink received, per device.
#[derive(Debug, Default, Clone)]
pub struct Delivered {
    /// Records acknowledged, all kinds.
    pub records: u64,
    /// Per generator device: the counters seen.
    pub counters: BTreeMap<String, Counters>,
    /// Gap records seen (the store dropped something), by device.
    pub gaps: BTreeMap<String, u64>,
}

/// The run of counters one generator delivered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Distinct counters delivered.
    pub distinct: u64,
    /// Counters delivered more than once (must stay 0).
    pub repeated: u64,
    /// Counters skipped between `first` and `last`.
    pub missing: u64,
}

impl Counters {
    fn see(&mut self, n: u64) {
        match self.last {
            None => {
                self.first = Some(n);
                self.distinct = 1;
            }
            Some(last) if n > last => {
                self.missing += n - last - 1;
                self.distinct += 1;
            }
            Some(_) => self.repeated += 1,
        }
        self.last = Some(self.last.map_or(n, |l| l.max(n)));
    }
}

/// Reads and acknowledges everything committed so far; returns what it took.
pub struct Sink {
    path: PathBuf,
    reader: Option<Reader>,
    store: StoreHandle,
    cursor: u64,
    pub delivered: Delivered,
}

impl Sink {
    pub fn new(db_path: PathBuf, store: StoreHandle) -> Sink {
        Sink {
            path: db_path,
            reader: None,
            store,
            cursor: 0,
            delivered: Delivered::default(),
        }
    }

    /// One round: read what is committed, acknowledge it. Returns
    /// how many records were taken. Runs on a blocking thread.
    pub fn drain(&mut self) -> Result<u64, StoreError> {
        if self.reader.is_none() {
            let reader = Reader::open(&self.path)?;
            self.cursor = self.cursor.max(reader.acked()?);
            self.reader = Some(reader);
        }
        let Some(reader) = &self.reader else {
            return Ok(0);
        };
        let mut taken = 0;
        loop {
            let batch = reader.read_batch(self.cursor, BATCH)?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                return Ok(taken);
            };
            for r in &batch {
                if r.kind == crate::generator::KIND {
                    if let Ok(t) = serde_json::from_str::<Tick>(&r.payload) {
                        self.delivered
                            .counters
                            .entry(r.device.clone())
                            .or_default()
                            .see(t.n);
                    }
                } else if r.kind == crate::store::GAP_KIND {
                    *self.delivered.gaps.entry(r.device.clone()).or_default() += 1;
                }
            }
            self.store.ack_blocking(last)?;
            self.cursor = last;
            self.delivered.records += batch.len() as u64;
            taken += batch.len() as u64;
            // A short batch means we caught up; producers that go on
            // writing are taken at the next round, not chased forever.
            if batch.len() < BATCH {
                return Ok(taken);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counters;

    #[test]
    fn counters_find_missing_and_repeated_numbers() {
        let mut c = Counters::default();
        for n in [5, 6, 7, 9, 9, 12] {
            c.see(n);
        }
        assert_eq!(c.first, Some(5));
        assert_eq!(c.last, Some(12));
        assert_eq!(c.distinct, 5);
        assert_eq!(c.repeated, 1);
        assert_eq!(c.missing, 3);
    }
}
