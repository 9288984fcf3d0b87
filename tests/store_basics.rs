//! The store on a real SQLite file in a temp dir: append, read, ack, trim,
//! reopen, quotas, device state and commands.

use sitelink::config::Quotas;
use sitelink::store::{
    Class, CommandOutcome, EPOCH_SHIFT, NewRecord, Policy, Reader, Store, StoreOptions, epoch_of,
};
use std::path::Path;
use std::time::Duration;

fn policy() -> Policy {
    Policy {
        commit_records: 100,
        commit_window: Duration::from_millis(5),
        quota: Quotas {
            event: 1_000_000,
            accounting: 1_000_000,
            metric: 1_000_000,
        },
        min_free_bytes: 0,
        retention: Duration::from_secs(3600),
    }
}

fn open(dir: &Path, policy: Policy) -> Store {
    Store::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: "test-agent".into(),
        boot_id: "boot-1".into(),
        policy,
        channel_capacity: 64,
    })
    .expect("store opens")
}

fn rec(class: Class, device: &str, n: u64) -> NewRecord {
    NewRecord::new(class, device, "test", format!("{{\"n\":{n}}}"))
}

#[test]
fn appended_records_come_back_in_order_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), policy());
    let h = store.handle();
    let seqs = h
        .append_batch_blocking((0..10).map(|n| rec(Class::Event, "d1", n)).collect())
        .unwrap();
    assert_eq!(seqs.len(), 10);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(epoch_of(seqs[0]), 1);
    let reader = store.reader().unwrap();
    let got = reader.read_batch(0, 100).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[3].payload, "{\"n\":3}");
    assert_eq!(got[3].agent, "test-agent");
    assert_eq!(got[3].boot_id, "boot-1");
    assert_eq!(got[3].device, "d1");
    assert_eq!(got[3].seq, seqs[3]);
    let after = reader.read_batch(seqs[4], 3).unwrap();
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs[5..8]);
}

#[test]
fn sequence_numbers_never_repeat_across_reopen_and_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = open(dir.path(), policy());
        store
            .handle()
            .append_batch_blocking(vec![rec(Class::Event, "d", 0)])
            .unwrap()[0]
    };
    let second = {
        let store = open(dir.path(), policy());
        store
            .handle()
            .append_batch_blocking(vec![rec(Class::Event, "d", 1)])
            .unwrap()[0]
    };
    assert_eq!(epoch_of(second), epoch_of(first) + 1);
    // A restored (or lost) database file: the epoch kept beside it still rises.
    for f in ["sitelink.db", "sitelink.db-wal", "sitelink.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let third = {
        let store = open(dir.path(), policy());
        store
            .handle()
            .append_batch_blocking(vec![rec(Class::Event, "d", 2)])
            .unwrap()[0]
    };
    assert!(third > second, "{third} after {second}");
    assert_eq!(third >> EPOCH_SHIFT, 3);
}

#[test]
fn ack_and_trim_remove_only_delivered_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy();
    p.retention = Duration::ZERO;
    let store = open(dir.path(), p);
    let h = store.handle();
    let seqs = h
        .append_batch_blocking((0..20).map(|n| rec(Class::Accounting, "d", n)).collect())
        .unwrap();
    h.ack_blocking(seqs[9]).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.acked().unwrap(), seqs[9]);
    let left = reader.read_batch(0, 100).unwrap();
    assert_eq!(left.len(), 10, "retention 0 trims at ack");
    assert_eq!(left[0].seq, seqs[10]);
    let st = reader.status().unwrap();
    let acc = st
        .classes
        .iter()
        .find(|c| c.class == Class::Accounting)
        .unwrap();
    assert_eq!((acc.rows, acc.backlog, acc.dropped), (10, 10, 0));
}

#[test]
fn metrics_over_quota_drop_oldest_with_a_gap_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy();
    p.quota.metric = 50;
    let store = open(dir.path(), p);
    let h = store.handle();
    let seqs = h
        .append_batch_blocking((0..80).map(|n| rec(Class::Metric, "tv", n)).collect())
        .unwrap();
    let reader = store.reader().unwrap();
    let st = reader.status().unwrap();
    let m = st
        .classes
        .iter()
        .find(|c| c.class == Class::Metric)
        .unwrap();
    assert_eq!(m.rows, 50);
    assert_eq!(m.dropped, 30);
    assert_eq!(st.drops.len(), 1);
    assert_eq!(st.drops[0].first_seq, seqs[0]);
    assert_eq!(st.drops[0].last_seq, seqs[29]);
    let gaps = reader
        .records(&sitelink::store::RecordFilter {
            kind: Some("gap".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(gaps.len(), 1);
    let g: serde_json::Value = serde_json::from_str(&gaps[0].payload).unwrap();
    assert_eq!(g["count"], 30);
    assert_eq!(gaps[0].device, "tv");
    // Events are never dropped however many.
    h.append_batch_blocking((0..80).map(|n| rec(Class::Event, "d", n)).collect())
        .unwrap();
    let st = reader.status().unwrap();
    let e = st.classes.iter().find(|c| c.class == Class::Event).unwrap();
    assert!(e.rows >= 80);
}

#[test]
fn commands_and_device_state_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), policy());
    let h = store.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let id = h
            .command_new("egm-1", "lock", &["now".into()], "cli")
            .await
            .unwrap();
        h.command_done(
            id,
            CommandOutcome::done(serde_json::json!({"locked": true})),
        )
        .await
        .unwrap();
        h.set_device_state("egm-1", "{\"door\":\"closed\"}".into())
            .await
            .unwrap();
        h.append(rec(Class::Event, "egm-1", 1)).await.unwrap();
    });
    let reader = Reader::open(store.db_path()).unwrap();
    let c = &reader.commands(10).unwrap()[0];
    assert_eq!(
        (c.device.as_str(), c.action.as_str(), c.state.as_str()),
        ("egm-1", "lock", "done")
    );
    assert_eq!(c.args, vec!["now".to_string()]);
    assert_eq!(c.result.as_ref().unwrap()["locked"], true);
    let d = reader.devices().unwrap();
    assert_eq!(d[0].device, "egm-1");
    assert_eq!(d[0].state.as_ref().unwrap()["door"], "closed");
}

#[test]
fn a_corrupt_file_is_moved_aside_and_collection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sitelink.db"), vec![0x5a; 8192]).unwrap();
    let store = open(dir.path(), policy());
    let q = store.quarantined().expect("quarantined").clone();
    assert!(q.path.to_string_lossy().contains("sitelink.db.corrupt-"));
    assert_eq!(
        std::fs::read(&q.path).unwrap(),
        vec![0x5a; 8192],
        "kept, never deleted"
    );
    store
        .handle()
        .append_batch_blocking(vec![rec(Class::Event, "d", 0)])
        .unwrap();
    let st = store.reader().unwrap().status().unwrap();
    assert_eq!(st.quarantined.len(), 1);
    let alarms = store
        .reader()
        .unwrap()
        .records(&sitelink::store::RecordFilter {
            kind: Some("store.quarantined".into()),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(alarms.len(), 1);
}

#[test]
fn events_over_quota_are_kept_producers_slowed_and_an_alarm_raised() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy();
    p.quota.event = 100;
    p.retention = Duration::from_secs(3600);
    let store = open(dir.path(), p);
    let h = store.handle();
    let mut seqs = Vec::new();
    for chunk in 0..3 {
        seqs.extend(
            h.append_batch_blocking(
                (0..50)
                    .map(|n| rec(Class::Event, "egm", chunk * 50 + n))
                    .collect(),
            )
            .unwrap(),
        );
    }
    assert!(
        store.health().throttled(),
        "over quota: producers are slowed"
    );
    let reader = store.reader().unwrap();
    let alarms = |kind: &str| {
        reader
            .records(&sitelink::store::RecordFilter {
                kind: Some(kind.into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
    };
    assert_eq!(alarms("store.quota_full").len(), 1);
    let st = reader.status().unwrap();
    let e = st.classes.iter().find(|c| c.class == Class::Event).unwrap();
    assert_eq!(e.dropped, 0, "events are never dropped");
    assert!(e.rows >= 150, "all 150 kept (plus the alarm): {}", e.rows);
    let kept = reader.read_batch(0, 1000).unwrap();
    for s in &seqs {
        assert!(kept.iter().any(|r| r.seq == *s), "event {s} missing");
    }
    // Delivered events give way: the quota is met again and the alarm clears.
    h.ack_blocking(*seqs.last().unwrap()).unwrap();
    h.append_batch_blocking(vec![rec(Class::Event, "egm", 999)])
        .unwrap();
    assert_eq!(alarms("store.quota_ok").len(), 1);
    let st = reader.status().unwrap();
    let e = st.classes.iter().find(|c| c.class == Class::Event).unwrap();
    assert!(
        e.rows <= 100,
        "delivered events trimmed to the quota: {}",
        e.rows
    );
    h.append_batch_blocking(vec![rec(Class::Event, "egm", 1000)])
        .unwrap();
    assert!(!store.health().throttled());
}

#[test]
fn an_append_now_does_not_wait_for_the_group_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy();
    // A window no test would sit out: only "now" can commit before it ends.
    p.commit_window = Duration::from_secs(60);
    let store = open(dir.path(), p);
    let h = store.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seqs = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                h.append_batch_now(vec![rec(Class::Event, "egm", 1)]),
            )
            .await
        })
        .expect("committed long before the window ends")
        .unwrap();
    let got = store.reader().unwrap().read_batch(0, 10).unwrap();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
}
