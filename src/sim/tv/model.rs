//! One simulated TV's state and what changes it, sans-IO: time comes in as
//! an argument. The shell ([`super::sh`]) calls these on behalf of the
//! commands; [`super::android`] prints the state as Android's tools do.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::adb::proto::AndroidPublicKey;

use super::fs::{FILE_MODE, File, Fs, FsError, KERNEL_FILE_MODE};

/// The home screen: HOME and a stopped foreground app lead here.
pub const LAUNCHER: &str = "com.google.android.tvlauncher";
/// The app that shows an HDMI input (Live Channels).
pub const LIVE_TV: &str = "com.google.android.tv";

/// Launchable apps: package and its leanback activity (full class name).
pub const APPS: &[(&str, &str)] = &[
    (LAUNCHER, "com.google.android.tvlauncher.MainActivity"),
    (LIVE_TV, "com.android.tv.MainActivity"),
    (
        "com.android.tv.settings",
        "com.android.tv.settings.MainSettings",
    ),
    ("com.netflix.ninja", "com.netflix.ninja.MainActivity"),
    (
        "com.google.android.youtube.tv",
        "com.google.android.apps.youtube.tv.activity.ShellActivity",
    ),
    (
        "com.plexapp.android",
        "com.plexapp.plex.activities.SplashActivity",
    ),
    (
        "com.spotify.tv.android",
        "com.spotify.tv.android.SpotifyTVActivity",
    ),
    ("org.xbmc.kodi", "org.xbmc.kodi.Splash"),
];

/// Installed packages without a leanback activity: `monkey` finds nothing
/// to start in them.
pub const SYSTEM_PACKAGES: &[&str] = &[
    "android",
    "com.android.providers.settings",
    "com.android.shell",
    "com.android.systemui",
    "com.google.android.gms",
];

/// The key events the TV reacts to (others are only counted).
pub mod keycode {
    pub const HOME: u16 = 3;
    pub const BACK: u16 = 4;
    pub const VOLUME_UP: u16 = 24;
    pub const VOLUME_DOWN: u16 = 25;
    pub const POWER: u16 = 26;
    pub const VOLUME_MUTE: u16 = 164;
    pub const SLEEP: u16 = 223;
    pub const WAKEUP: u16 = 224;
    pub const TV_INPUT_HDMI_1: u16 = 243;
    pub const TV_INPUT_HDMI_4: u16 = 246;
}

/// Key events kept for [`TvState::keys`].
const KEYS_KEPT: usize = 1000;
/// Lines kept for `logcat`.
const LOG_KEPT: usize = 1000;

/// Who the TV says it is (`getprop`, the CNXN banner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub manufacturer: String,
    /// `ro.product.model`, e.g. `SIM TV 55`.
    pub model: String,
    /// `ro.product.name`.
    pub name: String,
    /// `ro.product.device` and `ro.product.vendor.device`.
    pub device: String,
    pub serial: String,
    /// `ro.build.version.release`, e.g. `11`.
    pub release: String,
    pub sdk: u32,
}

/// A snapshot of one TV, for tests and the benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TvState {
    /// Awake (screen on) or asleep (standby).
    pub awake: bool,
    /// Music stream index, 0 to `max_volume`.
    pub volume: u32,
    pub max_volume: u32,
    pub muted: bool,
    /// The package in front.
    pub app: String,
    /// The HDMI input shown (1 to 4), if any.
    pub input: Option<u8>,
    pub uptime: Duration,
    /// Key events injected with `input keyevent`, oldest first (the last 1000).
    pub keys: Vec<u16>,
    /// TCP connections accepted since the simulator started.
    pub connections: u64,
    /// Shell and exec commands run.
    pub commands: u64,
    /// Reboots through the `reboot:` service.
    pub boots: u64,
    /// Host keys the TV trusts (accepted on the TV, or given at start).
    pub trusted_keys: usize,
    /// False while the TV is rebooting or made unreachable by a fault.
    pub reachable: bool,
}

/// `media volume --set N` out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Error: invalid volume index {index} for stream 3 (should be in [0..{max}])")]
pub struct VolumeError {
    pub index: i64,
    pub max: u32,
}

/// A small deterministic generator: figures and ids that differ per TV and
/// per seed, and repeat for the same seed.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One logcat line, formatted when dumped.
#[derive(Clone, Debug)]
pub struct LogLine {
    pub wall_ms: i64,
    pub pid: u32,
    pub tid: u32,
    pub priority: char,
    pub tag: &'static str,
    pub message: String,
}

/// A TV's figures that do not follow from commands.
#[derive(Clone, Debug)]
pub struct Figures {
    pub mem_total_kb: u64,
    pub mem_available_kb: u64,
    pub data_total_kb: u64,
    pub data_used_kb: u64,
    /// Thermal zones at rest, millidegrees Celsius.
    pub zones_mc: Vec<i64>,
    /// Hex ids for window and activity records in `dumpsys window`.
    pub window_hash: u32,
    pub record_hash: u32,
    pub system_server_pid: u32,
}

#[derive(Debug)]
pub struct TvModel {
    pub identity: Identity,
    pub figures: Figures,
    pub(super) fs: Fs,
    pub(super) trusted: Vec<AndroidPublicKey>,
    awake: bool,
    volume: u32,
    max_volume: u32,
    muted: bool,
    app: String,
    input: Option<u8>,
    /// Uptime at `booted` (the TV ran before the simulator started).
    uptime_at_boot: Duration,
    booted: Instant,
    keys: VecDeque<u16>,
    log: VecDeque<LogLine>,
    pub(super) connections: u64,
    pub(super) commands: u64,
    boots: u64,
    rng: SplitMix,
}

/// Wall-clock milliseconds now.
pub fn wall_ms() -> i64 {
    crate::clock::wall_ms()
}

fn wall_secs() -> u32 {
    u32::try_from(wall_ms() / 1000).unwrap_or(0)
}

impl TvModel {
    /// A TV that has been up for a while, awake on its home screen.
    pub fn new(identity: Identity, max_volume: u32, seed: u64, now: Instant) -> TvModel {
        let mut rng = SplitMix::new(seed);
        let figures = Figures {
            mem_total_kb: 1_999_948,
            mem_available_kb: 900_000 + rng.below(200_000),
            data_total_kb: 11_598_932,
            data_used_kb: 2_000_000 + rng.below(1_000_000),
            zones_mc: vec![
                41_000 + rng.below(6_000) as i64,
                39_000 + rng.below(5_000) as i64,
            ],
            window_hash: 0x100_0000 + rng.below(0xEFF_FFFF) as u32,
            record_hash: 0x100_0000 + rng.below(0xEFF_FFFF) as u32,
            system_server_pid: 500 + rng.below(400) as u32,
        };
        let mut fs = crate::sim::tv::fs::Fs::new();
        for dir in [
            "/sdcard/Download",
            "/sdcard/Pictures",
            "/data/local/tmp",
            "/system/bin",
        ] {
            fs.mkdirs(dir);
        }
        fs.install(
            "/sdcard/Download/readme.txt",
            File {
                data: readme(&identity).into_bytes(),
                mode: FILE_MODE,
                mtime: wall_secs(),
            },
        );
        let mut tv = TvModel {
            identity,
            figures,
            fs,
            trusted: Vec::new(),
            awake: true,
            volume: max_volume.div_ceil(4),
            max_volume,
            muted: false,
            app: LAUNCHER.to_string(),
            input: None,
            uptime_at_boot: Duration::from_secs(3_600 + rng.below(9 * 86_400)),
            booted: now,
            keys: VecDeque::new(),
            log: VecDeque::new(),
            connections: 0,
            commands: 0,
            boots: 0,
            rng,
        };
        tv.boot_log();
        tv
    }

    pub fn awake(&self) -> bool {
        self.awake
    }

    pub fn volume(&self) -> u32 {
        self.volume
    }

    pub fn max_volume(&self) -> u32 {
        self.max_volume
    }

    pub fn muted(&self) -> bool {
        self.muted
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn input(&self) -> Option<u8> {
        self.input
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        self.uptime_at_boot + now.saturating_duration_since(self.booted)
    }

    /// The activity in front: (package, full class name).
    pub fn activity(&self) -> (&str, &str) {
        let class = APPS
            .iter()
            .find(|(p, _)| *p == self.app)
            .map_or("MainActivity", |(_, a)| a);
        (&self.app, class)
    }

    pub fn is_installed(&self, package: &str) -> bool {
        APPS.iter().any(|(p, _)| *p == package) || SYSTEM_PACKAGES.contains(&package)
    }

    pub fn snapshot(&self, now: Instant) -> TvState {
        TvState {
            awake: self.awake,
            volume: self.volume,
            max_volume: self.max_volume,
            muted: self.muted,
            app: self.app.clone(),
            input: self.input,
            uptime: self.uptime(now),
            keys: self.keys.iter().copied().collect(),
            connections: self.connections,
            commands: self.commands,
            boots: self.boots,
            trusted_keys: self.trusted.len(),
            reachable: true,
        }
    }

    /// `input keyevent CODE`: power, volume, inputs and home act; the rest
    /// is only counted. Asleep, only the power keys act, as on a TV in
    /// standby.
    pub fn key(&mut self, code: u16) {
        use keycode::*;
        if self.keys.len() == KEYS_KEPT {
            self.keys.pop_front();
        }
        self.keys.push_back(code);
        match code {
            WAKEUP => self.set_awake(true, "WAKE_REASON_WAKE_KEY"),
            SLEEP => self.set_awake(false, "sleep_button"),
            POWER => {
                let on = !self.awake;
                self.set_awake(
                    on,
                    if on {
                        "WAKE_REASON_POWER_BUTTON"
                    } else {
                        "power_button"
                    },
                );
            }
            _ if !self.awake => {}
            VOLUME_UP => self.set_index(self.volume.saturating_add(1).min(self.max_volume)),
            VOLUME_DOWN => self.set_index(self.volume.saturating_sub(1)),
            VOLUME_MUTE => {
                self.muted = !self.muted;
                let m = self.muted;
                self.note(
                    'I',
                    "AudioService",
                    format!("setStreamMute(STREAM_MUSIC, {m})"),
                );
            }
            HOME | BACK => self.bring_to_front(LAUNCHER, None, 1000),
            TV_INPUT_HDMI_1..=TV_INPUT_HDMI_4 => {
                let n = u8::try_from(code - TV_INPUT_HDMI_1 + 1).unwrap_or(1);
                self.bring_to_front(LIVE_TV, Some(n), 1000);
            }
            _ => {}
        }
    }

    fn set_awake(&mut self, on: bool, reason: &str) {
        if on == self.awake {
            return;
        }
        self.awake = on;
        let message = if on {
            format!(
                "Waking up from Asleep (uid=1000, reason={reason}, details=android.policy:KEY)..."
            )
        } else {
            format!("Going to sleep due to {reason} (uid 1000)...")
        };
        self.note('I', "PowerManagerService", message);
    }

    fn set_index(&mut self, index: u32) {
        self.volume = index;
        self.muted = false;
        self.note(
            'I',
            "AudioService",
            format!("setStreamVolume(stream=3, index={index}) device=hdmi"),
        );
    }

    /// `media volume --stream 3 --set N`.
    pub fn set_volume(&mut self, index: i64) -> Result<(), VolumeError> {
        match u32::try_from(index) {
            Ok(i) if i <= self.max_volume => {
                self.set_index(i);
                Ok(())
            }
            _ => Err(VolumeError {
                index,
                max: self.max_volume,
            }),
        }
    }

    fn bring_to_front(&mut self, package: &str, input: Option<u8>, uid: u32) {
        self.app = package.to_string();
        self.input = input;
        let (pkg, class) = self.activity();
        let short = short_class(pkg, class);
        let message = format!(
            "START u0 {{act=android.intent.action.MAIN cat=[android.intent.category.LEANBACK_LAUNCHER] \
             flg=0x10200000 cmp={pkg}/{short}}} from uid {uid}"
        );
        self.note('I', "ActivityTaskManager", message);
    }

    /// `monkey -p PKG`: true if the package has an activity to start.
    pub fn launch(&mut self, package: &str) -> bool {
        if !APPS.iter().any(|(p, _)| *p == package) {
            return false;
        }
        self.bring_to_front(package, None, 2000);
        true
    }

    /// `am force-stop PKG`: the home screen comes back if it was in front.
    pub fn force_stop(&mut self, package: &str) {
        if self.is_installed(package) {
            let pid = self.figures.system_server_pid;
            self.note(
                'I',
                "ActivityManager",
                format!("Force stopping {package} appid=10087 user=0: from pid {pid}"),
            );
        }
        if self.app == package && package != LAUNCHER {
            self.bring_to_front(LAUNCHER, None, 1000);
        }
    }

    /// The TV restarts: uptime from zero, awake on the home screen.
    pub fn reboot(&mut self, now: Instant) {
        self.note('I', "ShutdownThread", "Rebooting, reason: null".to_string());
        self.boots += 1;
        self.booted = now;
        self.uptime_at_boot = Duration::ZERO;
        self.awake = true;
        self.app = LAUNCHER.to_string();
        self.input = None;
        self.log.clear();
        self.boot_log();
    }

    /// Trusts a host key (the "Allow" on the TV, or a pre-loaded `adb_keys`).
    pub fn trust(&mut self, key: AndroidPublicKey) {
        if !self.trusted.contains(&key) {
            self.trusted.push(key);
        }
    }

    pub fn trusted(&self) -> &[AndroidPublicKey] {
        &self.trusted
    }

    /// Per-connection token seed: tokens differ per connection, repeatably.
    pub fn token_seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        seed
    }

    fn boot_log(&mut self) {
        let (ss, pkg) = (self.figures.system_server_pid, LAUNCHER);
        self.log_as(
            ss,
            'I',
            "SystemServer",
            "Entered the Android system server!".into(),
        );
        self.log_as(
            ss,
            'I',
            "ActivityManager",
            format!(
                "Start proc {}:{pkg}/u0a52 for activity {{{pkg}/.MainActivity}}",
                ss + 731
            ),
        );
        self.note(
            'I',
            "ActivityTaskManager",
            format!("Displayed {pkg}/.MainActivity: +1s204ms"),
        );
    }

    /// A line from system_server.
    fn note(&mut self, priority: char, tag: &'static str, message: String) {
        self.log_as(self.figures.system_server_pid, priority, tag, message);
    }

    fn log_as(&mut self, pid: u32, priority: char, tag: &'static str, message: String) {
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        let tid = pid + 1 + self.rng.below(60) as u32;
        self.log.push_back(LogLine {
            wall_ms: wall_ms(),
            pid,
            tid,
            priority,
            tag,
            message,
        });
    }

    /// The newest `count` log lines, oldest first.
    pub fn log_tail(&self, count: usize) -> impl Iterator<Item = &LogLine> {
        self.log.iter().skip(self.log.len().saturating_sub(count))
    }

    /// Files made from the state when read, with their modes.
    fn kernel_file(&self, path: &str, now: Instant) -> Option<Vec<u8>> {
        let thermal = path
            .strip_prefix("/sys/class/thermal/thermal_zone")
            .and_then(|rest| rest.strip_suffix("/temp"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(zone) = thermal {
            return self
                .zone_temperature(zone)
                .map(|t| format!("{t}\n").into_bytes());
        }
        Some(
            match path {
                "/proc/uptime" => super::android::proc_uptime(self, now),
                "/proc/meminfo" => super::android::proc_meminfo(self),
                "/proc/version" => super::android::proc_version(),
                _ => return None,
            }
            .into_bytes(),
        )
    }

    /// Zone `zone` now, m°C: warmer awake, and with video in front.
    pub fn zone_temperature(&self, zone: usize) -> Option<i64> {
        let rest = *self.figures.zones_mc.get(zone)?;
        let load = match (self.awake, self.app.as_str()) {
            (false, _) => -4_000,
            (true, LAUNCHER) => 0,
            (true, _) => 3_500,
        };
        Some(rest + load)
    }

    /// The paths of the kernel files, for globs.
    pub fn kernel_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = ["/proc/uptime", "/proc/meminfo", "/proc/version"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for zone in 0..self.figures.zones_mc.len() {
            paths.push(format!("/sys/class/thermal/thermal_zone{zone}"));
            paths.push(format!("/sys/class/thermal/thermal_zone{zone}/temp"));
        }
        paths.extend(["/proc", "/sys", "/sys/class", "/sys/class/thermal"].map(String::from));
        paths
    }

    /// Reads a file as the shell user.
    pub fn read(&self, path: &str, now: Instant) -> Result<File, FsError> {
        let path = super::fs::normalize(path);
        if let Some(data) = self.kernel_file(&path, now) {
            return Ok(File {
                data,
                mode: KERNEL_FILE_MODE,
                mtime: wall_secs(),
            });
        }
        if let Some(f) = self.fs.get(&path) {
            return Ok(f.clone());
        }
        let kernel_dir = self.kernel_paths().contains(&path);
        if self.fs.is_dir(&path) || kernel_dir {
            return Err(FsError::IsDirectory);
        }
        Err(FsError::NotFound)
    }

    /// Writes a file as the shell user.
    pub fn write(
        &mut self,
        path: &str,
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
    ) -> Result<(), FsError> {
        // Permission bits as given, always a regular file.
        let mode = 0o100_000 | (mode & 0o7777);
        self.fs.write(path, File { data, mode, mtime })
    }

    /// Glob candidates: files, directories and kernel files.
    pub fn all_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.fs.paths().map(str::to_string).collect();
        paths.extend(self.kernel_paths());
        paths
    }
}

/// `com.netflix.ninja.MainActivity` → `.MainActivity` inside its package,
/// as Android shortens component names.
pub fn short_class<'a>(package: &str, class: &'a str) -> std::borrow::Cow<'a, str> {
    match class.strip_prefix(package) {
        Some(rest) if rest.starts_with('.') => rest.into(),
        _ => class.into(),
    }
}

fn readme(id: &Identity) -> String {
    format!(
        "{} {} (simulated by sitelink)\nserial {}\nAndroid {} (API {})\n",
        id.manufacturer, id.model, id.serial, id.release, id.sdk
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv() -> TvModel {
        let id = Identity {
            manufacturer: "Sitelink".into(),
            model: "SIM TV 55".into(),
            name: "simtv_55".into(),
            device: "simtv".into(),
            serial: "SIMTV0001".into(),
            release: "11".into(),
            sdk: 30,
        };
        TvModel::new(id, 100, 7, Instant::now())
    }

    #[test]
    fn power_keys_and_standby() {
        let mut tv = tv();
        assert!(tv.awake());
        tv.key(keycode::SLEEP);
        tv.key(keycode::SLEEP);
        assert!(!tv.awake());
        let volume = tv.volume();
        tv.key(keycode::VOLUME_UP);
        tv.key(keycode::HOME);
        assert_eq!(tv.volume(), volume, "asleep: volume keys do nothing");
        tv.key(keycode::POWER);
        assert!(tv.awake());
        tv.key(keycode::POWER);
        assert!(!tv.awake());
        tv.key(keycode::WAKEUP);
        assert!(tv.awake());
        assert_eq!(
            tv.snapshot(Instant::now()).keys,
            [223, 223, 24, 3, 26, 26, 224]
        );
    }

    #[test]
    fn volume_keys_clamp_and_unmute() {
        let mut tv = tv();
        tv.set_volume(99).unwrap();
        tv.key(keycode::VOLUME_UP);
        tv.key(keycode::VOLUME_UP);
        assert_eq!(tv.volume(), 100);
        tv.key(keycode::VOLUME_MUTE);
        assert!(tv.muted());
        tv.key(keycode::VOLUME_DOWN);
        assert!(!tv.muted());
        assert_eq!(tv.volume(), 99);
        tv.set_volume(0).unwrap();
        tv.key(keycode::VOLUME_DOWN);
        assert_eq!(tv.volume(), 0);
        assert_eq!(
            tv.set_volume(101),
            Err(VolumeError {
                index: 101,
                max: 100
            })
        );
        assert_eq!(
            tv.set_volume(-1).unwrap_err().to_string(),
            "Error: invalid volume index -1 for stream 3 (should be in [0..100])"
        );
    }

    #[test]
    fn apps_inputs_and_reboot() {
        let mut tv = tv();
        assert!(tv.launch("com.netflix.ninja"));
        assert_eq!(
            tv.activity(),
            ("com.netflix.ninja", "com.netflix.ninja.MainActivity")
        );
        assert!(!tv.launch("com.example.missing"));
        assert!(
            !tv.launch("com.android.systemui"),
            "installed, but no leanback activity"
        );
        tv.key(keycode::TV_INPUT_HDMI_1 + 2);
        assert_eq!((tv.app(), tv.input()), (LIVE_TV, Some(3)));
        tv.key(keycode::HOME);
        assert_eq!((tv.app(), tv.input()), (LAUNCHER, None));
        tv.launch("org.xbmc.kodi");
        tv.force_stop("com.netflix.ninja");
        assert_eq!(tv.app(), "org.xbmc.kodi");
        tv.force_stop("org.xbmc.kodi");
        assert_eq!(tv.app(), LAUNCHER);
        let now = Instant::now();
        assert!(tv.uptime(now) >= Duration::from_secs(3600));
        tv.launch("org.xbmc.kodi");
        tv.reboot(now);
        assert!(tv.uptime(now) < Duration::from_secs(1));
        assert_eq!(tv.app(), LAUNCHER);
        assert_eq!(tv.snapshot(now).boots, 1);
        assert!(tv.log_tail(10).any(|l| l.message.contains("system server")));
    }

    #[test]
    fn kernel_files_and_storage() {
        let tv = tv();
        let now = Instant::now();
        let up = tv.read("/proc/uptime", now).unwrap();
        assert!(String::from_utf8(up.data).unwrap().ends_with('\n'));
        assert_eq!(tv.read("/proc", now), Err(FsError::IsDirectory));
        assert_eq!(tv.read("/sdcard", now), Err(FsError::IsDirectory));
        assert_eq!(tv.read("/nope", now), Err(FsError::NotFound));
        assert!(
            tv.read("/sys/class/thermal/thermal_zone1/temp", now)
                .is_ok()
        );
        assert_eq!(
            tv.read("/sys/class/thermal/thermal_zone9/temp", now),
            Err(FsError::NotFound)
        );
        let readme = tv.read("/sdcard/Download/readme.txt", now).unwrap();
        assert!(
            String::from_utf8(readme.data)
                .unwrap()
                .contains("SIM TV 55")
        );
        assert_eq!(short_class("com.a.b", "com.a.b.Main"), ".Main");
        assert_eq!(short_class("com.a.b", "com.x.Main"), "com.x.Main");
    }
}
