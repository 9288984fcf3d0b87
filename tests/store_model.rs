//! Model-based test of the store: random sequences of appends, acks, trims,
//! reopens and metric quota changes, checked after every step against a
//! simple in-memory model of what must be in the file.
//!
//! The model predicts exactly which of the test's own records are present,
//! their sequence numbers, which metrics the quota drops (and so the gap
//! records, the `drops` rows and the drop counters), the acknowledged cursor
//! and the backlog per class. Alarm records (`store` device, `store.*` kinds)
//! depend on the writer's timing, so they are taken as observed; they still
//! have to use sequence numbers nobody else used.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sitelink::clock::{self, Stamp};
use sitelink::config::Quotas;
use sitelink::store::{
    Class, EPOCH_SHIFT, NewRecord, Policy, Reader, Record, STORE_DEVICE, Store, StoreOptions,
    StoreStatus, epoch_of,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DEVICES: [&str; 3] = ["egm-1", "egm-2", "tv-3"];
const LONG_RETENTION: Duration = Duration::from_secs(3600);
/// Quotas the test never reaches (event and accounting are never lowered).
const HUGE: u64 = 1_000_000;
/// Bytes the store charges per row beyond its text columns (`ROW_OVERHEAD`).
const ROW_OVERHEAD: i64 = 48;

#[derive(Clone, Debug)]
enum AckTo {
    /// The seq handed out at this index (modulo how many were handed out).
    Index(usize),
    /// This far beyond the newest seq handed out.
    Beyond(u64),
    /// `u64::MAX`: an upstream gone mad.
    Max,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        class: Class,
        device: usize,
        n: usize,
        /// Stamped older than the long retention.
        old: bool,
        /// The payload holds multi-byte UTF-8 characters.
        wide: bool,
    },
    Ack(AckTo),
    Trim,
    Reopen,
    SetQuota(u64),
}

fn class_strategy() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Event),
        Just(Class::Accounting),
        Just(Class::Metric)
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (class_strategy(), 0..DEVICES.len(), 0usize..9, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(class, device, n, old, wide)| Op::Append { class, device, n, old, wide }),
        3 => prop_oneof![
            4 => any::<usize>().prop_map(AckTo::Index),
            1 => (1u64..5).prop_map(AckTo::Beyond),
            1 => Just(AckTo::Max),
        ]
        .prop_map(Op::Ack),
        1 => Just(Op::Trim),
        1 => Just(Op::Reopen),
        1 => (5u64..50).prop_map(Op::SetQuota),
    ]
}

/// One record the model expects in the file.
#[derive(Clone, Debug)]
struct MRec {
    class: Class,
    device: String,
    kind: String,
    payload: String,
    /// Stamped before the long retention (trimmed once acknowledged).
    old: bool,
    /// Written by the store itself (a gap or an alarm), stamped at write time.
    by_store: bool,
    /// May have been trimmed already: a store record, acknowledged, under
    /// retention zero, stamped in the same millisecond as the trim or earlier.
    optional: bool,
}

/// A gap record the model expects the next batch to write.
#[derive(Clone, Debug, PartialEq)]
struct Gap {
    device: String,
    first: u64,
    last: u64,
    count: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct DropRowModel {
    count: i64,
    first: u64,
    last: u64,
}

struct Model {
    retention_zero: bool,
    quota_metric: u64,
    epoch: u64,
    next_seq: u64,
    acked: u64,
    records: BTreeMap<u64, MRec>,
    /// Every seq handed to the producer, in order.
    handed: Vec<u64>,
    /// Metric drops per device, reason `quota`.
    drops: BTreeMap<String, DropRowModel>,
    next_id: u64,
}

impl Model {
    fn new(retention_zero: bool, quota_metric: u64) -> Model {
        Model {
            retention_zero,
            quota_metric,
            epoch: 0,
            next_seq: 0,
            acked: 0,
            records: BTreeMap::new(),
            handed: Vec::new(),
            drops: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn opened(&mut self) {
        self.epoch += 1;
        self.next_seq = self.next_seq.max(self.epoch << EPOCH_SHIFT);
    }

    fn count(&self, class: Class, after: u64) -> i64 {
        self.records
            .iter()
            .filter(|(s, r)| **s > after && r.class == class)
            .count() as i64
    }

    /// What one transaction does, in the writer's order: the batch's records,
    /// the metric quota, the ack, the trim. Returns the seqs of the records
    /// and the gap records the transaction must write after them.
    fn batch(&mut self, records: Vec<MRec>, ack: Option<u64>, trim: bool) -> (Vec<u64>, Vec<Gap>) {
        let mut seqs = Vec::new();
        for r in records {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.records.insert(seq, r);
            seqs.push(seq);
        }
        let metrics: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, r)| r.class == Class::Metric)
            .map(|(s, _)| *s)
            .collect();
        let over = metrics.len().saturating_sub(self.quota_metric as usize);
        let mut losses: BTreeMap<String, Gap> = BTreeMap::new();
        for seq in metrics.into_iter().take(over) {
            let r = self.records.remove(&seq).expect("present");
            if seq > self.acked {
                let g = losses.entry(r.device.clone()).or_insert(Gap {
                    device: r.device.clone(),
                    first: seq,
                    last: seq,
                    count: 0,
                });
                g.last = seq;
                g.count += 1;
            }
        }
        for g in losses.values() {
            let d = self.drops.entry(g.device.clone()).or_insert(DropRowModel {
                count: 0,
                first: g.first,
                last: g.last,
            });
            d.count += g.count as i64;
            d.last = g.last;
        }
        if let Some(up_to) = ack {
            let up_to = up_to.min(self.next_seq.saturating_sub(1));
            self.acked = self.acked.max(up_to);
            if self.retention_zero {
                self.trim();
            }
        }
        if trim {
            self.trim();
        }
        (seqs, losses.into_values().collect())
    }

    fn trim(&mut self) {
        let acked = self.acked;
        let zero = self.retention_zero;
        self.records.retain(|seq, r| {
            if *seq > acked {
                return true;
            }
            if r.by_store {
                // Stamped by the store: under retention zero it goes once its
                // millisecond is over, which the test cannot know.
                if zero {
                    r.optional = true;
                }
                return true;
            }
            !(zero || r.old)
        });
    }
}

struct Harness {
    dir: tempfile::TempDir,
    store: Option<Store>,
    rt: tokio::runtime::Runtime,
    model: Model,
    /// The newest seq anybody has seen, across reopens.
    max_seen: u64,
    acked_seen: u64,
}

fn policy(model: &Model) -> Policy {
    Policy {
        commit_records: 1000,
        commit_window: Duration::from_millis(1),
        quota: Quotas {
            event: HUGE,
            accounting: HUGE,
            metric: model.quota_metric,
        },
        min_free_bytes: 0,
        retention: if model.retention_zero {
            Duration::ZERO
        } else {
            LONG_RETENTION
        },
    }
}

fn open(dir: &Path, policy: Policy) -> Store {
    Store::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: "model-agent".into(),
        boot_id: "model-boot".into(),
        policy,
        channel_capacity: 16,
    })
    .expect("store opens")
}

/// A consistent view: records and status with no write in between.
fn observe(db: &Path) -> (Vec<Record>, StoreStatus) {
    let reader = Reader::open(db).expect("reader opens");
    for _ in 0..10 {
        let before = reader.status().expect("status");
        let records = reader.read_batch(0, 1_000_000).expect("read_batch");
        let after = reader.status().expect("status");
        if before == after {
            return (records, after);
        }
    }
    panic!("the store kept changing while the test was idle");
}

fn footprint(r: &Record) -> i64 {
    (r.payload.len() + r.device.len() + r.kind.len()) as i64 + ROW_OVERHEAD
}

fn gap_payload(g: &Gap) -> serde_json::Value {
    serde_json::json!({
        "class": "metric",
        "reason": "quota",
        "first_seq": g.first,
        "last_seq": g.last,
        "count": g.count,
    })
}

impl Harness {
    fn new(retention_zero: bool, quota_metric: u64) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut model = Model::new(retention_zero, quota_metric);
        let store = open(dir.path(), policy(&model));
        model.opened();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            dir,
            store: Some(store),
            rt,
            model,
            max_seen: 0,
            acked_seen: 0,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join(sitelink::store::DB_FILE)
    }

    fn step(&mut self, op: &Op) {
        let seq_floor = self.model.next_seq;
        let mut gaps = Vec::new();
        match op {
            Op::Append {
                class,
                device,
                n,
                old,
                wide,
            } => {
                let now = clock::wall_ms();
                let wall_ms = if *old {
                    now - 2 * LONG_RETENTION.as_millis() as i64
                } else {
                    // Clearly in the past, so retention zero trims it at ack.
                    now - 10_000
                };
                let mut news = Vec::new();
                let mut mrecs = Vec::new();
                for _ in 0..*n {
                    let id = self.model.next_id;
                    self.model.next_id += 1;
                    let payload = if *wide {
                        format!("{{\"id\":{id},\"text\":\"Tür offen, 5 € — ok\"}}")
                    } else {
                        format!("{{\"id\":{id}}}")
                    };
                    let r = NewRecord {
                        class: *class,
                        device: DEVICES[*device].to_string(),
                        kind: "model".to_string(),
                        payload: payload.clone(),
                        stamp: Stamp {
                            wall_ms,
                            mono_ms: clock::mono_ms(),
                            synced: true,
                        },
                    };
                    mrecs.push(MRec {
                        class: r.class,
                        device: r.device.clone(),
                        kind: r.kind.clone(),
                        payload,
                        old: *old,
                        by_store: false,
                        optional: false,
                    });
                    news.push(r);
                }
                let got = self
                    .store()
                    .handle()
                    .append_batch_blocking(news)
                    .unwrap_or_else(|e| panic!("append of {n} records failed: {e}"));
                let (want, g) = self.model.batch(mrecs, None, false);
                gaps = g;
                assert_eq!(got, want, "seqs handed out for {op:?}");
                for s in &got {
                    assert!(*s > self.max_seen, "seq {s} not above {}", self.max_seen);
                    self.max_seen = *s;
                }
                self.model.handed.extend(&got);
            }
            Op::Ack(to) => {
                let newest = self.model.handed.last().copied().unwrap_or(0);
                let up_to = match to {
                    AckTo::Index(i) => {
                        let handed = &self.model.handed;
                        handed.get(i % handed.len().max(1)).copied().unwrap_or(0)
                    }
                    AckTo::Beyond(k) => newest.max(self.model.next_seq) + k,
                    AckTo::Max => u64::MAX,
                };
                self.store()
                    .handle()
                    .ack_blocking(up_to)
                    .unwrap_or_else(|e| panic!("ack {up_to} failed: {e}"));
                gaps = self.model.batch(Vec::new(), Some(up_to), false).1;
            }
            Op::Trim => {
                self.store()
                    .handle()
                    .trim_blocking()
                    .unwrap_or_else(|e| panic!("trim failed: {e}"));
                gaps = self.model.batch(Vec::new(), None, true).1;
            }
            Op::Reopen => {
                self.store.take().expect("store open").close();
                // Nothing may change while the store is closed.
                let (recs, st) = observe(&self.db());
                self.store = Some(open(self.dir.path(), policy(&self.model)));
                self.model.opened();
                let (recs2, st2) = observe(&self.db());
                assert_eq!(recs, recs2, "records changed across a reopen");
                assert_eq!(st.acked_seq, st2.acked_seq, "acked changed across a reopen");
                assert_eq!(st2.epoch, st.epoch + 1, "epoch rises by one at open");
            }
            Op::SetQuota(q) => {
                self.model.quota_metric = *q;
                let p = policy(&self.model);
                let h = self.store().handle();
                self.rt
                    .block_on(h.set_policy(p))
                    .expect("set_policy is taken");
            }
        }
        self.check(op, seq_floor, gaps);
    }

    /// Compares the file with the model. `seq_floor` is the model's next seq
    /// before the step; `gaps` are the gap records the step must have written.
    fn check(&mut self, op: &Op, seq_floor: u64, gaps: Vec<Gap>) {
        let (records, st) = observe(&self.db());
        let m = &mut self.model;
        let mut actual: BTreeMap<u64, &Record> = BTreeMap::new();
        for r in &records {
            assert!(actual.insert(r.seq, r).is_none(), "seq {} twice", r.seq);
        }

        // Everything the model requires is there, unchanged.
        let mut gone = Vec::new();
        for (seq, want) in &m.records {
            match actual.get(seq) {
                None if want.optional => gone.push(*seq),
                None => panic!(
                    "after {op:?}: record {seq} ({} {} {}) is missing; model {:?}",
                    want.class, want.device, want.payload, want
                ),
                Some(got) => {
                    assert_eq!(
                        (got.class, got.device.as_str(), got.kind.as_str()),
                        (want.class, want.device.as_str(), want.kind.as_str()),
                        "after {op:?}: record {seq}"
                    );
                    if want.kind == "gap" {
                        let a: serde_json::Value = serde_json::from_str(&got.payload).unwrap();
                        let b: serde_json::Value = serde_json::from_str(&want.payload).unwrap();
                        assert_eq!(a, b, "after {op:?}: gap record {seq}");
                    } else {
                        assert_eq!(got.payload, want.payload, "after {op:?}: record {seq}");
                    }
                }
            }
        }
        for seq in gone {
            m.records.remove(&seq);
        }

        // Whatever the model does not know must be new, and written by the
        // store: the predicted gap records in order, and alarms.
        let mut gaps = gaps.into_iter();
        let mut newest = m.next_seq.saturating_sub(1);
        for (seq, r) in &actual {
            if m.records.contains_key(seq) {
                continue;
            }
            assert!(
                *seq >= seq_floor,
                "after {op:?}: unexpected old record {seq}: {r:?}"
            );
            let mrec = if r.device == STORE_DEVICE && r.kind.starts_with("store.") {
                MRec {
                    class: r.class,
                    device: r.device.clone(),
                    kind: r.kind.clone(),
                    payload: r.payload.clone(),
                    old: false,
                    by_store: true,
                    optional: false,
                }
            } else {
                let want = gaps
                    .next()
                    .unwrap_or_else(|| panic!("after {op:?}: unexpected record {r:?}"));
                assert_eq!(
                    (r.class, r.device.as_str(), r.kind.as_str()),
                    (Class::Event, want.device.as_str(), "gap"),
                    "after {op:?}: gap record {seq}"
                );
                let a: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
                assert_eq!(a, gap_payload(&want), "after {op:?}: gap record {seq}");
                MRec {
                    class: Class::Event,
                    device: want.device.clone(),
                    kind: "gap".into(),
                    payload: gap_payload(&want).to_string(),
                    old: false,
                    by_store: true,
                    optional: false,
                }
            };
            assert!(
                *seq > self.max_seen,
                "store record {seq} not above {}",
                self.max_seen
            );
            self.max_seen = *seq;
            newest = newest.max(*seq);
            m.records.insert(*seq, mrec);
        }
        let missing: Vec<Gap> = gaps.collect();
        assert!(
            missing.is_empty(),
            "after {op:?}: gap records not written: {missing:?}"
        );
        m.next_seq = m.next_seq.max(newest + 1);

        // The cursor, the counters and the per-class figures.
        assert_eq!(st.acked_seq, m.acked, "after {op:?}: acked");
        assert!(st.acked_seq >= self.acked_seen, "acked went down");
        self.acked_seen = st.acked_seq;
        assert_eq!(st.epoch, m.epoch, "after {op:?}: epoch");
        assert_eq!(st.next_seq, m.next_seq, "after {op:?}: next_seq");
        assert_eq!(
            epoch_of(st.next_seq),
            m.epoch,
            "after {op:?}: next_seq in this epoch"
        );
        for c in &st.classes {
            let present: Vec<&&Record> = actual.values().filter(|r| r.class == c.class).collect();
            assert_eq!(
                c.rows,
                present.len() as i64,
                "after {op:?}: {} rows kept vs counted",
                c.class
            );
            assert_eq!(
                c.rows,
                m.count(c.class, 0),
                "after {op:?}: {} rows",
                c.class
            );
            let bytes: i64 = present.iter().map(|r| footprint(r)).sum();
            assert_eq!(c.bytes, bytes, "after {op:?}: {} bytes counted", c.class);
            assert_eq!(
                c.backlog,
                m.count(c.class, m.acked),
                "after {op:?}: {} backlog",
                c.class
            );
            let dropped: i64 = if c.class == Class::Metric {
                m.drops.values().map(|d| d.count).sum()
            } else {
                0
            };
            assert_eq!(c.dropped, dropped, "after {op:?}: {} dropped", c.class);
        }
        let drops: BTreeMap<String, DropRowModel> = st
            .drops
            .iter()
            .map(|d| {
                assert_eq!((d.class, d.reason.as_str()), (Class::Metric, "quota"));
                (
                    d.device.clone(),
                    DropRowModel {
                        count: d.count,
                        first: d.first_seq,
                        last: d.last_seq,
                    },
                )
            })
            .collect();
        assert_eq!(drops, m.drops, "after {op:?}: drops table");
        // The store's quota for metrics holds after every transaction.
        if !matches!(op, Op::SetQuota(_) | Op::Reopen) {
            assert!(m.count(Class::Metric, 0) <= m.quota_metric as i64);
        }
    }
}

fn run(retention_zero: bool, quota_metric: u64, ops: &[Op]) {
    let mut h = Harness::new(retention_zero, quota_metric);
    h.check(&Op::Reopen, 0, Vec::new());
    for op in ops {
        h.step(op);
    }
    h.store.take().expect("store open").close();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_matches_the_model(
        retention_zero in any::<bool>(),
        quota_metric in prop_oneof![Just(HUGE), 5u64..50],
        ops in prop::collection::vec(op_strategy(), 1..30),
    ) {
        run(retention_zero, quota_metric, &ops);
    }
}

/// The store's own rules, spelled out once so a broken model cannot hide them.
#[test]
fn a_fixed_sequence_matches_the_model() {
    use Op::*;
    let ops = [
        Append {
            class: Class::Metric,
            device: 0,
            n: 8,
            old: false,
            wide: false,
        },
        Append {
            class: Class::Event,
            device: 1,
            n: 3,
            old: true,
            wide: true,
        },
        SetQuota(5),
        Append {
            class: Class::Metric,
            device: 2,
            n: 4,
            old: false,
            wide: false,
        },
        Ack(AckTo::Index(1)),
        Reopen,
        Append {
            class: Class::Accounting,
            device: 1,
            n: 2,
            old: false,
            wide: false,
        },
        Append {
            class: Class::Metric,
            device: 0,
            n: 0,
            old: false,
            wide: false,
        },
        Trim,
        Ack(AckTo::Max),
        Trim,
        Reopen,
        Append {
            class: Class::Metric,
            device: 1,
            n: 7,
            old: true,
            wide: true,
        },
    ];
    run(true, HUGE, &ops);
    run(false, 20, &ops);
}
