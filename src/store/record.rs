//! What the store keeps: records, their classes and sequence numbers.

use crate::clock::Stamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A record's class decides what happens when space runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Doors, tilts, state changes, alarms: never dropped.
    Event,
    /// Meters and money: never dropped.
    Accounting,
    /// Telemetry samples: the oldest are dropped (counted, with a gap record) when full.
    Metric,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Event, Class::Accounting, Class::Metric];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Event => "event",
            Class::Accounting => "accounting",
            Class::Metric => "metric",
        }
    }

    /// The integer kept in the `class` column.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Whether the store may drop the oldest records of this class to make room.
    pub fn droppable(self) -> bool {
        self == Class::Metric
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown class `{0}`: expected one of event, accounting, metric")]
pub struct UnknownClass(pub String);

impl FromStr for Class {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Class, UnknownClass> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_string()))
    }
}

/// A record as a producer hands it to the store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRecord {
    pub class: Class,
    /// The device name from the config (or `store` for the store's own records).
    pub device: String,
    /// What happened, e.g. `door.open`, `meters`, `generator.tick`.
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub stamp: Stamp,
}

impl NewRecord {
    pub fn new(
        class: Class,
        device: impl Into<String>,
        kind: impl Into<String>,
        payload: impl Into<String>,
    ) -> NewRecord {
        NewRecord {
            class,
            device: device.into(),
            kind: kind.into(),
            payload: payload.into(),
            stamp: Stamp::now(),
        }
    }

    /// Bytes this record is charged against the free-space estimate.
    pub(crate) fn footprint(&self) -> u64 {
        (self.payload.len() + self.device.len() + self.kind.len() + ROW_OVERHEAD) as u64
    }
}

/// Approximate bytes SQLite spends per row beyond the text columns
/// (integers, record header, the class index entry).
pub(crate) const ROW_OVERHEAD: usize = 48;

/// A committed record, as readers see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub agent: String,
    pub class: Class,
    pub device: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub wall_ms: i64,
    pub mono_ms: i64,
    pub boot_id: String,
    pub clock_synced: bool,
}

/// Sequence numbers are `epoch << EPOCH_SHIFT | counter`. The epoch grows at
/// every open of the store (and is kept beside the database too), so a number
/// never repeats, even after a crash, a quarantined file or a database restored
/// from a backup. 32 bits of counter keep every number below 2^53, exact in
/// JSON for every language, until epoch 2^21.
pub const EPOCH_SHIFT: u32 = 32;

pub fn epoch_of(seq: u64) -> u64 {
    seq >> EPOCH_SHIFT
}
