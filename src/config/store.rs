//! `[store]` and `[store.quota]`: group commit, disk space and retention.

use super::reader::{Int, SectionReader};
use super::{Quotas, StoreConfig};
use std::time::Duration;

/// `min_free_mb` counts binary megabytes, as `df -m` does.
const MB: u64 = 1024 * 1024;

pub(super) fn read(r: &mut SectionReader<'_, '_>) -> StoreConfig {
    let commit_records = r.int(
        "commit_records",
        Int {
            min: 1,
            max: 100_000,
            unit: "records",
            default: 1000,
        },
    );
    let commit_ms: u64 = r.int(
        "commit_ms",
        Int {
            min: 1,
            max: 10_000,
            unit: "ms",
            default: 10,
        },
    );
    let min_free_mb: u64 = r.int(
        "min_free_mb",
        Int {
            min: 0,
            max: 1_048_576,
            unit: "MB",
            default: 256,
        },
    );
    let retention_hours: u64 = r.int(
        "retention_hours",
        Int {
            min: 0,
            max: 87_600,
            unit: "hours",
            default: 168,
        },
    );
    let quota = r.section("quota", read_quota);
    StoreConfig {
        commit_records,
        commit_window: Duration::from_millis(commit_ms),
        quota,
        min_free_bytes: min_free_mb * MB,
        retention: Duration::from_secs(retention_hours * 3600),
    }
}

fn read_quota(r: &mut SectionReader<'_, '_>) -> Quotas {
    let rows = |default| Int {
        min: 1000,
        max: 1_000_000_000,
        unit: "rows",
        default,
    };
    Quotas {
        event: r.int("event", rows(5_000_000)),
        accounting: r.int("accounting", rows(5_000_000)),
        metric: r.int("metric", rows(2_000_000)),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn units_are_converted() {
        let text = "[store]\ncommit_ms = 250\nmin_free_mb = 2\nretention_hours = 2\n";
        let store = parse(Path::new("t.toml"), text).expect("valid").store;
        assert_eq!(store.commit_window, Duration::from_millis(250));
        assert_eq!(store.min_free_bytes, 2 * 1024 * 1024);
        assert_eq!(store.retention, Duration::from_secs(7200));
    }

    #[test]
    fn range_limits_are_inclusive() {
        let text =
            "[store]\ncommit_records = 100000\nmin_free_mb = 0\n[store.quota]\nmetric = 1000\n";
        let store = parse(Path::new("t.toml"), text).expect("valid").store;
        assert_eq!((store.commit_records, store.min_free_bytes), (100_000, 0));
        assert_eq!(store.quota.metric, 1000);
        let over = "[store]\ncommit_records = 100001\n";
        let err = parse(Path::new("t.toml"), over).expect_err("over the top");
        assert_eq!(
            err.diagnostics[0].message,
            "`commit_records` in [store] must be from 1 to 100000 records, found 100001"
        );
    }
}
