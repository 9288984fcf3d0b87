//! What a TV is doing, read from the output of standard Android shell
//! commands (§5 of the ADB document). Each probe is one plain command whose
//! whole output is parsed here, on the agent: early-exit greps on the TV make
//! `dumpsys` print "Broken pipe" errors, and vendor output varies, so every
//! parser takes what it recognises and leaves the rest as unknown (`None`),
//! never failing the whole sample.

use serde::Serialize;
use std::collections::BTreeMap;

/// One shell command of a telemetry round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    Power,
    Window,
    Audio,
    TvInput,
    Props,
    Uptime,
    Memory,
    Storage,
    Thermal,
}

impl Probe {
    pub const ALL: [Probe; 9] = [
        Probe::Power,
        Probe::Window,
        Probe::Audio,
        Probe::TvInput,
        Probe::Props,
        Probe::Uptime,
        Probe::Memory,
        Probe::Storage,
        Probe::Thermal,
    ];

    /// The command run with `shell,v2,raw:` (or `shell:`).
    pub fn command(self) -> &'static str {
        match self {
            Probe::Power => "dumpsys power",
            Probe::Window => "dumpsys window windows",
            Probe::Audio => "dumpsys audio",
            Probe::TvInput => "dumpsys tv_input",
            Probe::Props => "getprop",
            Probe::Uptime => "cat /proc/uptime",
            Probe::Memory => "cat /proc/meminfo",
            Probe::Storage => "df -k /data",
            // Zones the shell user may not read print an error on stderr and
            // the others still print.
            Probe::Thermal => "cat /sys/class/thermal/thermal_zone*/temp",
        }
    }

    /// Only read once per connection: they do not change while it lasts.
    pub fn once_per_connection(self) -> bool {
        self == Probe::Props
    }
}

/// Power and screen state (`dumpsys power`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Power {
    /// Whether the display is on, if the output says.
    pub screen_on: Option<bool>,
    /// `Awake`, `Asleep`, `Dreaming` or `Dozing`.
    pub wakefulness: Option<Wakefulness>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wakefulness {
    Awake,
    Asleep,
    Dreaming,
    Dozing,
}

pub fn parse_power(text: &str) -> Power {
    let mut p = Power::default();
    for line in text.lines().map(str::trim) {
        // Older builds: `Display Power: state=ON`; A14 lacks `state=`.
        if let Some(rest) = line.strip_prefix("Display Power:") {
            if let Some(state) = value_after(rest, "state=") {
                p.screen_on = Some(state.eq_ignore_ascii_case("ON"));
            }
        } else if let Some(v) = value_after(line, "mScreenOn=") {
            p.screen_on.get_or_insert(v == "true");
        } else if let Some(v) = value_after(line, "mHoldingDisplaySuspendBlocker=") {
            p.screen_on.get_or_insert(v == "true");
        } else if let Some(v) = value_after(line, "mWakefulness=") {
            p.wakefulness = match v {
                "Awake" => Some(Wakefulness::Awake),
                "Asleep" => Some(Wakefulness::Asleep),
                "Dreaming" => Some(Wakefulness::Dreaming),
                "Dozing" => Some(Wakefulness::Dozing),
                _ => p.wakefulness,
            };
        }
    }
    if p.screen_on.is_none() {
        // Without a display line, being awake is the best sign of a lit screen.
        p.screen_on = p.wakefulness.map(|w| w == Wakefulness::Awake);
    }
    p
}

/// The word after `key` in `line` (up to a space, comma or brace).
fn value_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ',' || c == '}')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The package in the foreground (`dumpsys window windows`): the focus
/// lines name it as `u0 PACKAGE/ACTIVITY` on every release, with the line's
/// name changing (mCurrentFocus, mFocusedApp, imeLayeringTarget...).
pub fn parse_foreground_app(text: &str) -> Option<String> {
    const KEYS: [&str; 6] = [
        "mCurrentFocus",
        "mFocusedApp",
        "mObscuringWindow",
        "imeLayeringTarget",
        "imeInputTarget",
        "mInputMethodTarget",
    ];
    KEYS.iter().find_map(|key| {
        text.lines()
            .filter(|l| l.contains(key))
            .find_map(package_in_line)
    })
}

fn package_in_line(line: &str) -> Option<String> {
    line.split_whitespace().find_map(|word| {
        let (pkg, _) = word.split_once('/')?;
        let pkg = pkg.trim_start_matches('{');
        is_package(pkg).then(|| pkg.to_string())
    })
}

/// `com.example.app`: two or more dot-separated parts of letters, digits and
/// underscores, each starting with a letter.
pub fn is_package(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Music stream volume (`dumpsys audio`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub level: Option<u32>,
    pub max: Option<u32>,
    pub muted: Option<bool>,
}

pub fn parse_audio(text: &str) -> Volume {
    let mut v = Volume::default();
    let mut lines = text.lines().skip_while(|l| !l.contains("- STREAM_MUSIC:"));
    if lines.next().is_none() {
        return v;
    }
    let mut device: Option<String> = None;
    let mut current: Option<&str> = None;
    // The stream's block: indented lines up to the next stream.
    for line in lines.take(14) {
        let line = line.trim();
        if line.starts_with("- STREAM_") {
            break;
        }
        if let Some(m) = line.strip_prefix("Muted:") {
            v.muted = Some(m.trim().starts_with("true"));
        } else if let Some(m) = line.strip_prefix("Max:") {
            v.max = leading_number(m.trim());
        } else if let Some(d) = line.strip_prefix("Devices:") {
            device = d.split_whitespace().next().map(str::to_string);
        } else if let Some(c) = line.strip_prefix("Current:") {
            current = Some(c);
        }
    }
    // `Current: 2 (speaker): 11, 400 (hdmi): 6`: the level of the device in use.
    if let (Some(current), Some(device)) = (current, device.as_deref()) {
        let key = format!("({device}): ");
        v.level = current
            .find(&key)
            .and_then(|at| leading_number(&current[at + key.len()..]));
    }
    v
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The HDMI input shown, where the TV reports it (`dumpsys tv_input`): the
/// open session's `hdmi_port=N` (11+), else its `inputId: ...InputService/HWn`
/// (a vendor's hardware id). The input map lists every input, shown or
/// not, so only the session's lines count. None: no input is shown.
pub fn parse_hdmi_input(text: &str) -> Option<String> {
    let from_port = text
        .lines()
        .filter(|l| l.contains("ResourceClientProfile"))
        .find_map(|l| value_after(l, "hdmi_port=").and_then(leading_number));
    if let Some(n) = from_port {
        return Some(format!("hdmi{n}"));
    }
    text.lines()
        .filter(|l| l.trim_start().starts_with("inputId:"))
        .find_map(|l| {
            let at = l.find("InputService/HW")? + "InputService/HW".len();
            leading_number(&l[at..]).map(|n| format!("hw{n}"))
        })
}

/// `getprop`: `[key]: [value]` lines.
pub fn parse_props(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once("]: [")?;
            Some((
                k.strip_prefix('[')?.to_string(),
                v.strip_suffix(']')?.to_string(),
            ))
        })
        .collect()
}

/// Who the TV is, from its properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub android: Option<String>,
    pub sdk: Option<u32>,
    pub device: Option<String>,
}

impl Identity {
    pub fn from_props(props: &BTreeMap<String, String>) -> Identity {
        let get = |k: &str| props.get(k).filter(|v| !v.is_empty()).cloned();
        Identity {
            manufacturer: get("ro.product.manufacturer"),
            model: get("ro.product.model"),
            serial: get("ro.serialno"),
            android: get("ro.build.version.release"),
            sdk: get("ro.build.version.sdk").and_then(|s| s.parse().ok()),
            device: get("ro.product.vendor.device").or_else(|| get("ro.product.device")),
        }
    }
}

/// `/proc/uptime`: seconds since boot.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_kb: Option<u64>,
    pub available_kb: Option<u64>,
}

pub fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.trim();
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    Memory {
        total_kb: field("MemTotal:"),
        available_kb: field("MemAvailable:"),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub total_kb: Option<u64>,
    pub used_kb: Option<u64>,
    pub available_kb: Option<u64>,
}

/// `df -k /data`: toybox prints `Filesystem 1K-blocks Used Available Use% Mounted on`;
/// old toolbox builds print sizes with units (`5.8G`): those are read too.
pub fn parse_df(text: &str) -> Storage {
    let Some(row) = text
        .lines()
        .skip(1)
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<&str>>)
        .find(|cols| cols.len() >= 4)
    else {
        return Storage::default();
    };
    Storage {
        total_kb: size_kb(row[1]),
        used_kb: size_kb(row[2]),
        available_kb: size_kb(row[3]),
    }
}

fn size_kb(s: &str) -> Option<u64> {
    if let Ok(kb) = s.parse() {
        return Some(kb);
    }
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "K" => 1.0,
        "M" => 1024.0,
        "G" => 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some((n * scale) as u64)
}

/// Thermal zones: the hottest, in tenths of a degree Celsius. Zones report
/// millidegrees, a few old ones whole degrees.
pub fn parse_thermal(text: &str) -> Option<i64> {
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .map(|t| if t.abs() >= 1000 { t / 100 } else { t * 10 })
        // Unused zones read absurd values (-273 °C, 6553 °C).
        .filter(|t| (-400..=1500).contains(t))
        .max()
}

/// One telemetry sample, stored as a `metric` record.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    pub power: Power,
    pub app: Option<String>,
    pub volume: Volume,
    pub input: Option<String>,
    pub uptime_s: Option<u64>,
    pub memory: Memory,
    pub storage: Storage,
    /// Hottest thermal zone, °C.
    pub temperature_c: Option<f64>,
    /// Probes whose command failed, with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
}

impl Sample {
    /// Folds one probe's output in.
    pub fn absorb(&mut self, probe: Probe, stdout: &str) {
        match probe {
            Probe::Power => self.power = parse_power(stdout),
            Probe::Window => self.app = parse_foreground_app(stdout),
            Probe::Audio => self.volume = parse_audio(stdout),
            Probe::TvInput => self.input = parse_hdmi_input(stdout),
            Probe::Uptime => self.uptime_s = parse_uptime(stdout),
            Probe::Memory => self.memory = parse_meminfo(stdout),
            Probe::Storage => self.storage = parse_df(stdout),
            Probe::Thermal => self.temperature_c = parse_thermal(stdout).map(|t| t as f64 / 10.0),
            // Identity is kept on its own, once per connection.
            Probe::Props => {}
        }
    }
}

/// A change worth an `event` record between two samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: &'static str,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What changed from `before` to `now` that a technician cares about: the
/// screen going on or off, the app in front, the input shown. A value that
/// became unknown is not a change (one failed probe is not an event).
pub fn changes(before: &Sample, now: &Sample) -> Vec<Change> {
    let mut out = Vec::new();
    let screen = |s: &Sample| {
        s.power
            .screen_on
            .map(|on| if on { "on" } else { "off" }.to_string())
    };
    for (kind, a, b) in [
        ("screen", screen(before), screen(now)),
        ("app", before.app.clone(), now.app.clone()),
        ("input", before.input.clone(), now.input.clone()),
    ] {
        if b.is_some() && a != b {
            out.push(Change {
                kind,
                from: a,
                to: b,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_on_older_and_newer_builds() {
        let old =
            "POWER MANAGER (dumpsys power)\n  mWakefulness=Awake\n  Display Power: state=ON\n";
        assert_eq!(
            parse_power(old),
            Power {
                screen_on: Some(true),
                wakefulness: Some(Wakefulness::Awake)
            }
        );
        // A14: no `state=`, the suspend blocker says it.
        let a14 = "  mWakefulness=Asleep\n  mHoldingDisplaySuspendBlocker=false\n";
        assert_eq!(parse_power(a14).screen_on, Some(false));
        // Only wakefulness: awake counts as lit.
        assert_eq!(parse_power("mWakefulness=Dreaming").screen_on, Some(false));
        assert_eq!(parse_power("nothing here"), Power::default());
    }

    #[test]
    fn foreground_app_from_each_releases_focus_line() {
        let a10 = "  mCurrentFocus=Window{3c1d0b5 u0 com.google.android.tvlauncher/com.google.android.tvlauncher.MainActivity}\n\
                   \x20 mFocusedApp=AppWindowToken{ef1 token=Token{8a ActivityRecord{a60e3c u0 com.netflix.ninja/.MainActivity t123}}}";
        assert_eq!(
            parse_foreground_app(a10).as_deref(),
            Some("com.google.android.tvlauncher")
        );
        let a13 = "imeLayeringTarget in display# 0 Window{5d1 u0 com.plexapp.android/com.plexapp.plex.activities.SplashActivity}";
        assert_eq!(
            parse_foreground_app(a13).as_deref(),
            Some("com.plexapp.android")
        );
        assert_eq!(parse_foreground_app("mCurrentFocus=null"), None);
        assert!(is_package("com.example.app_2"));
        assert!(!is_package("example"));
        assert!(!is_package("com.1bad"));
        assert!(!is_package("com.bad;rm"));
    }

    #[test]
    fn audio_volume_of_the_device_in_use() {
        let text = "Stream volumes (device: index)\n\
            - STREAM_VOICE_CALL:\n   Muted: false\n   Max: 5\n   Current: 2 (speaker): 4\n   Devices: speaker\n\
            - STREAM_MUSIC:\n   Muted: false\n   Min: 0\n   Max: 100\n   Current: 2 (speaker): 11, 400 (hdmi): 26, 40000000 (default): 11\n   Devices: hdmi\n\
            - STREAM_RING:\n   Muted: true\n";
        assert_eq!(
            parse_audio(text),
            Volume {
                level: Some(26),
                max: Some(100),
                muted: Some(false)
            }
        );
        let muted = "- STREAM_MUSIC:\n   Muted: true\n   Max: 15\n   Current: 2 (speaker): 3\n   Devices: speaker\n";
        assert_eq!(parse_audio(muted).muted, Some(true));
        assert_eq!(parse_audio(muted).level, Some(3));
        assert_eq!(parse_audio("no streams"), Volume::default());
    }

    #[test]
    fn hdmi_input_props_and_proc_files() {
        assert_eq!(
            parse_hdmi_input("  ResourceClientProfile {type=TV, hdmi_port=2, ...}").as_deref(),
            Some("hdmi2")
        );
        assert_eq!(
            parse_hdmi_input("      inputId: com.mediatek.tvinput/.hdmi.HDMIInputService/HW5")
                .as_deref(),
            Some("hw5")
        );
        // The input map names every input: none of them is shown.
        assert_eq!(
            parse_hdmi_input(
                "    com.x/.HdmiInputService/HW5: info: TvInputInfo{id=com.x/.HdmiInputService/HW5}"
            ),
            None
        );
        assert_eq!(parse_hdmi_input(""), None);

        let props = parse_props(
            "[ro.product.model]: [BRAVIA 4K VH2]\n[ro.serialno]: []\n[ro.build.version.sdk]: [30]\nnoise\n",
        );
        let id = Identity::from_props(&props);
        assert_eq!(id.model.as_deref(), Some("BRAVIA 4K VH2"));
        assert_eq!(id.serial, None, "an empty serial is unknown");
        assert_eq!(id.sdk, Some(30));

        assert_eq!(parse_uptime("12345.67 23456.78\n"), Some(12345));
        assert_eq!(parse_uptime("garbage"), None);
        let mem = parse_meminfo(
            "MemTotal:        1999948 kB\nMemFree: 1 kB\nMemAvailable:     812345 kB\n",
        );
        assert_eq!(
            (mem.total_kb, mem.available_kb),
            (Some(1_999_948), Some(812_345))
        );
        let df = parse_df(
            "Filesystem     1K-blocks    Used Available Use% Mounted on\n/dev/block/dm-5  5000000 3000000   2000000  60% /data\n",
        );
        assert_eq!(
            (df.total_kb, df.used_kb, df.available_kb),
            (Some(5_000_000), Some(3_000_000), Some(2_000_000))
        );
        let old = parse_df("Filesystem Size Used Free Blksize\n/data 5.8G 1.5G 4.3G 4096\n");
        assert_eq!(old.total_kb, Some(6_081_740));
        assert_eq!(parse_thermal("41000\n-273000\n52500\n38\n"), Some(525));
        assert_eq!(parse_thermal("cat: permission denied"), None);
    }

    #[test]
    fn changes_are_screen_app_and_input_not_unknowns() {
        let mut a = Sample::default();
        a.absorb(Probe::Power, "mWakefulness=Awake\nDisplay Power: state=ON");
        a.absorb(Probe::Window, "mCurrentFocus=Window{1 u0 com.a.b/.X}");
        let mut b = a.clone();
        assert!(changes(&a, &b).is_empty());
        b.absorb(
            Probe::Power,
            "mWakefulness=Asleep\nDisplay Power: state=OFF",
        );
        b.absorb(Probe::Window, "mCurrentFocus=null");
        assert_eq!(
            changes(&a, &b),
            [Change {
                kind: "screen",
                from: Some("on".into()),
                to: Some("off".into())
            }]
        );
        b.absorb(Probe::Window, "mCurrentFocus=Window{1 u0 com.c.d/.Y}");
        assert_eq!(changes(&a, &b)[1].to.as_deref(), Some("com.c.d"));
    }
}
