//! A TV's power relay through its task, without hardware: the relay is the
//! project's in-memory fake line, the TV is unreachable (its port closed),
//! as a TV whose mains is off. `relay off`, `on` and `cycle` work without
//! ADB and are stored; other commands fail at once saying why.

use sitelink::adb::proto::AdbKey;
use sitelink::daemon::task::{DeviceCommand, Heartbeat, TaskContext};
use sitelink::relay::{FakeLine, Relay};
use sitelink::store::{
    CommandOutcome, CommandStatus, Policy, Reader, RecordFilter, Store, StoreOptions,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

async fn send(tx: &mpsc::Sender<DeviceCommand>, action: &str, args: &[&str]) -> CommandOutcome {
    let (reply, rx) = oneshot::channel();
    tx.send(DeviceCommand {
        id: 1,
        device: "tv-1".into(),
        action: action.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        reply,
    })
    .await
    .expect("task takes commands");
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("answered in time")
        .expect("answered")
}

#[tokio::test]
async fn relay_commands_work_while_the_tv_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let text = format!(
        "[agent]\nid = \"t\"\ndata_dir = \"{}\"\n\n[[tv]]\nname = \"tv-1\"\nhost = \"127.0.0.1\"\nport = {closed}\n\
         relay = {{ chip = \"gpiochip0\", line = 17, active_low = true, cycle_off_s = 2 }}\n",
        dir.path().display()
    );
    let cfg = sitelink::config::parse(&dir.path().join("s.toml"), &text).expect("config");
    let store = Store::open(StoreOptions {
        data_dir: dir.path().to_path_buf(),
        agent_id: "t".into(),
        boot_id: "b".into(),
        policy: Policy::from(&cfg.store),
        channel_capacity: 64,
    })
    .expect("store");
    let (stop, shutdown) = watch::channel(false);
    let (tx, commands) = mpsc::channel(4);
    let ctx = TaskContext {
        store: store.handle(),
        commands,
        shutdown,
        heartbeat: Heartbeat::new("tv-1"),
    };
    let line = FakeLine::new();
    let relay = Relay::new(line.clone(), true).boxed();
    let key = Arc::new(AdbKey::generate(&mut rand::rngs::SysRng).expect("key"));
    let tv = cfg.tvs[0].clone();
    let task = tokio::spawn(sitelink::adb::tv::task::run(
        tv,
        key,
        "t@t".into(),
        Some(Ok(relay)),
        ctx,
    ));

    let off = send(&tx, "relay", &["off"]).await;
    assert_eq!(off.status, CommandStatus::Done, "{off:?}");
    // Active low: "off" drives the line high.
    assert_eq!(line.levels(), [true]);
    let cycle = send(&tx, "relay", &["cycle"]).await;
    assert_eq!(cycle.status, CommandStatus::Done, "{cycle:?}");
    assert_eq!(line.levels(), [true, true, false], "off, then on again");
    // ADB commands fail at once, naming the state.
    let vol = send(&tx, "volume", &["up"]).await;
    assert_eq!(vol.status, CommandStatus::Failed, "{vol:?}");
    let why = vol.detail.to_string();
    assert!(why.contains("refused") || why.contains("offline"), "{why}");

    let _ = stop.send(true);
    task.await.expect("the task ends");
    let reader = Reader::open(&dir.path().join(sitelink::store::DB_FILE)).expect("reader");
    let relays = reader
        .records(&RecordFilter {
            device: Some("tv-1".into()),
            kind: Some("tv.relay".into()),
            limit: 10,
            ..Default::default()
        })
        .expect("records");
    assert_eq!(relays.len(), 2, "off and cycle are on record: {relays:?}");
}
