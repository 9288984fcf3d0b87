//! The TV's state printed the way Android 11 (and, for the legacy TV, 6.0)
//! prints it: `dumpsys power|window|audio|tv_input`, `getprop`, `/proc`
//! files, toybox `df`, `logcat`. Modelled on real output, abridged to the
//! lines and sections around what agents read, and never derived from the
//! agent's parsers.

use std::fmt::Write as _;
use std::time::Instant;

use super::model::{APPS, LAUNCHER, LIVE_TV, SYSTEM_PACKAGES, TvModel, short_class};

/// HDMI inputs as an Amlogic TV names them: its hardware ids start at HW5.
const HDMI_SERVICE_PACKAGE: &str = "com.droidlogic.tvinput";
const FIRST_HDMI_HW: u8 = 5;

fn hdmi_input_id(port: u8) -> String {
    format!(
        "{HDMI_SERVICE_PACKAGE}/.services.Hdmi{port}InputService/HW{}",
        FIRST_HDMI_HW + port - 1
    )
}

/// `Awake`/`Asleep`, as `mWakefulness=` says it.
fn wakefulness(tv: &TvModel) -> &'static str {
    if tv.awake() { "Awake" } else { "Asleep" }
}

pub fn dumpsys_power(tv: &TvModel, now: Instant) -> String {
    let on = tv.awake();
    let uptime_ms = tv.uptime(now).as_millis();
    let wake_ago = uptime_ms.min(1_234);
    let mut s = String::from("POWER MANAGER (dumpsys power)\n\nPower Manager State:\n");
    let state = [
        "  Settings power_manager_constants:\n    no_cached_wake_locks=true\n".to_string(),
        "  mDirty=0x0\n".into(),
        format!("  mWakefulness={}\n", wakefulness(tv)),
        "  mWakefulnessChanging=false\n  mIsPowered=true\n  mPlugType=0\n  mBatteryLevel=0\n"
            .into(),
        "  mDockState=0\n  mStayOn=false\n  mProximityPositive=false\n  mBootCompleted=true\n"
            .into(),
        "  mSystemReady=true\n  mHalAutoSuspendModeEnabled=false\n".into(),
        format!("  mHalInteractiveModeEnabled={on}\n"),
        format!("  mWakeLockSummary=0x{}\n", if on { "21" } else { "1" }),
        "  mNotifyLongScheduled=(none)\n  mNotifyLongDispatched=(none)\n".into(),
        format!("  mUserActivitySummary=0x{}\n", u8::from(on)),
        "  mRequestWaitForNegativeProximity=false\n  mSandmanScheduled=false\n".into(),
        "  mBatteryLowWarning=false\n  mLowPowerModeEnabled=false\n".into(),
        "  mHoldingWakeLockSuspendBlocker=true\n".into(),
        format!("  mHoldingDisplaySuspendBlocker={on}\n"),
        format!(
            "  mLastWakeTime={} ({wake_ago} ms ago)\n",
            uptime_ms.saturating_sub(wake_ago)
        ),
        "  mDisplayReady=true\n  mScreenBrightnessBoostInProgress=false\n".into(),
    ];
    state.iter().for_each(|l| s.push_str(l));
    s.push_str(
        "\nSettings and Configuration:\n  mDecoupleHalAutoSuspendModeFromDisplayConfig=false\n",
    );
    s.push_str("  mScreenOffTimeoutSetting=14400000\n  mSleepTimeoutSetting=-1\n  mStayOnWhilePluggedInSetting=0\n");
    s.push_str("\nWake Locks: size=1\n");
    s.push_str("  PARTIAL_WAKE_LOCK              'AudioMix' ACQ=-52m3s120ms (uid=1041 pid=318)\n");
    let display_refs = u8::from(on);
    let _ = write!(
        s,
        "\nSuspend Blockers: size=4\n  PowerManagerService.WakeLocks: ref count=1\n  \
         PowerManagerService.Display: ref count={display_refs}\n  \
         PowerManagerService.Broadcasts: ref count=0\n  \
         PowerManagerService.WirelessChargerDetector: ref count=0\n"
    );
    let _ = write!(
        s,
        "\nDisplay Power: state={}\n",
        if on { "ON" } else { "OFF" }
    );
    s
}

pub fn dumpsys_window_windows(tv: &TvModel) -> String {
    let (pkg, class) = tv.activity();
    let short = short_class(pkg, class);
    let f = &tv.figures;
    let (win, rec) = (f.window_hash, f.record_hash);
    let task = 10 + APPS.iter().position(|(p, _)| *p == pkg).unwrap_or(0);
    let uid = 10_040 + task;
    let mut s = String::from("WINDOW MANAGER WINDOWS (dumpsys window windows)\n");
    let _ = write!(
        s,
        "  Window #0 Window{{{:07x} u0 InputMethod}}:\n    mDisplayId=0 rootTaskId=1 \
         mSession=Session{{{:07x} 1543:u0a10061}} mClient=android.os.BinderProxy@{:07x}\n    \
         mOwnerUid=10061 showForAllUsers=false package=com.google.android.leanback.ime appop=NONE\n    \
         mAttrs={{(0,0)(fillxwrap) gr=BOTTOM CENTER_VERTICAL sim={{adjust=pan}} ty=INPUT_METHOD fmt=TRANSPARENT\n      \
         fl=NOT_FOCUSABLE LAYOUT_IN_SCREEN SPLIT_TOUCH HARDWARE_ACCELERATED}}\n    \
         mHasSurface=false isReadyForDisplay()=false mWindowRemovalAllowed=false\n",
        win ^ 0x5A5A5A,
        win ^ 0x1F1F1F,
        win ^ 0x3C3C3C
    );
    let _ = write!(
        s,
        "  Window #1 Window{{{win:07x} u0 {pkg}/{class}}}:\n    mDisplayId=0 rootTaskId={task} \
         mSession=Session{{{:07x} 2877:u0a{uid}}} mClient=android.os.BinderProxy@{:07x}\n    \
         mOwnerUid={uid} showForAllUsers=false package={pkg} appop=NONE\n    \
         mAttrs={{(0,0)(fillxfill) sim={{adjust=pan}} ty=BASE_APPLICATION wanim=0x10302f8\n      \
         fl=LAYOUT_IN_SCREEN LAYOUT_INSET_DECOR SPLIT_TOUCH HARDWARE_ACCELERATED}}\n    \
         Requested w=1920 h=1080 mLayoutSeq=214\n    \
         mHasSurface=true isReadyForDisplay()={} mWindowRemovalAllowed=false\n",
        win ^ 0x777777,
        win ^ 0x2B2B2B,
        tv.awake()
    );
    s.push_str(
        "\n  mGlobalConfiguration={1.0 ?mcc?mnc [en_US] ldltr sw540dp w960dp h540dp 320dpi lrg long land \
         television -touch qwerty/v/v dpad/v s.6}\n  mHasPermanentDpad=true\n  mTopFocusedDisplayId=0\n",
    );
    let _ = writeln!(
        s,
        "  mInputMethodTarget=null\n  mInputMethodWindow=Window{{{:07x} u0 InputMethod}}",
        win ^ 0x5A5A5A
    );
    let _ = writeln!(s, "  mCurrentFocus=Window{{{win:07x} u0 {pkg}/{class}}}");
    // Android 10 and older nest the record in its app window token.
    if tv.identity.sdk >= 30 {
        let _ = writeln!(
            s,
            "  mFocusedApp=ActivityRecord{{{rec:07x} u0 {pkg}/{short} t{task}}}"
        );
    } else {
        let _ = writeln!(
            s,
            "  mFocusedApp=AppWindowToken{{{:07x} token=Token{{{:07x} ActivityRecord{{{rec:07x} u0 {pkg}/{short} t{task}}}}}}}",
            rec ^ 0x4D4D4D,
            rec ^ 0x6E6E6E
        );
    }
    s
}

/// `- STREAM_X:` blocks: name, min, max, the index on HDMI (the device in
/// use) and on the speaker (not in use: a TV plays through HDMI/ARC here).
fn stream_block(
    s: &mut String,
    name: &str,
    (min, max): (u32, u32),
    index: u32,
    speaker: u32,
    muted: bool,
) {
    let _ = write!(
        s,
        "- {name}:\n   Muted: {muted}\n   Min: {min}\n   Max: {max}\n   streamVolume:{index}\n   \
         Current: 2 (speaker): {speaker}, 400 (hdmi): {index}, 40000000 (default): {speaker}\n   \
         Devices: hdmi\n"
    );
}

pub fn dumpsys_audio(tv: &TvModel) -> String {
    let mut s = String::from("\nAudio Focus stack entries (last is top of stack):\n");
    if tv.app() != LAUNCHER {
        let _ = writeln!(
            s,
            "  source:android.os.BinderProxy@c0ffee1 -- pack: {} -- client: android.media.AudioManager@b4d2e1 \
             -- gain: GAIN -- flags:  -- loss: none -- notified: true -- uid: 10087 -- attr: AudioAttributes: \
             usage=USAGE_MEDIA content=CONTENT_TYPE_MOVIE flags=0x800 tags= bundle=null -- sdk:{}",
            tv.app(),
            tv.identity.sdk
        );
    }
    s.push_str(" No external focus policy\n\nStream volumes (device: index)\n");
    stream_block(&mut s, "STREAM_VOICE_CALL", (1, 5), 4, 4, false);
    stream_block(&mut s, "STREAM_SYSTEM", (0, 7), 5, 5, false);
    stream_block(&mut s, "STREAM_RING", (0, 7), 5, 5, false);
    let speaker = 11.min(tv.max_volume());
    stream_block(
        &mut s,
        "STREAM_MUSIC",
        (0, tv.max_volume()),
        tv.volume(),
        speaker,
        tv.muted(),
    );
    stream_block(&mut s, "STREAM_ALARM", (1, 7), 6, 6, false);
    stream_block(&mut s, "STREAM_NOTIFICATION", (0, 7), 5, 5, false);
    stream_block(&mut s, "STREAM_BLUETOOTH_SCO", (0, 15), 7, 7, false);
    stream_block(&mut s, "STREAM_SYSTEM_ENFORCED", (0, 7), 5, 5, false);
    stream_block(&mut s, "STREAM_DTMF", (0, 15), 11, 11, false);
    stream_block(&mut s, "STREAM_TTS", (0, 15), 11, 11, false);
    stream_block(&mut s, "STREAM_ACCESSIBILITY", (1, 15), 11, 11, false);
    s.push_str("\nRinger mode: \n- mode (internal) = NORMAL\n- mode (external) = NORMAL\n");
    s.push_str("- ringer mode affected streams = 0x80 (STREAM_SYSTEM_ENFORCED)\n");
    s.push_str("\nAudio routes:\n  mMainType=0x0\n  mBluetoothName=null\n");
    s.push_str("\nHDMI: has_hdmi_system_audio=false\n");
    s
}

pub fn dumpsys_tv_input(tv: &TvModel) -> String {
    let mut s = String::from(
        "User Ids (Current user: 0):\n  0\nUserState (0):\n  inputMap: inputId -> TvInputState\n",
    );
    for port in 1..=4u8 {
        let id = hdmi_input_id(port);
        let _ = writeln!(
            s,
            "    {id}: info: TvInputInfo{{id={id}, pkg={HDMI_SERVICE_PACKAGE}, \
             service={HDMI_SERVICE_PACKAGE}.services.Hdmi{port}InputService}}; state: 0"
        );
    }
    let _ = write!(
        s,
        "  packageSet:\n    {HDMI_SERVICE_PACKAGE}\n  clientStateMap: ITvInputClient -> ClientState\n"
    );
    let session = match (tv.input(), tv.app() == LIVE_TV) {
        (Some(port), true) => Some(port),
        _ => None,
    };
    if session.is_some() {
        s.push_str(
            "    android.os.BinderProxy@e1a7c33: com.android.server.tv.TvInputManagerService$ClientState@5b1f2aa\n      \
             sessionTokens:\n        android.os.Binder@81c4d0e\n      clientTokens: android.os.BinderProxy@e1a7c33\n      \
             userId: 0\n",
        );
    }
    s.push_str("  serviceStateMap: ComponentName -> ServiceState\n");
    for port in 1..=4u8 {
        let _ = writeln!(
            s,
            "    ComponentInfo{{{HDMI_SERVICE_PACKAGE}/{HDMI_SERVICE_PACKAGE}.services.Hdmi{port}InputService}}: \
             com.android.server.tv.TvInputManagerService$ServiceState@{:07x}",
            0x2c0_0000 + u32::from(port)
        );
    }
    s.push_str("  sessionStateMap: ITvInputSession -> SessionState\n");
    if let Some(port) = session {
        let _ = write!(
            s,
            "    android.os.Binder@81c4d0e: com.android.server.tv.TvInputManagerService$SessionState@7d0e9f1\n      \
             inputId: {}\n      client: android.media.tv.ITvInputClient$Stub$Proxy@91b2c3d\n      seq: 3\n      \
             callingUid: 10052\n      userId: 0\n      sessionToken: android.os.Binder@81c4d0e\n      \
             session: android.media.tv.ITvInputSession$Stub$Proxy@aa01b2c\n      logUri: null\n      \
             hardwareSessionToken: android.os.Binder@3e4f5a6\n      \
             ResourceClientProfile {{tvInputSessionId=session_{port}, useCase=200, hdmi_port={port}}}\n",
            hdmi_input_id(port)
        );
    }
    s.push_str("  callbackSet:\n");
    let _ = writeln!(
        s,
        "  mainSessionToken: {}",
        if session.is_some() {
            "android.os.Binder@81c4d0e"
        } else {
            "null"
        }
    );
    s
}

/// Every property, sorted by name as `getprop` prints them.
pub fn properties(tv: &TvModel) -> Vec<(&'static str, String)> {
    let id = &tv.identity;
    let build_id = if id.sdk >= 30 {
        "RTT2.220118.001"
    } else {
        "MHC19Q"
    };
    let fingerprint = format!(
        "{}/{}/{}:{}/{build_id}/20240101:user/release-keys",
        id.manufacturer, id.name, id.device, id.release
    );
    let mut props = vec![
        ("dalvik.vm.heapsize", "384m".to_string()),
        (
            "net.hostname",
            format!("android-{}", id.serial.to_lowercase()),
        ),
        ("persist.sys.locale", "en-US".into()),
        ("persist.sys.timezone", "Europe/London".into()),
        ("ro.adb.secure", "1".into()),
        ("ro.board.platform", "sim".into()),
        ("ro.boot.serialno", id.serial.clone()),
        ("ro.build.characteristics", "tv".into()),
        ("ro.build.display.id", format!("{build_id} release-keys")),
        ("ro.build.fingerprint", fingerprint),
        ("ro.build.id", build_id.into()),
        ("ro.build.type", "user".into()),
        ("ro.build.version.release", id.release.clone()),
        ("ro.build.version.sdk", id.sdk.to_string()),
        ("ro.build.version.security_patch", "2024-01-05".into()),
        ("ro.hardware", "sim".into()),
        ("ro.product.brand", id.manufacturer.clone()),
        ("ro.product.device", id.device.clone()),
        ("ro.product.manufacturer", id.manufacturer.clone()),
        ("ro.product.model", id.model.clone()),
        ("ro.product.name", id.name.clone()),
        ("ro.product.vendor.device", id.device.clone()),
        ("ro.serialno", id.serial.clone()),
        ("service.adb.tcp.port", "5555".into()),
        ("sys.boot_completed", "1".into()),
    ];
    props.sort();
    props
}

pub fn getprop_all(tv: &TvModel) -> String {
    properties(tv)
        .iter()
        .map(|(k, v)| format!("[{k}]: [{v}]\n"))
        .collect()
}

pub fn proc_uptime(tv: &TvModel, now: Instant) -> String {
    let up = tv.uptime(now).as_secs_f64();
    // Idle time is summed over the 4 cores, mostly idle.
    format!("{up:.2} {:.2}\n", up * 4.0 * 0.85)
}

pub fn proc_meminfo(tv: &TvModel) -> String {
    let f = &tv.figures;
    let in_use = if tv.app() == LAUNCHER { 0 } else { 150_000 };
    let available = f.mem_available_kb.saturating_sub(in_use);
    let free = available / 4;
    let cached = available - free;
    let rows: [(&str, u64); 16] = [
        ("MemTotal", f.mem_total_kb),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", 9_876),
        ("Cached", cached),
        ("SwapCached", 2_048),
        ("Active", f.mem_total_kb / 3),
        ("Inactive", f.mem_total_kb / 5),
        ("Unevictable", 4_096),
        ("Mlocked", 4_096),
        ("SwapTotal", 524_284),
        ("SwapFree", 498_172),
        ("Dirty", 68),
        ("AnonPages", f.mem_total_kb / 4),
        ("Shmem", 3_132),
        ("CmaTotal", 262_144),
    ];
    rows.iter()
        .map(|(name, kb)| format!("{:<16}{kb:>8} kB\n", format!("{name}:")))
        .collect()
}

pub fn proc_version() -> String {
    "Linux version 4.9.269-sim (build@sitelink) (gcc version 4.9.x 20150123 (prerelease) (GCC) ) \
     #1 SMP PREEMPT Fri Jan 5 10:00:00 UTC 2024\n"
        .to_string()
}

/// One `df` row: (filesystem, total, used, mount point).
pub fn mounts(tv: &TvModel) -> Vec<(&'static str, u64, u64, &'static str)> {
    let f = &tv.figures;
    let used = f.data_used_kb + tv.fs.bytes_written().div_ceil(1024);
    vec![
        ("/dev/block/dm-0", 1_999_340, 1_989_004, "/"),
        ("tmpfs", 999_972, 1_124, "/dev"),
        ("/dev/block/dm-5", f.data_total_kb, used, "/data"),
        ("/dev/fuse", f.data_total_kb, used, "/storage/emulated"),
    ]
}

/// toybox `df -k`: 1K blocks, `Use%` rounded up.
pub fn df_row(s: &mut String, (fs, total, used, mount): (&str, u64, u64, &str)) {
    let available = total.saturating_sub(used);
    let pct = (used * 100).div_ceil(total.max(1));
    let _ = writeln!(
        s,
        "{fs:<16} {total:>9} {used:>8} {available:>9} {pct:>3}% {mount}"
    );
}

pub const DF_HEADER: &str = "Filesystem       1K-blocks     Used Available Use% Mounted on\n";

/// The mount a path lives on (the longest mount point that prefixes it).
pub fn mount_of(tv: &TvModel, path: &str) -> (&'static str, u64, u64, &'static str) {
    let path = match path {
        p if p == "/sdcard" || p.starts_with("/sdcard/") => "/storage/emulated",
        p => p,
    };
    mounts(tv)
        .into_iter()
        .filter(|(_, _, _, m)| *m == "/" || path == *m || path.starts_with(&format!("{m}/")))
        .max_by_key(|(_, _, _, m)| m.len())
        .unwrap_or(("/dev/block/dm-0", 0, 0, "/"))
}

/// `logcat -d -t N`: threadtime format.
pub fn logcat(tv: &TvModel, count: usize) -> String {
    let mut s = String::from("--------- beginning of main\n");
    for line in tv.log_tail(count) {
        let stamp = crate::clock::format_ms(line.wall_ms);
        // `2024-01-05T10:21:32.123Z` → `01-05 10:21:32.123`
        let date = stamp.get(5..10).unwrap_or_default();
        let time = stamp.get(11..23).unwrap_or_default();
        let _ = writeln!(
            s,
            "{date} {time} {:>5} {:>5} {} {}: {}",
            line.pid, line.tid, line.priority, line.tag, line.message
        );
    }
    s
}

/// `pm list packages`, in the package manager's order (unsorted in
/// reality; sorted here so tests can rely on it).
pub fn packages() -> Vec<&'static str> {
    let mut all: Vec<&str> = APPS
        .iter()
        .map(|(p, _)| *p)
        .chain(SYSTEM_PACKAGES.iter().copied())
        .chain([HDMI_SERVICE_PACKAGE])
        .collect();
    all.sort_unstable();
    all
}

/// The colour the screen shows: black in standby, else one per app.
pub fn screen_colour(tv: &TvModel) -> [u8; 3] {
    if !tv.awake() {
        return [0, 0, 0];
    }
    // FNV-1a of the package, folded to a bright colour.
    let mut h: u32 = 0x811C_9DC5;
    for b in tv.app().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_le_bytes();
    [a | 0x40, b | 0x40, c | 0x40]
}

#[cfg(test)]
mod tests {
    use super::super::model::{Identity, keycode};
    use super::*;

    fn tv(sdk: u32) -> TvModel {
        let id = Identity {
            manufacturer: "Sitelink".into(),
            model: "SIM TV 55".into(),
            name: "simtv_55".into(),
            device: "simtv".into(),
            serial: "SIMTV0001".into(),
            release: if sdk >= 30 { "11" } else { "6.0.1" }.into(),
            sdk,
        };
        TvModel::new(id, 100, 3, Instant::now())
    }

    #[test]
    fn power_follows_the_state() {
        let mut t = tv(30);
        let now = Instant::now();
        let on = dumpsys_power(&t, now);
        assert!(on.contains("\n  mWakefulness=Awake\n"));
        assert!(on.contains("\nDisplay Power: state=ON\n"));
        t.key(keycode::SLEEP);
        let off = dumpsys_power(&t, now);
        assert!(off.contains("\n  mWakefulness=Asleep\n"));
        assert!(off.contains("\nDisplay Power: state=OFF\n"));
        assert!(off.contains("mHoldingDisplaySuspendBlocker=false"));
    }

    #[test]
    fn window_focus_lines_by_release() {
        let mut t = tv(30);
        t.launch("com.netflix.ninja");
        let w = dumpsys_window_windows(&t);
        let focus = w.lines().find(|l| l.contains("mCurrentFocus=")).unwrap();
        assert!(
            focus.ends_with(" u0 com.netflix.ninja/com.netflix.ninja.MainActivity}"),
            "{focus}"
        );
        let app = w.lines().find(|l| l.contains("mFocusedApp=")).unwrap();
        assert!(app.starts_with("  mFocusedApp=ActivityRecord{"), "{app}");
        assert!(
            app.ends_with(" u0 com.netflix.ninja/.MainActivity t13}"),
            "{app}"
        );
        let old = dumpsys_window_windows(&tv(23));
        let app = old.lines().find(|l| l.contains("mFocusedApp=")).unwrap();
        assert!(
            app.contains("=AppWindowToken{") && app.ends_with("/.MainActivity t10}}}"),
            "{app}"
        );
    }

    #[test]
    fn music_stream_block() {
        let mut t = tv(30);
        t.set_volume(37).unwrap();
        t.key(keycode::VOLUME_MUTE);
        let a = dumpsys_audio(&t);
        let block: Vec<&str> = a
            .lines()
            .skip_while(|l| *l != "- STREAM_MUSIC:")
            .take(8)
            .collect();
        assert_eq!(
            block,
            [
                "- STREAM_MUSIC:",
                "   Muted: true",
                "   Min: 0",
                "   Max: 100",
                "   streamVolume:37",
                "   Current: 2 (speaker): 11, 400 (hdmi): 37, 40000000 (default): 11",
                "   Devices: hdmi",
                "- STREAM_ALARM:"
            ]
        );
    }

    #[test]
    fn tv_input_session_only_while_an_input_is_shown() {
        let mut t = tv(30);
        assert!(!dumpsys_tv_input(&t).contains("ResourceClientProfile"));
        t.key(keycode::TV_INPUT_HDMI_1 + 1);
        let d = dumpsys_tv_input(&t);
        let line = d
            .lines()
            .find(|l| l.contains("ResourceClientProfile {"))
            .unwrap();
        assert!(line.trim_end().ends_with("hdmi_port=2}"), "{line}");
        assert!(d.contains("inputId: com.droidlogic.tvinput/.services.Hdmi2InputService/HW6\n"));
    }

    #[test]
    fn props_df_meminfo_and_logcat() {
        let t = tv(30);
        let p = getprop_all(&t);
        assert!(p.contains("[ro.product.model]: [SIM TV 55]\n"));
        assert!(p.contains("[ro.build.version.release]: [11]\n"));
        assert!(p.contains("[ro.build.version.sdk]: [30]\n"));
        assert!(p.contains("[ro.serialno]: [SIMTV0001]\n"));
        let keys: Vec<&str> = properties(&t).iter().map(|(k, _)| *k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted");

        let mut df = String::from(DF_HEADER);
        df_row(&mut df, mount_of(&t, "/data"));
        let row: Vec<&str> = df.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[0], "/dev/block/dm-5");
        assert_eq!(row[5], "/data");
        let (total, used, avail): (u64, u64, u64) = (
            row[1].parse().unwrap(),
            row[2].parse().unwrap(),
            row[3].parse().unwrap(),
        );
        assert_eq!(total, used + avail);
        assert!(row[4].ends_with('%'));
        assert_eq!(mount_of(&t, "/sdcard/Download").3, "/storage/emulated");
        assert_eq!(mount_of(&t, "/system/bin").3, "/");

        let m = proc_meminfo(&t);
        assert!(m.starts_with("MemTotal:        1999948 kB\n"), "{m}");
        assert!(
            m.lines()
                .any(|l| l.starts_with("MemAvailable:") && l.ends_with(" kB"))
        );

        let log = logcat(&t, 200);
        let line = log.lines().nth(1).unwrap();
        // `MM-DD HH:MM:SS.mmm  PID  TID P Tag: message`
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0].len(), 5);
        assert_eq!(cols[1].len(), 12);
        assert_eq!(cols[4], "I");
        assert!(cols[5].ends_with(':'));
    }

    #[test]
    fn screen_colours() {
        let mut t = tv(30);
        let home = screen_colour(&t);
        t.launch("com.netflix.ninja");
        assert_ne!(screen_colour(&t), home);
        t.key(keycode::SLEEP);
        assert_eq!(screen_colour(&t), [0, 0, 0]);
    }
}
