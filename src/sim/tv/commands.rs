//! The programs the TV's shell finds: the ones agents run for telemetry and
//! control (`dumpsys`, `getprop`, `cat`, `df`, `input`, `media`/`cmd
//! media_session`, `monkey`, `am`, `pm`, `logcat`, `screencap`) and a few
//! everyday tools (`echo`, `true`, `false`, `exit`, `sleep`, `ls`, `grep`,
//! `head`). Messages, exit statuses and release differences follow the real
//! tools: `media` is gone from Android 11 (`cmd media_session` replaces it),
//! `cmd` is missing before 7.0, and an out-of-range volume prints an
//! `Error:` line but exits 0, as VolumeCtrl does.

use std::time::Duration;

use super::android;
use super::model::{TvModel, keycode};
use super::png;
use super::sh::{MAX_SLEEP, Ran, Shell};

/// What a missing program gets: mksh's message and status 127.
fn not_found(name: &str) -> Ran {
    let mut r = Ran::status(127);
    r.err(format!(
        "/system/bin/sh: {name}: inaccessible or not found\n"
    ));
    r
}

fn failure(status: u8, message: String) -> Ran {
    let mut r = Ran::status(status);
    r.err(message);
    r
}

fn output(text: impl Into<Vec<u8>>) -> Ran {
    let mut r = Ran::status(0);
    r.out(text);
    r
}

/// SDK levels where commands appeared or went.
const SDK_NOUGAT: u32 = 24;
const SDK_R: u32 = 30;

pub(super) fn run(sh: &mut Shell<'_>, argv: &[String], stdin: &[u8]) -> Ran {
    let Some((first, args)) = argv.split_first() else {
        return Ran::status(0);
    };
    let name = first.rsplit('/').next().unwrap_or(first);
    let sdk = sh.tv.identity.sdk;
    match name {
        "echo" => echo(args),
        "true" => Ran::status(0),
        "false" => Ran::status(1),
        "exit" => exit(sh, args),
        "sleep" => sleep(args),
        "cat" => cat(sh, args, stdin),
        "ls" => ls(sh, args),
        "grep" => grep(sh, args, stdin),
        "head" => head(args, stdin),
        "getprop" => getprop(sh.tv, args),
        "dumpsys" => dumpsys(sh, args),
        "input" => input(sh.tv, args),
        "media" if sdk < SDK_R => match args.split_first() {
            Some((sub, rest)) if sub == "volume" => volume(sh.tv, rest),
            _ => failure(
                1,
                "usage: media [subcommand] [options]\n       media volume [options]\n".into(),
            ),
        },
        "cmd" if sdk >= SDK_NOUGAT => cmd(sh, args),
        "monkey" => monkey(sh.tv, args),
        "am" => am(sh.tv, args),
        "pm" => pm(args),
        "logcat" => logcat(sh.tv, args),
        "df" => df(sh, args),
        "screencap" => screencap(sh, args),
        _ => not_found(first),
    }
}

fn echo(args: &[String]) -> Ran {
    let (newline, words) = match args.split_first() {
        Some((flag, rest)) if flag == "-n" => (false, rest),
        _ => (true, args),
    };
    let mut text = words.join(" ");
    if newline {
        text.push('\n');
    }
    output(text)
}

fn exit(sh: &Shell<'_>, args: &[String]) -> Ran {
    let status = match args.first() {
        None => sh.last_status(),
        Some(n) => match n.parse::<i64>() {
            Ok(n) => n.rem_euclid(256) as u8,
            Err(_) => {
                return failure(1, format!("/system/bin/sh: exit: {n}: bad number\n")).exiting();
            }
        },
    };
    Ran::status(status).exiting()
}

fn sleep(args: &[String]) -> Ran {
    let Some(arg) = args.first() else {
        return failure(1, "usage: sleep DURATION\n".into());
    };
    // toybox: a decimal number with an optional s/m/h/d suffix.
    let (num, scale) = match arg.char_indices().last() {
        Some((i, 's')) => (&arg[..i], 1.0),
        Some((i, 'm')) => (&arg[..i], 60.0),
        Some((i, 'h')) => (&arg[..i], 3600.0),
        Some((i, 'd')) => (&arg[..i], 86_400.0),
        _ => (arg.as_str(), 1.0),
    };
    match num.parse::<f64>() {
        Ok(n) if n >= 0.0 && n.is_finite() => {
            let d = Duration::try_from_secs_f64(n * scale).unwrap_or(MAX_SLEEP);
            let mut r = Ran::status(0);
            r.sleep(d.min(MAX_SLEEP));
            r
        }
        _ => failure(1, format!("sleep: bad '{arg}'\n")),
    }
}

fn cat(sh: &mut Shell<'_>, args: &[String], stdin: &[u8]) -> Ran {
    let files: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') || *a == "-")
        .collect();
    if files.is_empty() {
        return output(stdin.to_vec());
    }
    let mut r = Ran::status(0);
    for f in files {
        if f == "-" {
            r.out(stdin.to_vec());
            continue;
        }
        match sh.tv.read(f, sh.now) {
            Ok(file) => r.out(file.data),
            Err(e) => {
                r.err(format!("cat: {f}: {e}\n"));
                r.status = 1;
            }
        }
    }
    r
}

fn ls(sh: &Shell<'_>, args: &[String]) -> Ran {
    let mut paths: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if paths.is_empty() {
        paths.push("/");
    }
    let mut r = Ran::status(0);
    for path in paths {
        match sh.tv.fs.list(path) {
            Ok(entries) => {
                let names: String = entries.iter().map(|(n, _)| format!("{n}\n")).collect();
                r.out(names);
            }
            Err(_) if sh.tv.read(path, sh.now).is_ok() => r.out(format!("{path}\n")),
            Err(e) => {
                r.err(format!("ls: {path}: {e}\n"));
                r.status = 1;
            }
        }
    }
    r
}

/// `grep [-qvicE] [-A N] [-m N] PATTERN [FILE...]`. Patterns are fixed
/// strings; with `-E`, `a|b` alternatives of fixed strings.
fn grep(sh: &Shell<'_>, args: &[String], stdin: &[u8]) -> Ran {
    let (mut quiet, mut invert, mut nocase, mut count, mut extended) =
        (false, false, false, false, false);
    let (mut after, mut max) = (0usize, usize::MAX);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-A" => after = it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "-m" => max = it.next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX),
            flag if flag.starts_with('-') && flag.len() > 1 && rest.is_empty() => {
                for c in flag.chars().skip(1) {
                    match c {
                        'q' => quiet = true,
                        'v' => invert = true,
                        'i' => nocase = true,
                        'c' => count = true,
                        'E' => extended = true,
                        _ => {}
                    }
                }
            }
            _ => rest.push(a),
        }
    }
    let Some((pattern, files)) = rest.split_first() else {
        return failure(
            2,
            "usage: grep [-qvicE] [-A NUM] [-m MAX] PATTERN [FILE...]\n".into(),
        );
    };
    let fold = |s: &str| {
        if nocase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let alternatives: Vec<String> = if extended {
        pattern.split('|').map(fold).collect()
    } else {
        vec![fold(pattern)]
    };
    let mut input = Vec::new();
    let mut r = Ran::status(1);
    if files.is_empty() {
        input.extend_from_slice(stdin);
    }
    for f in files {
        match sh.tv.read(f, sh.now) {
            Ok(file) => input.extend(file.data),
            Err(e) => r.err(format!("grep: {f}: {e}\n")),
        }
    }
    let text = String::from_utf8_lossy(&input);
    let lines: Vec<&str> = text.lines().collect();
    let (mut out, mut hits, mut shown_to) = (String::new(), 0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        if hits >= max {
            break;
        }
        let l = fold(line);
        if alternatives.iter().any(|p| l.contains(p.as_str())) != invert {
            hits += 1;
            let end = (i + 1 + after).min(lines.len());
            for l in lines.get(i.max(shown_to)..end).unwrap_or_default() {
                out.push_str(l);
                out.push('\n');
            }
            shown_to = shown_to.max(end);
        }
    }
    if hits > 0 {
        r.status = 0;
    }
    if count {
        r.out(format!("{hits}\n"));
    } else if !quiet {
        r.out(out);
    }
    r
}

fn head(args: &[String], stdin: &[u8]) -> Ran {
    let mut n = 10usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-n" {
            n = it.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        } else if let Some(v) = a.strip_prefix('-').and_then(|v| v.parse().ok()) {
            n = v;
        }
    }
    let text = String::from_utf8_lossy(stdin);
    output(text.split_inclusive('\n').take(n).collect::<String>())
}

fn getprop(tv: &TvModel, args: &[String]) -> Ran {
    match args {
        [] => output(android::getprop_all(tv)),
        [key, default @ ..] => {
            let value = android::properties(tv)
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .or_else(|| default.first().cloned())
                .unwrap_or_default();
            output(format!("{value}\n"))
        }
    }
}

/// The services `dumpsys` knows here, in `dumpsys -l` order.
const SERVICES: [&str; 4] = ["audio", "power", "tv_input", "window"];

fn dump_of(tv: &TvModel, service: &str, now: std::time::Instant) -> Option<String> {
    Some(match service {
        "audio" => android::dumpsys_audio(tv),
        "power" => android::dumpsys_power(tv, now),
        "tv_input" => android::dumpsys_tv_input(tv),
        // `dumpsys window` prints more sections; the windows one is the
        // one agents read.
        "window" => android::dumpsys_window_windows(tv),
        _ => return None,
    })
}

fn dumpsys(sh: &Shell<'_>, args: &[String]) -> Ran {
    let list: String = SERVICES.iter().map(|s| format!("  {s}\n")).collect();
    match args.first().map(String::as_str) {
        Some("-l") => output(format!("Currently running services:\n{list}")),
        None => {
            let mut text = format!("Currently running services:\n{list}");
            for s in SERVICES {
                text.push_str("-------------------------------------------------------------------------------\n");
                text.push_str(&format!("DUMP OF SERVICE {s}:\n"));
                text.push_str(&dump_of(sh.tv, s, sh.now).unwrap_or_default());
            }
            output(text)
        }
        Some(service) => match dump_of(sh.tv, service, sh.now) {
            Some(text) => output(text),
            // dumpsys says so on stderr and still exits 0.
            None => failure(0, format!("Can't find service: {service}\n")),
        },
    }
}

/// `KEYCODE_` names `input keyevent` takes besides numbers.
const KEY_NAMES: &[(&str, u16)] = &[
    ("HOME", keycode::HOME),
    ("BACK", keycode::BACK),
    ("DPAD_UP", 19),
    ("DPAD_DOWN", 20),
    ("DPAD_LEFT", 21),
    ("DPAD_RIGHT", 22),
    ("DPAD_CENTER", 23),
    ("VOLUME_UP", keycode::VOLUME_UP),
    ("VOLUME_DOWN", keycode::VOLUME_DOWN),
    ("POWER", keycode::POWER),
    ("ENTER", 66),
    ("MENU", 82),
    ("SEARCH", 84),
    ("MEDIA_PLAY_PAUSE", 85),
    ("MEDIA_STOP", 86),
    ("MEDIA_NEXT", 87),
    ("MEDIA_PREVIOUS", 88),
    ("MEDIA_PLAY", 126),
    ("MEDIA_PAUSE", 127),
    ("VOLUME_MUTE", keycode::VOLUME_MUTE),
    ("SETTINGS", 176),
    ("TV_INPUT", 178),
    ("SLEEP", keycode::SLEEP),
    ("WAKEUP", keycode::WAKEUP),
    ("TV_INPUT_HDMI_1", 243),
    ("TV_INPUT_HDMI_2", 244),
    ("TV_INPUT_HDMI_3", 245),
    ("TV_INPUT_HDMI_4", 246),
];

/// A key code or name; what Android cannot read becomes KEYCODE_UNKNOWN (0).
fn key_code(arg: &str) -> u16 {
    if let Ok(n) = arg.parse() {
        return n;
    }
    let name = arg.strip_prefix("KEYCODE_").unwrap_or(arg);
    KEY_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, c)| *c)
}

const INPUT_USAGE: &str = "Usage: input [<source>] [-d DISPLAY_ID] <command> [<arg>...]\n\n\
    The commands and default sources are:\n      text <string> (Default: touchscreen)\n      \
    keyevent [--longpress|--doubletap] <key code number or name> ... (Default: keyboard)\n      \
    tap <x> <y> (Default: touchscreen)\n      swipe <x1> <y1> <x2> <y2> [duration(ms)] (Default: touchscreen)\n";

const INPUT_SOURCES: [&str; 11] = [
    "keyboard",
    "mouse",
    "joystick",
    "touchnavigation",
    "touchpad",
    "trackball",
    "stylus",
    "dpad",
    "gesture",
    "touchscreen",
    "gamepad",
];

fn input(tv: &mut TvModel, args: &[String]) -> Ran {
    let mut args = args;
    while let Some((a, rest)) = args.split_first() {
        if INPUT_SOURCES.contains(&a.as_str()) {
            args = rest;
        } else if a == "-d" {
            args = rest.get(1..).unwrap_or_default();
        } else {
            break;
        }
    }
    match args.split_first() {
        Some((command, rest)) if command == "keyevent" => {
            let codes: Vec<u16> = rest
                .iter()
                .filter(|a| !a.starts_with("--"))
                .map(|a| key_code(a))
                .collect();
            if codes.is_empty() {
                return failure(
                    1,
                    format!("Error: Invalid arguments for command: keyevent\n{INPUT_USAGE}"),
                );
            }
            codes.into_iter().for_each(|c| tv.key(c));
            Ran::status(0)
        }
        // Touch and text input change nothing a TV agent reads.
        Some((command, _))
            if ["text", "tap", "swipe", "press", "roll"].contains(&command.as_str()) =>
        {
            Ran::status(0)
        }
        _ => failure(1, INPUT_USAGE.into()),
    }
}

fn stream_name(stream: i64) -> &'static str {
    const NAMES: [&str; 11] = [
        "STREAM_VOICE_CALL",
        "STREAM_SYSTEM",
        "STREAM_RING",
        "STREAM_MUSIC",
        "STREAM_ALARM",
        "STREAM_NOTIFICATION",
        "STREAM_BLUETOOTH_SCO",
        "STREAM_SYSTEM_ENFORCED",
        "STREAM_DTMF",
        "STREAM_TTS",
        "STREAM_ACCESSIBILITY",
    ];
    usize::try_from(stream)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("invalid stream")
}

/// VolumeCtrl, behind `media volume` (≤ 10) and `cmd media_session volume`
/// (11+): it logs each option as it reads it, then connects and acts. Only
/// the music stream (3) is modelled.
fn volume(tv: &mut TvModel, args: &[String]) -> Ran {
    let mut r = Ran::status(0);
    let mut log = String::new();
    let (mut stream, mut set, mut adjust, mut get) = (3i64, None::<i64>, None::<String>, false);
    let mut it = args.iter();
    let number = |v: Option<&String>| -> Result<i64, String> {
        let v = v.ok_or("Error: Argument expected after option")?;
        v.parse().map_err(|_| {
            format!("Error: java.lang.NumberFormatException: For input string: \"{v}\"")
        })
    };
    while let Some(opt) = it.next() {
        let step = match opt.as_str() {
            "--show" => Ok(()),
            "--get" => {
                get = true;
                log.push_str("[V] will get volume\n");
                Ok(())
            }
            "--stream" => number(it.next()).map(|n| {
                stream = n;
                log.push_str(&format!(
                    "[V] will control stream={n} ({})\n",
                    stream_name(n)
                ));
            }),
            "--set" => number(it.next()).map(|n| {
                set = Some(n);
                log.push_str(&format!("[V] will set volume to index={n}\n"));
            }),
            "--adj" => match it.next() {
                Some(a) => {
                    adjust = Some(a.clone());
                    log.push_str("[V] will adjust volume\n");
                    Ok(())
                }
                None => Err("Error: Argument expected after \"--adj\"".into()),
            },
            other => Err(format!("Error: Unknown argument {other}")),
        };
        if let Err(e) = step {
            r.out(log);
            r.err(format!("{e}\n"));
            r.status = 255;
            return r;
        }
    }
    log.push_str("[V] Connecting to AudioService\n");
    let music = stream == 3;
    if let (Some(index), true) = (set, music)
        && let Err(e) = tv.set_volume(index)
    {
        r.out(log);
        r.err(format!("{e}\n"));
        return r;
    }
    if let (Some(dir), true) = (adjust.as_deref(), music) {
        match dir {
            "raise" => tv.key(keycode::VOLUME_UP),
            "lower" => tv.key(keycode::VOLUME_DOWN),
            "same" => {}
            other => {
                r.out(log);
                r.err(format!(
                    "Error: no valid volume adjustment, was {other}, expected lower|same|raise\n"
                ));
                return r;
            }
        }
    }
    if get {
        let (index, max) = if music {
            (tv.volume(), tv.max_volume())
        } else {
            (5, 7)
        };
        log.push_str(&format!("[V] volume is {index} in range [0..{max}]\n"));
    }
    r.out(log);
    r
}

fn cmd(sh: &mut Shell<'_>, args: &[String]) -> Ran {
    let Some((service, rest)) = args.split_first() else {
        return failure(
            20,
            "cmd: No service specified; use -l to list all running services.\n".into(),
        );
    };
    match (service.as_str(), rest.split_first()) {
        ("-l", _) => output(format!(
            "Currently running services:\n{}",
            SERVICES.map(|s| format!("  {s}\n")).concat()
        )),
        ("media_session", Some((sub, opts))) if sub == "volume" && sh.tv.identity.sdk >= SDK_R => {
            volume(sh.tv, opts)
        }
        ("package", Some((sub, opts))) if sub == "list" => {
            pm(&[&["list".to_string()], opts].concat())
        }
        ("input", Some(_)) => input(sh.tv, rest),
        // `am` and `cmd activity` are one shell command.
        ("activity", Some(_)) => am(sh.tv, rest),
        ("window" | "audio" | "power" | "media_session", _) => failure(
            255,
            format!("{service}: subcommand not simulated: {}\n", rest.join(" ")),
        ),
        _ => failure(20, format!("cmd: Can't find service: {service}\n")),
    }
}

const LEANBACK: &str = "android.intent.category.LEANBACK_LAUNCHER";

/// `monkey -p PKG -c CATEGORY … COUNT`: starts the package's launcher
/// activity. Prints what the real tool prints, including its `monkey`
/// wrapper script's `bash arg:` lines.
fn monkey(tv: &mut TvModel, args: &[String]) -> Ran {
    let mut out: String = args.iter().map(|a| format!("  bash arg: {a}\n")).collect();
    out.push_str(&format!("args: [{}]\n", args.join(", ")));
    for a in args {
        out.push_str(&format!(" arg: \"{a}\"\n"));
    }
    let (mut packages, mut categories) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" => packages.extend(it.next().cloned()),
            "-c" => categories.extend(it.next().cloned()),
            "-s" | "--throttle" | "--pct-syskeys" | "--pct-touch" | "--pct-motion"
            | "--pct-nav" | "--pct-majornav" | "--pct-appswitch" | "--pct-anyevent" => {
                it.next();
            }
            _ => {}
        }
    }
    for d in packages.iter().chain(&categories) {
        out.push_str(&format!("data=\"{d}\"\n"));
    }
    let category_ok = categories.is_empty()
        || categories
            .iter()
            .any(|c| c == LEANBACK || c == "android.intent.category.LAUNCHER");
    let started = category_ok && packages.iter().any(|p| tv.launch(p));
    if !started {
        out.push_str("** No activities found to run, monkey aborted.\n");
        let mut r = Ran::status(252);
        r.out(out);
        return r;
    }
    out.push_str("Events injected: 1\n## Network stats: elapsed time=16ms (0ms mobile, 0ms wifi, 16ms not connected)\n");
    output(out)
}

fn am(tv: &mut TvModel, args: &[String]) -> Ran {
    match args.split_first() {
        Some((sub, rest)) if sub == "force-stop" => {
            let packages: Vec<&String> = rest.iter().filter(|a| !a.starts_with('-')).collect();
            match packages.first() {
                Some(p) => {
                    tv.force_stop(p);
                    Ran::status(0)
                }
                None => failure(255, "Exception occurred while executing 'force-stop':\njava.lang.IllegalArgumentException: Argument expected after \"force-stop\"\n".into()),
            }
        }
        Some((sub, _)) => failure(255, format!("Unknown command: {sub}\n")),
        None => failure(255, "Activity manager (activity) commands:\n  force-stop [--user <USER_ID> | all | current] <PACKAGE>\n".into()),
    }
}

fn pm(args: &[String]) -> Ran {
    match args {
        [list, what, rest @ ..] if list == "list" && what == "packages" => {
            let filter = rest.iter().find(|a| !a.starts_with('-'));
            let lines: String = android::packages()
                .into_iter()
                .filter(|p| filter.is_none_or(|f| p.contains(f.as_str())))
                .map(|p| format!("package:{p}\n"))
                .collect();
            output(lines)
        }
        [sub, ..] => failure(255, format!("Unknown command: {sub}\n")),
        [] => failure(255, "Package manager (package) commands:\n  list packages [-f] [-d] [-e] [-s] [-3] [FILTER]\n".into()),
    }
}

/// `logcat -d -t N`; without `-d` the real tool would follow the log
/// forever, here it dumps as with `-d`.
fn logcat(tv: &TvModel, args: &[String]) -> Ran {
    let mut count = usize::MAX;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-t" || a == "-T" {
            count = it.next().and_then(|n| n.parse().ok()).unwrap_or(count);
        } else if let Some(n) = a.strip_prefix("-t").and_then(|n| n.parse().ok()) {
            count = n;
        } else if a == "-v" || a == "-b" {
            it.next();
        }
    }
    output(android::logcat(tv, count))
}

fn df(sh: &Shell<'_>, args: &[String]) -> Ran {
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut r = Ran::status(0);
    let mut text = String::from(android::DF_HEADER);
    if paths.is_empty() {
        android::mounts(sh.tv)
            .into_iter()
            .for_each(|m| android::df_row(&mut text, m));
    }
    let mut shown = Vec::new();
    for p in paths {
        let path = super::fs::normalize(p);
        let exists = sh.tv.fs.is_dir(&path) || sh.tv.read(&path, sh.now).is_ok();
        if !exists {
            r.err(format!("df: {p}: No such file or directory\n"));
            r.status = 1;
            continue;
        }
        let mount = android::mount_of(sh.tv, &path);
        if !shown.contains(&mount.3) {
            shown.push(mount.3);
            android::df_row(&mut text, mount);
        }
    }
    r.chunks.insert(0, super::sh::Chunk::Out(text.into_bytes()));
    r
}

/// The simulated screen's size.
pub const SCREEN: (u32, u32) = (320, 180);

/// A screenshot: the current app's colour, black in standby.
pub fn screenshot_png(tv: &TvModel) -> Vec<u8> {
    let colour = android::screen_colour(tv);
    png::encode_rgb(SCREEN.0, SCREEN.1, |_, _| colour)
}

/// `screencap [-p] [-d ID] [FILE]`: PNG with `-p` or a `.png` file, else
/// the raw form (width, height, format, and on 10+ the colour space, as
/// u32, then RGBA pixels).
fn screencap(sh: &mut Shell<'_>, args: &[String]) -> Ran {
    let mut png = false;
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" => png = true,
            "-d" => {
                it.next();
            }
            "-h" => {
                return failure(
                    1,
                    "usage: screencap [-hp] [-d display-id] [FILENAME]\n".into(),
                );
            }
            f => file = Some(f.to_string()),
        }
    }
    png |= file.as_deref().is_some_and(|f| f.ends_with(".png"));
    let image = if png {
        screenshot_png(sh.tv)
    } else {
        let (w, h) = SCREEN;
        let [r, g, b] = android::screen_colour(sh.tv);
        let mut raw: Vec<u8> = [w, h, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
        if sh.tv.identity.sdk >= 29 {
            raw.extend_from_slice(&0u32.to_le_bytes());
        }
        for _ in 0..w * h {
            raw.extend_from_slice(&[r, g, b, 0xFF]);
        }
        raw
    };
    match file {
        None => output(image),
        Some(path) => {
            let mtime = u32::try_from(super::model::wall_ms() / 1000).unwrap_or(0);
            match sh.tv.write(&path, image, 0o660, mtime) {
                Ok(()) => Ran::status(0),
                Err(e) => failure(1, format!("Error opening file: {path} ({e})\n")),
            }
        }
    }
}
