//! Wiring: opens the store, starts one task per device, the command
//! dispatcher and the control socket, applies reloads, and stops it all in
//! order. `service` adds what only a real service needs (signals, systemd).

pub mod dispatch;
pub mod logging;
pub mod service;
pub mod task;

use crate::adb::proto::AdbKey;
use crate::config::{
    Config, GeneratorConfig, ReloadPlan, SasLineConfig, TvConfig, UpstreamConfig, reload_plan,
};
use crate::generator::{self, GeneratorStats};
use crate::store::{Policy, Reader, Store, StoreError, StoreHandle, StoreOptions, WriterHealth};
use crate::uplink::UplinkState;
use crate::uplink::client::{ReloadRequest, UpdateRequest, UplinkContext};
use dispatch::Dispatcher;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use task::{COMMAND_QUEUE, DeviceCommand, Heartbeat, TaskContext};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Messages that may wait for the store writer before producers wait too.
const STORE_QUEUE: usize = 4096;
/// How long device tasks get to finish what they hold at shutdown.
const TASK_STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("control socket in {dir}: {source}")]
    Control {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A device task: a generator, or a SAS line serving several EGMs.
struct RunningDevice {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    heartbeat: Arc<Heartbeat>,
    /// The device names whose commands this task takes.
    serves: Vec<String>,
    /// A generator's counters.
    stats: Option<Arc<GeneratorStats>>,
}

/// What the daemon keeps of a new task's channels (the task gets the rest
/// as its `TaskContext`).
struct Spawn {
    stop: watch::Sender<bool>,
    commands: mpsc::Sender<DeviceCommand>,
    heartbeat: Arc<Heartbeat>,
}

/// The uplink task and how to steer it.
struct RunningUplink {
    config: watch::Sender<UpstreamConfig>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    heartbeat: Arc<Heartbeat>,
}

/// Pushed configs wait here for the service loop (`take_reload_requests`).
const RELOAD_QUEUE: usize = 4;

/// The running agent.
pub struct Daemon {
    config: Config,
    store: Store,
    dispatcher: Dispatcher,
    devices: BTreeMap<String, RunningDevice>,
    control: JoinHandle<()>,
    /// The site's ADB key, loaded (or made) when the first TV starts.
    adb_key: Option<Arc<AdbKey>>,
    uplink: Option<RunningUplink>,
    uplink_state: UplinkState,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reload_rx: Option<mpsc::Receiver<ReloadRequest>>,
    update_tx: mpsc::Sender<UpdateRequest>,
    update_rx: Option<mpsc::Receiver<UpdateRequest>>,
}

/// A task that has not shown a sign of life for too long.
#[derive(Debug, Clone, PartialEq)]
pub struct Stuck {
    pub task: String,
    pub silent_ms: i64,
}

impl Daemon {
    /// Opens the store and starts every task. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        let opts = StoreOptions {
            data_dir: config.agent.data_dir.clone(),
            agent_id: config.agent.id.clone(),
            boot_id: crate::clock::boot_id(),
            policy: Policy::from(&config.store),
            channel_capacity: STORE_QUEUE,
        };
        let store = tokio::task::spawn_blocking(move || Store::open(opts))
            .await
            .map_err(|e| StoreError::Invalid(format!("store open panicked: {e}")))??;
        if let Some(q) = store.quarantined() {
            tracing::error!(moved_to = %q.path.display(), reason = %q.reason, "database quarantined");
        }
        let dispatcher = Dispatcher::start(store.handle());
        let listener = crate::control::bind(&config.agent.data_dir).map_err(|source| {
            DaemonError::Control {
                dir: config.agent.data_dir.clone(),
                source,
            }
        })?;
        let uplink_state = UplinkState::default();
        let control = tokio::spawn(crate::control::serve(
            listener,
            dispatcher.clone(),
            uplink_state.clone(),
        ));
        let (reload_tx, reload_rx) = mpsc::channel(RELOAD_QUEUE);
        let (update_tx, update_rx) = mpsc::channel(RELOAD_QUEUE);
        let mut daemon = Daemon {
            config,
            store,
            dispatcher,
            devices: BTreeMap::new(),
            control,
            adb_key: None,
            uplink: None,
            uplink_state,
            reload_tx,
            reload_rx: Some(reload_rx),
            update_tx,
            update_rx: Some(update_rx),
        };
        for g in daemon.config.generators.clone() {
            daemon.start_generator(g).await;
        }
        for l in daemon.config.sas.clone() {
            daemon.start_sas_line(l).await;
        }
        for t in daemon.config.tvs.clone() {
            daemon.start_tv(t).await;
        }
        if let Some(u) = daemon.config.upstream.clone() {
            daemon.start_uplink(u);
        }
        tracing::info!(summary = %daemon.config.summary(), "sitelink started");
        Ok(daemon)
    }

    fn spawn_context(&self, name: &str) -> (Spawn, TaskContext) {
        let (stop, shutdown) = watch::channel(false);
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let heartbeat = Heartbeat::new(name);
        let ctx = TaskContext {
            store: self.store.handle(),
            commands: rx,
            shutdown,
            heartbeat: heartbeat.clone(),
        };
        (
            Spawn {
                stop,
                commands,
                heartbeat,
            },
            ctx,
        )
    }

    async fn keep(
        &mut self,
        name: &str,
        spawn: Spawn,
        task: JoinHandle<()>,
        serves: Vec<String>,
        stats: Option<Arc<GeneratorStats>>,
    ) {
        for device in &serves {
            self.dispatcher
                .register(device, spawn.commands.clone())
                .await;
        }
        self.devices.insert(
            name.to_string(),
            RunningDevice {
                stop: spawn.stop,
                task,
                heartbeat: spawn.heartbeat,
                serves,
                stats,
            },
        );
    }

    async fn start_generator(&mut self, cfg: GeneratorConfig) {
        let first = self.next_counter(&cfg.name).await;
        let (spawn, ctx) = self.spawn_context(&cfg.name);
        let stats = Arc::new(GeneratorStats::default());
        let task = tokio::spawn(generator::run(cfg.clone(), first, ctx, stats.clone()));
        self.keep(&cfg.name, spawn, task, vec![cfg.name.clone()], Some(stats))
            .await;
    }

    async fn start_sas_line(&mut self, cfg: SasLineConfig) {
        let names: Vec<String> = cfg.egms.iter().map(|e| e.name.clone()).collect();
        let remembered = self.remembered(&names).await;
        let (spawn, ctx) = self.spawn_context(&cfg.name);
        let task = tokio::spawn(crate::sas::poller::run(cfg.clone(), remembered, ctx));
        self.keep(&cfg.name, spawn, task, names, None).await;
    }

    async fn start_tv(&mut self, cfg: TvConfig) {
        let Some(key) = self.adb_key().await else {
            return;
        };
        let relay = cfg
            .relay
            .as_ref()
            .map(|r| crate::relay::Relay::open(r).map(crate::relay::Relay::boxed));
        let comment = format!("sitelink@{}", self.config.agent.id);
        let (spawn, ctx) = self.spawn_context(&cfg.name);
        let task = tokio::spawn(crate::adb::tv::task::run(
            cfg.clone(),
            key,
            comment,
            relay,
            ctx,
        ));
        self.keep(&cfg.name, spawn, task, vec![cfg.name.clone()], None)
            .await;
    }

    /// The site's ADB key (`data_dir/adbkey`), made on first use. Without
    /// it no TV can be reached, so the error says what to do.
    async fn adb_key(&mut self) -> Option<Arc<AdbKey>> {
        if let Some(k) = &self.adb_key {
            return Some(k.clone());
        }
        let path = self
            .config
            .agent
            .data_dir
            .join(crate::adb::key::PRIVATE_KEY_FILE);
        let comment = format!("sitelink@{}", self.config.agent.id);
        let at = path.clone();
        let loaded =
            tokio::task::spawn_blocking(move || crate::adb::key::load_or_generate(&at, &comment))
                .await;
        match loaded {
            Ok(Ok((key, origin))) => {
                tracing::info!(path = %path.display(), ?origin, "ADB key ready");
                let key = Arc::new(key);
                self.adb_key = Some(key.clone());
                Some(key)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "TVs not started: the ADB key cannot be used; move the file away and reload, and a new key is made (TVs must then accept it again)");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "TVs not started: making the ADB key failed");
                None
            }
        }
    }

    /// The stored state of these devices, as their tasks left it last time.
    async fn remembered(&self, names: &[String]) -> crate::sas::poller::Remembered {
        let path = self.store.db_path().to_path_buf();
        let names = names.to_vec();
        let found = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            Ok(Reader::open(&path)?
                .devices()?
                .into_iter()
                .filter(|d| names.contains(&d.device))
                .filter_map(|d| Some((d.device, d.state?)))
                .collect())
        })
        .await;
        match found {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the devices' last state; starting afresh");
                Default::default()
            }
            Err(_) => Default::default(),
        }
    }

    /// Where a generator's counter goes on: one past what it last stored.
    async fn next_counter(&self, device: &str) -> u64 {
        let path = self.store.db_path().to_path_buf();
        let device = device.to_string();
        let found = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let reader = Reader::open(&path)?;
            let from_state = reader
                .devices()?
                .into_iter()
                .find(|d| d.device == device)
                .and_then(|d| d.state?.get("next")?.as_u64())
                .unwrap_or(0);
            let from_records = reader
                .records(&crate::store::RecordFilter {
                    device: Some(device),
                    kind: Some(generator::KIND.to_string()),
                    limit: 1,
                    ..Default::default()
                })?
                .first()
                .and_then(|r| serde_json::from_str::<generator::Tick>(&r.payload).ok())
                .map_or(0, |t| t.n + 1);
            Ok(from_state.max(from_records))
        })
        .await;
        match found {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read where the generator stopped; counting from 0");
                0
            }
            Err(_) => 0,
        }
    }

    fn start_uplink(&mut self, cfg: UpstreamConfig) {
        let (config, config_rx) = watch::channel(cfg);
        let (stop, shutdown) = watch::channel(false);
        let heartbeat = Heartbeat::new("uplink");
        let ctx = UplinkContext {
            agent: self.config.agent.id.clone(),
            store: self.store.handle(),
            db_path: self.store.db_path().to_path_buf(),
            dispatcher: self.dispatcher.clone(),
            config_path: self.config.source.clone(),
            reloads: Some(self.reload_tx.clone()),
            updates: Some(self.update_tx.clone()),
            config: config_rx,
            shutdown,
            state: self.uplink_state.clone(),
            heartbeat: heartbeat.clone(),
        };
        let task = tokio::spawn(crate::uplink::client::run(ctx));
        self.uplink = Some(RunningUplink {
            config,
            stop,
            task,
            heartbeat,
        });
    }

    async fn stop_uplink(&mut self) {
        if let Some(u) = self.uplink.take() {
            let _ = u.stop.send(true);
            if tokio::time::timeout(TASK_STOP_GRACE, u.task).await.is_err() {
                tracing::warn!("the uplink did not stop in time");
            }
        }
        self.uplink_state.set(None);
    }

    /// Pushed configs (from the upstream), written to the config file and
    /// waiting to be applied by the service's reload. Taken once.
    pub fn take_reload_requests(&mut self) -> Option<mpsc::Receiver<ReloadRequest>> {
        self.reload_rx.take()
    }

    /// Update offers (from the upstream) for the service's updater. Taken once.
    pub fn take_update_requests(&mut self) -> Option<mpsc::Receiver<UpdateRequest>> {
        self.update_rx.take()
    }

    /// The uplink's state, `None` without `[upstream]`.
    pub fn uplink_state(&self) -> UplinkState {
        self.uplink_state.clone()
    }

    async fn stop_device(&mut self, name: &str) {
        if let Some(d) = self.devices.remove(name) {
            for device in &d.serves {
                self.dispatcher.unregister(device).await;
            }
            let _ = d.stop.send(true);
            if tokio::time::timeout(TASK_STOP_GRACE, d.task).await.is_err() {
                tracing::warn!(device = name, "device task did not stop in time");
            }
        }
    }

    /// Applies a new configuration. The caller has validated it.
    pub async fn reload(&mut self, new: Config) -> ReloadPlan {
        let plan = reload_plan(&self.config, &new);
        for name in &plan.generators.removed {
            self.stop_device(name).await;
        }
        for g in &plan.generators.changed {
            self.stop_device(&g.name).await;
            self.start_generator(g.clone()).await;
        }
        for g in &plan.generators.added {
            self.start_generator(g.clone()).await;
        }
        for name in &plan.sas.removed {
            self.stop_device(name).await;
        }
        for l in &plan.sas.changed {
            self.stop_device(&l.name).await;
            self.start_sas_line(l.clone()).await;
        }
        for l in &plan.sas.added {
            self.start_sas_line(l.clone()).await;
        }
        for name in &plan.tvs.removed {
            self.stop_device(name).await;
        }
        for t in &plan.tvs.changed {
            self.stop_device(&t.name).await;
            self.start_tv(t.clone()).await;
        }
        for t in &plan.tvs.added {
            self.start_tv(t.clone()).await;
        }
        if plan.store_changed
            && self
                .store
                .handle()
                .set_policy(Policy::from(&new.store))
                .await
                .is_err()
        {
            tracing::error!("the store is closed; the new [store] settings were not applied");
        }
        if plan.upstream_changed {
            match (&new.upstream, &self.uplink) {
                // The running task reconnects with the new settings.
                (Some(u), Some(running)) => {
                    let _ = running.config.send(u.clone());
                }
                (Some(u), None) => self.start_uplink(u.clone()),
                (None, _) => self.stop_uplink().await,
            }
        }
        for why in &plan.needs_restart {
            tracing::warn!("{why}");
        }
        // Keys that need a restart keep their running value until then.
        let mut applied = new;
        applied.agent.id = self.config.agent.id.clone();
        applied.agent.data_dir = self.config.agent.data_dir.clone();
        self.config = applied;
        plan
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> StoreHandle {
        self.store.handle()
    }

    pub fn store_health(&self) -> Arc<WriterHealth> {
        self.store.health()
    }

    pub fn store_db_path(&self) -> std::path::PathBuf {
        self.store.db_path().to_path_buf()
    }

    pub fn reader(&self) -> Result<Reader, StoreError> {
        self.store.reader()
    }

    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher.clone()
    }

    /// Each generator's counters, by device name.
    pub fn generator_stats(&self) -> Vec<(String, Arc<GeneratorStats>)> {
        self.devices
            .iter()
            .filter_map(|(n, d)| Some((n.clone(), d.stats.clone()?)))
            .collect()
    }

    /// Tasks silent for longer than `limit_ms` (the writer included). Empty
    /// means everything is alive and the watchdog may be pinged.
    pub fn stuck(&self, limit_ms: i64) -> Vec<Stuck> {
        let mut stuck = Vec::new();
        let writer = self.store.health().silent_for_ms();
        if writer > limit_ms {
            stuck.push(Stuck {
                task: "store writer".to_string(),
                silent_ms: writer,
            });
        }
        if let Some(u) = &self.uplink {
            let silent = u.heartbeat.silent_for_ms();
            if silent > limit_ms || u.task.is_finished() {
                stuck.push(Stuck {
                    task: "uplink".to_string(),
                    silent_ms: silent,
                });
            }
        }
        for d in self.devices.values() {
            let silent = d.heartbeat.silent_for_ms();
            if silent > limit_ms || d.task.is_finished() {
                stuck.push(Stuck {
                    task: format!("device {}", d.heartbeat.name()),
                    silent_ms: silent,
                });
            }
        }
        stuck
    }

    /// Device names and whether their task is running.
    pub fn devices_running(&self) -> (usize, usize) {
        let up = self
            .devices
            .values()
            .filter(|d| !d.task.is_finished())
            .count();
        (up, self.devices.len())
    }

    /// Stops every device task (they finish their pending commits first).
    pub async fn stop_devices(&mut self) {
        for d in self.devices.values() {
            let _ = d.stop.send(true);
        }
        let names: Vec<String> = self.devices.keys().cloned().collect();
        for name in names {
            self.stop_device(&name).await;
        }
    }

    /// Stops taking input, commits what is pending, closes the store.
    pub async fn shutdown(mut self) {
        self.stop_devices().await;
        // After the devices: what they committed last may still go out.
        self.stop_uplink().await;
        self.control.abort();
        let socket = crate::control::socket_path(&self.config.agent.data_dir);
        let _ = std::fs::remove_file(socket);
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("sitelink stopped");
    }

    /// One line for `systemctl status`: devices, backlog, last sync.
    pub async fn status_line(&self) -> String {
        let (up, all) = self.devices_running();
        let path = self.store.db_path().to_path_buf();
        let health = self.store.health();
        let store = tokio::task::spawn_blocking(move || Reader::open(&path)?.status())
            .await
            .map_err(|e| StoreError::Invalid(e.to_string()))
            .and_then(|r| r);
        let mut line = format!("{up}/{all} devices up");
        match store {
            Ok(s) => {
                let backlog: i64 = s.classes.iter().map(|c| c.backlog).sum();
                let dropped: i64 = s.classes.iter().map(|c| c.dropped).sum();
                line.push_str(&format!(", backlog {backlog} records"));
                if dropped > 0 {
                    line.push_str(&format!(", {dropped} dropped"));
                }
                line.push_str(&match s.last_ack_ms {
                    Some(ms) => format!(
                        ", last sync {} s ago",
                        (crate::clock::wall_ms() - ms).max(0) / 1000
                    ),
                    None => ", never synced".to_string(),
                });
            }
            Err(e) => line.push_str(&format!(", store unreadable: {e}")),
        }
        if let Some(u) = self.uplink_state.get() {
            line.push_str(&format!(", uplink {}", u.state));
        }
        if health.disk_full() {
            line.push_str(", DISK FULL");
        } else if health.throttled() {
            line.push_str(", store over quota: producers slowed");
        }
        line
    }
}
