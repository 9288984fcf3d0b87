//! The uplink client in-process against the hub in-process, over real TLS
//! on loopback: a malformed batch is set aside instead of blocking what
//! follows, and a hub certificate that is "not valid yet" by the agent's
//! clock is a clear error while collection goes on.

use sitelink::config::{Quotas, UpstreamConfig};
use sitelink::daemon::dispatch::Dispatcher;
use sitelink::daemon::task::Heartbeat;
use sitelink::hub::store::{HubFilter, SqliteHub};
use sitelink::hub::{Hub, HubOptions};
use sitelink::pki;
use sitelink::store::{Class, NewRecord, Policy, Reader, Store, StoreOptions};
use sitelink::uplink::UplinkState;
use sitelink::uplink::client::{self, UplinkContext};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

const AGENT: &str = "site-01";

fn store(dir: &Path) -> Store {
    let big = 1_000_000_000;
    Store::open(StoreOptions {
        data_dir: dir.to_path_buf(),
        agent_id: AGENT.into(),
        boot_id: "test-boot".into(),
        policy: Policy {
            commit_records: 1000,
            commit_window: Duration::from_millis(5),
            quota: Quotas {
                event: big,
                accounting: big,
                metric: big,
            },
            min_free_bytes: 0,
            retention: Duration::from_secs(3600),
        },
        channel_capacity: 64,
    })
    .expect("store")
}

fn upstream(pki: &Path, addr: &str, batch_records: usize) -> UpstreamConfig {
    UpstreamConfig {
        url: format!("wss://{addr}"),
        host: "127.0.0.1".into(),
        port: addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port"),
        path: "/".into(),
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("agent-{AGENT}.pem")),
        key: pki.join(format!("agent-{AGENT}.key")),
        batch_records,
        batch_wait: Duration::from_millis(10),
        window: 3,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ping_every: Duration::from_secs(1),
        dead_after: Duration::from_secs(5),
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    state: UplinkState,
}

fn start_uplink(store: &Store, cfg: UpstreamConfig) -> Running {
    let (_config_tx, config) = watch::channel(cfg);
    let (stop, shutdown) = watch::channel(false);
    let state = UplinkState::default();
    let ctx = UplinkContext {
        agent: AGENT.into(),
        store: store.handle(),
        db_path: store.db_path().to_path_buf(),
        dispatcher: Dispatcher::start(store.handle()),
        config_path: "/nonexistent/sitelink.toml".into(),
        reloads: None,
        updates: None,
        config,
        shutdown,
        state: state.clone(),
        heartbeat: Heartbeat::new("uplink"),
    };
    // The config sender stays alive with the task: dropping it reads as "changed".
    let task = tokio::spawn(async move {
        let _keep = _config_tx;
        client::run(ctx).await
    });
    Running { stop, task, state }
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn drained(db: &Path) -> bool {
    let r = Reader::open(db).expect("reader");
    r.acked().expect("acked") >= r.highest_seq().expect("highest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_set_aside_and_the_rest_is_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, false).expect("CA");
    pki::issue_agent(&pki_dir, AGENT, false).expect("agent");
    pki::issue_hub(&pki_dir, &["127.0.0.1".into()], false).expect("hub");
    let store = store(&dir.path().join("agent"));
    // Record 55 has no device name: the hub refuses the batch that holds it.
    let records: Vec<NewRecord> = (0..100)
        .map(|i| {
            let device = if i == 55 { "" } else { "d" };
            NewRecord::new(Class::Event, device, "k", format!("{{\"n\":{i}}}"))
        })
        .collect();
    store.handle().append_batch(records).await.expect("append");
    let hub = Hub::start(HubOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        pki: pki_dir.clone(),
        data: dir.path().join("hub"),
    })
    .await
    .expect("hub");
    let up = start_uplink(&store, upstream(&pki_dir, &hub.addr.to_string(), 10));
    let db = store.db_path().to_path_buf();
    // The set-aside note is a record too, delivered after the rest.
    wait_until("drained, with the note", Duration::from_secs(15), || {
        drained(&db)
            && up
                .state
                .get()
                .is_some_and(|s| s.set_aside_batches == 1 && s.delivered >= 91)
    })
    .await;
    let s = up.state.get().expect("status");
    assert_eq!((s.set_aside_batches, s.set_aside_records), (1, 10));
    let held = SqliteHub::open_read(&dir.path().join("hub"))
        .expect("hub db")
        .records(&HubFilter::default())
        .expect("records");
    let ns: Vec<u64> = held
        .iter()
        .filter(|r| r.device == "d")
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok()?["n"].as_u64())
        .collect();
    let expected: Vec<u64> = (0..50).chain(60..100).collect();
    assert_eq!(ns, expected, "everything but the rejected batch of ten");
    let note = held
        .iter()
        .find(|r| r.kind == "uplink.set_aside")
        .expect("the set-aside note reached the hub");
    assert!(note.payload.contains("`device`"), "{}", note.payload);
    let _ = up.stop.send(true);
    let _ = up.task.await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_certificate_not_valid_yet_is_a_clock_problem_and_collection_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, false).expect("CA");
    pki::issue_agent(&pki_dir, AGENT, false).expect("agent");
    // As an agent whose clock is a day behind sees a fresh certificate.
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    pki::issue_hub_valid(
        &pki_dir,
        &["127.0.0.1".into()],
        false,
        pki::Validity {
            not_before: now + day,
            not_after: now + day * 30,
        },
    )
    .expect("hub");
    let store = store(&dir.path().join("agent"));
    let hub = Hub::start(HubOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        pki: pki_dir.clone(),
        data: dir.path().join("hub"),
    })
    .await
    .expect("hub");
    let url = format!("wss://{}", hub.addr);
    let up = start_uplink(&store, upstream(&pki_dir, &hub.addr.to_string(), 10));
    wait_until("the clock error", Duration::from_secs(10), || {
        up.state
            .get()
            .and_then(|s| s.last_error)
            .is_some_and(|e| e.contains("not valid yet") || e.contains("valid from"))
    })
    .await;
    let e = up.state.get().and_then(|s| s.last_error).expect("error");
    assert!(e.contains(&url) && e.contains("clock"), "{e}");
    assert!(e.contains("Collection goes on"), "{e}");
    // The store still takes records.
    let seq = store
        .handle()
        .append(NewRecord::new(Class::Event, "d", "k", "{}"))
        .await
        .expect("append");
    assert!(seq > 0);
    let _ = up.stop.send(true);
    let _ = up.task.await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_the_upstream_numbers_new_records_above_what_it_holds() {
    use sitelink::hub::store::HubStore;
    use sitelink::uplink::proto::{self, Batch, Hello, WireRecord};
    let dir = tempfile::tempdir().expect("temp dir");
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, false).expect("CA");
    pki::issue_agent(&pki_dir, AGENT, false).expect("agent");
    pki::issue_hub(&pki_dir, &["127.0.0.1".into()], false).expect("hub");
    // The hub already holds this agent's records up to epoch 9: the agent's
    // data directory has since been replaced by a fresh one.
    let theirs = (9u64 << 32) + 5;
    {
        let mut hub = SqliteHub::open(&dir.path().join("hub")).expect("hub db");
        let hello = Hello {
            version: proto::VERSION,
            agent: AGENT.into(),
            software: "earlier".into(),
            boot_id: "b".into(),
            clock_ms: 0,
            clock_synced: true,
            mono_ms: 0,
            highest_seq: theirs,
            acked_seq: 0,
        };
        hub.hello(&hello, "test").expect("hello");
        let record = WireRecord {
            seq: theirs,
            class: "event".into(),
            device: "d".into(),
            kind: "k".into(),
            payload: proto::payload("{}"),
            time_ms: 0,
            mono_ms: 0,
            boot_id: "b".into(),
            clock_synced: true,
            est_time_ms: None,
        };
        let batch = Batch {
            first: theirs,
            last: theirs,
            records: vec![record],
        };
        hub.store(AGENT, &batch).expect("store");
    }
    let store = store(&dir.path().join("agent"));
    let hub = Hub::start(HubOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        pki: pki_dir.clone(),
        data: dir.path().join("hub"),
    })
    .await
    .expect("hub");
    let up = start_uplink(&store, upstream(&pki_dir, &hub.addr.to_string(), 10));
    wait_until("connected", Duration::from_secs(10), || {
        up.state.get().is_some_and(|s| s.state == "connected")
    })
    .await;
    let seq = store
        .handle()
        .append(NewRecord::new(Class::Event, "d", "after", "{}"))
        .await
        .expect("append");
    assert!(seq > theirs, "{seq:#x} is not above {theirs:#x}");
    let hub_dir = dir.path().join("hub");
    wait_until("delivered", Duration::from_secs(10), || {
        SqliteHub::open_read(&hub_dir)
            .and_then(|h| h.records(&HubFilter::default()))
            .is_ok_and(|rs| rs.iter().any(|r| r.seq == seq && r.kind == "after"))
    })
    .await;
    let _ = up.stop.send(true);
    let _ = up.task.await;
    hub.stop().await;
}
