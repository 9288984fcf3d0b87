//! `[[tv]]` (one Android TV over ADB) and its optional `relay` (a GPIO line
//! switching the TV's power).

use super::names::{DeviceNames, device_name};
use super::reader::{Int, SectionReader};
use super::{RelayConfig, TvConfig};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The port adbd listens on after `adb tcpip 5555` or "network debugging".
const ADB_PORT: u16 = 5555;

/// Where a TV wrote something that must be its own, and which TV it was.
struct Claim {
    span: Range<usize>,
    tv: Option<String>,
}

impl Claim {
    /// "`tv-lobby-01` at PATH:LINE:COL", for hints.
    fn describe(&self, r: &SectionReader<'_, '_>) -> String {
        match &self.tv {
            Some(tv) => format!("`{tv}` at {}", r.locate(&self.span)),
            None => r.locate(&self.span),
        }
    }
}

/// Addresses and relay lines taken so far across all TVs.
#[derive(Default)]
pub(super) struct Claims {
    /// By `host:port` in a canonical spelling (lower case, IPv6 compressed).
    addresses: HashMap<String, Claim>,
    relays: HashMap<(PathBuf, u32), Claim>,
}

pub(super) fn read(
    r: &mut SectionReader<'_, '_>,
    devices: &mut DeviceNames,
    claims: &mut Claims,
) -> Option<TvConfig> {
    let name = device_name(r, devices, "tv-1");
    let tv = name.as_ref().map(|n| n.get_ref().clone());
    let host = r
        .required::<String>("host", "host = \"192.168.1.50\"")
        .and_then(|h| check_host(r, h));
    let port = r
        .optional_int::<u16>(
            "port",
            (1, u16::MAX),
            "(a TCP port)",
            "port = 5555",
            "the TV's network debugging listens on 5555 unless its settings show another port; \
             delete the line to use 5555"
                .to_string(),
        )
        .map_or(ADB_PORT, Spanned::into_inner);
    if let Some((host, canonical)) = &host {
        claim_address(r, claims, host, &format!("{canonical}:{port}"), tv.clone());
    }
    let telemetry_s: u64 = r.int(
        "telemetry_s",
        Int {
            min: 5,
            max: 3600,
            unit: "s",
            default: 30,
        },
    );
    // No default: a screenshot is large, so the schedule is opt-in.
    let screenshot_s = r.optional_int::<u64>(
        "screenshot_s",
        (60, 86_400),
        "s",
        "screenshot_s = 3600",
        "60 is one a minute, 86400 one a day; delete the line to take screenshots only on command"
            .to_string(),
    );
    let screenshot_max_kb: usize = r.int(
        "screenshot_max_kb",
        Int {
            min: 64,
            max: 32_768,
            unit: "KB",
            default: 4096,
        },
    );
    let allow_shell = r
        .optional::<bool>("allow_shell")
        .is_some_and(Spanned::into_inner);
    let connect_timeout_ms: u64 = r.int(
        "connect_timeout_ms",
        Int {
            min: 500,
            max: 30_000,
            unit: "ms",
            default: 3000,
        },
    );
    let request_timeout_s: u64 = r.int(
        "request_timeout_s",
        Int {
            min: 1,
            max: 300,
            unit: "s",
            default: 10,
        },
    );
    // adbd runs one process per stream; weak TV SoCs choke on more than a few.
    let max_streams: usize = r.int(
        "max_streams",
        Int {
            min: 1,
            max: 8,
            unit: "streams",
            default: 4,
        },
    );
    let wants_relay = r.has("relay");
    let relay = r.section("relay", |s| {
        if wants_relay {
            read_relay(s, claims, tv.clone())
        } else {
            None
        }
    });
    Some(TvConfig {
        name: name?.into_inner(),
        host: host?.0.into_inner(),
        port,
        telemetry_every: Duration::from_secs(telemetry_s),
        screenshot_every: screenshot_s.map(|s| Duration::from_secs(s.into_inner())),
        screenshot_max_bytes: screenshot_max_kb * 1024,
        allow_shell,
        relay,
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        request_timeout: Duration::from_secs(request_timeout_s),
        max_streams,
    })
}

fn claim_address(
    r: &mut SectionReader<'_, '_>,
    claims: &mut Claims,
    host: &Spanned<String>,
    address: &str,
    tv: Option<String>,
) {
    if let Some(first) = claims.addresses.get(address) {
        let message = format!("two TVs at {address}");
        let hint = format!(
            "the other is {}; each [[tv]] is one TV: \
             find this TV's own address in its network settings",
            first.describe(r)
        );
        r.error(host.span(), message, hint);
        return;
    }
    let claim = Claim {
        span: host.span(),
        tv,
    };
    claims.addresses.insert(address.to_string(), claim);
}

/// Checks `host`; on success returns it with its canonical spelling for
/// comparisons (an IPv6 address written in brackets, as in a URL).
fn check_host(
    r: &mut SectionReader<'_, '_>,
    host: Spanned<String>,
) -> Option<(Spanned<String>, String)> {
    match canonical_host(host.get_ref()) {
        Ok(canonical) => Some((host, canonical)),
        Err((what, hint)) => {
            let message = format!("`host` in {}: {:?} {what}", r.name(), host.get_ref());
            r.error(host.span(), message, hint);
            None
        }
    }
}

/// The canonical `host` for comparisons, or what is wrong with it and what to
/// write instead.
fn canonical_host(host: &str) -> Result<String, (String, String)> {
    const EXAMPLE: &str = "e.g. `host = \"192.168.1.50\"`";
    let fail = |what: &str, hint: String| Err((what.to_string(), hint));
    if host.trim().is_empty() {
        return fail(
            "is empty",
            format!("write the TV's IP address or host name, {EXAMPLE}"),
        );
    }
    if host.trim() != host {
        return fail(
            "has spaces around it",
            format!("remove them: `host = \"{}\"`", host.trim()),
        );
    }
    if let Some((scheme, rest)) = host.split_once("://") {
        let bare = rest.split('/').next().unwrap_or(rest);
        let bare = split_port(bare).map_or(bare, |(h, _)| h);
        return fail(
            &format!("starts with `{scheme}://`"),
            format!(
                "write the address alone, `host = \"{bare}\"`; a port other than 5555 goes in `port`"
            ),
        );
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(v4.to_string());
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Ok(format!("[{v6}]"));
    }
    if let Some((bare, port)) = split_port(host) {
        let port_line = if port == ADB_PORT.to_string() {
            format!("`port = {port}` (the default, so the line can be left out)")
        } else {
            format!("`port = {port}`")
        };
        return fail(
            &format!("has a port (:{port}) in it"),
            format!("write the address alone, `host = \"{bare}\"`, and the port as {port_line}"),
        );
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        && inner.parse::<Ipv6Addr>().is_ok()
    {
        return fail(
            "is in brackets",
            format!("write an IPv6 address without them: `host = \"{inner}\"`"),
        );
    }
    if host.contains(':') {
        return fail(
            "is not a valid IPv6 address",
            format!(
                "an IPv6 address is written like `host = \"fd00::50\"`; an IPv4 address or host name has no `:`, {EXAMPLE}"
            ),
        );
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return fail(
            "is not a valid IPv4 address",
            format!("an IPv4 address is four numbers from 0 to 255 separated by dots, {EXAMPLE}"),
        );
    }
    hostname_problem(host)
        .map(|what| {
            let hint = format!(
                "a host name has only letters, digits, `-` and `.`, in parts of 1 to 63 characters; \
                 or use the TV's IP address (shown in its network settings), {EXAMPLE}"
            );
            Err((what, hint))
        })
        .unwrap_or_else(|| Ok(host.trim_end_matches('.').to_ascii_lowercase()))
}

/// `host:port` or `[v6]:port` split, when the text after the last `:` is a
/// number and what is before it is not an IPv6 address on its own.
fn split_port(text: &str) -> Option<(&str, &str)> {
    let (host, port) = text.rsplit_once(':')?;
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Some((inner, port));
    }
    (!host.is_empty() && !host.contains(':')).then_some((host, port))
}

/// Why `host` is not a DNS host name (RFC 1123), if it is not.
fn hostname_problem(host: &str) -> Option<String> {
    // One trailing dot is the DNS root: `tv.example.com.` is fine.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Some(format!("is {} characters long, over 253", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
    {
        return Some(format!("contains {c:?}, which a host name cannot have"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("has an empty part (two dots together, or a dot first)".to_string());
        }
        if label.len() > 63 {
            return Some(format!("has a part of {} characters, over 63", label.len()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("has a part starting or ending with `-` ({label})"));
        }
    }
    None
}

fn read_relay(
    r: &mut SectionReader<'_, '_>,
    claims: &mut Claims,
    tv: Option<String>,
) -> Option<RelayConfig> {
    let chip = r
        .required::<String>("chip", "chip = \"gpiochip0\"")
        .and_then(|c| check_chip(r, c));
    let line = r.required_int_hint::<u32>(
        "line",
        (0, 511),
        "(a GPIO line number)",
        "line = 17",
        "write the line's number on its chip (`gpioinfo` lists them); \
         on a Raspberry Pi it is the GPIO (BCM) number: GPIO17 is `line = 17`"
            .to_string(),
    );
    let active_low = r
        .optional::<bool>("active_low")
        .is_some_and(Spanned::into_inner);
    // Long enough for a TV's power supply to drain and its standby logic to
    // reset; short enough that a typo does not leave a screen dark for long.
    let cycle_off_s: u64 = r.int(
        "cycle_off_s",
        Int {
            min: 2,
            max: 300,
            unit: "s",
            default: 10,
        },
    );
    let (chip, line) = (chip?, line?);
    let key = (chip.clone(), *line.get_ref());
    if let Some(first) = claims.relays.get(&key) {
        let message = format!(
            "relay line {} of {} is used by two TVs",
            line.get_ref(),
            chip.display()
        );
        let hint = format!(
            "the other is {}; one relay switches one TV: wire this TV's relay to its own line",
            first.describe(r)
        );
        r.error(line.span(), message, hint);
        return None;
    }
    let claim = Claim {
        span: line.span(),
        tv,
    };
    claims.relays.insert(key, claim);
    Some(RelayConfig {
        chip,
        line: line.into_inner(),
        active_low,
        cycle_off: Duration::from_secs(cycle_off_s),
    })
}

/// A chip is `gpiochipN` or `/dev/gpiochipN`; returns its full path.
fn check_chip(r: &mut SectionReader<'_, '_>, chip: Spanned<String>) -> Option<PathBuf> {
    let value = chip.get_ref();
    let name = value.strip_prefix("/dev/").unwrap_or(value);
    let numbered = name
        .strip_prefix("gpiochip")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if numbered {
        return Some(PathBuf::from("/dev").join(name));
    }
    let (what, hint) = if value.starts_with("/sys/") {
        (
            "is in the old sysfs GPIO interface, which sitelink does not use",
            "name the chip instead, e.g. `chip = \"gpiochip0\"`, and put the GPIO number in `line`; \
             `gpiodetect` lists the chips",
        )
    } else {
        (
            "is not a GPIO chip",
            "write `gpiochip` and its number, e.g. `chip = \"gpiochip0\"` (or the full path \
             `/dev/gpiochip0`); `gpiodetect` lists the chips, and the GPIO number goes in `line`",
        )
    };
    let message = format!("`chip` in {}: {value:?} {what}", r.name());
    r.error(chip.span(), message, hint.to_string());
    None
}

#[cfg(test)]
mod tests {
    use super::canonical_host;
    use crate::config::{EMBEDDED_DEFAULT, RelayConfig, TvConfig, parse, reload_plan};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    const WALL: &str = r#"
[[tv]]
name = "tv-lobby-01"
host = "192.0.2.11"

[[tv]]
name = "tv-bar-01"
host = "TV-Bar.example.com."
port = 5556
telemetry_s = 10
screenshot_s = 3600
screenshot_max_kb = 2048
allow_shell = true
connect_timeout_ms = 1500
request_timeout_s = 20
max_streams = 2
relay = { chip = "gpiochip0", line = 17, active_low = true, cycle_off_s = 30 }

[[tv]]
name = "tv-bar-02"
host = "fd00::12"
[tv.relay]
chip = "/dev/gpiochip0"
line = 27
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("t.toml"), text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn tvs_read_with_their_defaults() {
        let c = parse(Path::new("t.toml"), WALL).expect("valid");
        assert_eq!(
            c.tvs[0],
            TvConfig {
                name: "tv-lobby-01".into(),
                host: "192.0.2.11".into(),
                ..defaults()
            }
        );
        assert_eq!(
            c.tvs[1],
            TvConfig {
                name: "tv-bar-01".into(),
                host: "TV-Bar.example.com.".into(),
                port: 5556,
                telemetry_every: Duration::from_secs(10),
                screenshot_every: Some(Duration::from_secs(3600)),
                screenshot_max_bytes: 2048 * 1024,
                allow_shell: true,
                relay: Some(RelayConfig {
                    chip: PathBuf::from("/dev/gpiochip0"),
                    line: 17,
                    active_low: true,
                    cycle_off: Duration::from_secs(30),
                }),
                connect_timeout: Duration::from_millis(1500),
                request_timeout: Duration::from_secs(20),
                max_streams: 2,
            }
        );
        // A [tv.relay] header reads like the inline table; the defaults fill in.
        assert_eq!(
            c.tvs[2].relay,
            Some(RelayConfig {
                chip: PathBuf::from("/dev/gpiochip0"),
                line: 27,
                active_low: false,
                cycle_off: Duration::from_secs(10),
            })
        );
        assert!(
            c.summary().ends_with("3 devices (3 TVs)"),
            "{}",
            c.summary()
        );
    }

    /// The `#[[tv]]` block of the annotated default with one `#` taken off
    /// each line, up to the `#` line that ends it.
    fn documented_block() -> String {
        let start = EMBEDDED_DEFAULT.find("#[[tv]]").expect("a [[tv]] block");
        EMBEDDED_DEFAULT[start..]
            .lines()
            .take_while(|line| *line != "#")
            .map(|line| format!("{}\n", line.strip_prefix('#').expect("commented out")))
            .collect()
    }

    #[test]
    fn the_documented_block_shows_the_defaults() {
        let c = parse(Path::new("t.toml"), &documented_block()).expect("valid when uncommented");
        let tv = &c.tvs[0];
        assert_eq!(
            *tv,
            TvConfig {
                name: "tv-1".into(),
                host: "192.168.1.50".into(),
                screenshot_every: Some(Duration::from_secs(3600)),
                relay: Some(RelayConfig {
                    chip: PathBuf::from("/dev/gpiochip0"),
                    line: 17,
                    active_low: false,
                    cycle_off: Duration::from_secs(10),
                }),
                ..defaults()
            }
        );
    }

    /// What a `[[tv]]` with only `name = "tv-1"` and `host = "192.168.1.50"` reads as.
    fn defaults() -> TvConfig {
        TvConfig {
            name: "tv-1".into(),
            host: "192.168.1.50".into(),
            port: 5555,
            telemetry_every: Duration::from_secs(30),
            screenshot_every: None,
            screenshot_max_bytes: 4096 * 1024,
            allow_shell: false,
            relay: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_streams: 4,
        }
    }

    #[test]
    fn good_hosts_and_their_canonical_spelling() {
        for (host, canonical) in [
            ("192.168.1.50", "192.168.1.50"),
            ("fd00::50", "[fd00::50]"),
            ("FD00:0:0::50", "[fd00::50]"),
            ("::1", "[::1]"),
            ("tv-1", "tv-1"),
            ("TV-1.Lobby.example.com.", "tv-1.lobby.example.com"),
            ("4k-tv", "4k-tv"),
        ] {
            assert_eq!(canonical_host(host), Ok(canonical.to_string()), "{host}");
        }
    }

    #[test]
    fn bad_hosts_say_what_is_wrong() {
        for (host, what) in [
            ("", "is empty"),
            (" tv-1", "has spaces around it"),
            ("adb://10.0.0.5:5555", "starts with `adb://`"),
            ("10.0.0.5:5555", "has a port (:5555) in it"),
            ("tv-1:5556", "has a port (:5556) in it"),
            ("[fd00::5]:5555", "has a port (:5555) in it"),
            ("[fd00::5]", "is in brackets"),
            ("fd00::5::1", "is not a valid IPv6 address"),
            ("10.0.0.256", "is not a valid IPv4 address"),
            ("10.0.0", "is not a valid IPv4 address"),
            ("lobby_tv", "contains '_', which a host name cannot have"),
            ("lobby tv", "contains ' ', which a host name cannot have"),
            (
                "a..b",
                "has an empty part (two dots together, or a dot first)",
            ),
            ("-tv", "has a part starting or ending with `-` (-tv)"),
            (&"a".repeat(64), "has a part of 64 characters, over 63"),
        ] {
            let err = canonical_host(host).expect_err(host);
            assert_eq!(err.0, what, "{host}");
        }
        // The fix is spelled out for the common mistakes.
        let (_, hint) = canonical_host("adb://10.0.0.5:5555/").expect_err("scheme");
        assert!(hint.contains("`host = \"10.0.0.5\"`"), "{hint}");
        let (_, hint) = canonical_host("[fd00::5]:5556").expect_err("port");
        assert!(
            hint.contains("`host = \"fd00::5\"`") && hint.contains("`port = 5556`"),
            "{hint}"
        );
    }

    #[test]
    fn the_same_address_is_the_same_however_it_is_spelled() {
        let text = "[[tv]]\nname = \"a\"\nhost = \"fd00::5\"\n\
                    [[tv]]\nname = \"b\"\nhost = \"FD00:0::5\"\nport = 5555\n\
                    [[tv]]\nname = \"c\"\nhost = \"fd00::5\"\nport = 5556\n";
        assert_eq!(
            errors(text),
            [
                "t.toml:6:8: error: two TVs at [fd00::5]:5555",
                "t.toml:6:8: hint: the other is `a` at t.toml:3:8; each [[tv]] is one TV: find this TV's own address in its network settings",
            ]
        );
    }

    #[test]
    fn a_relay_is_known_by_its_chip_path_and_line() {
        let text = "[[tv]]\nname = \"a\"\nhost = \"tv-a\"\nrelay = { chip = \"gpiochip1\", line = 4 }\n\
                    [[tv]]\nname = \"b\"\nhost = \"tv-b\"\nrelay = { chip = \"/dev/gpiochip1\", line = 4 }\n";
        let errs = errors(text);
        assert_eq!(
            errs[0],
            "t.toml:8:43: error: relay line 4 of /dev/gpiochip1 is used by two TVs"
        );
        // The same line on another chip is another relay.
        let ok = text.replace("/dev/gpiochip1", "gpiochip2");
        let c = parse(Path::new("t.toml"), &ok).expect("valid");
        let relay = c.tvs[1].relay.as_ref().expect("relay");
        assert_eq!(relay.chip, PathBuf::from("/dev/gpiochip2"));
    }

    #[test]
    fn relay_mistakes_are_reported_inside_the_relay() {
        let text = "[[tv]]\nname = \"a\"\nhost = \"tv-a\"\n\
                    relay = { chip = \"/sys/class/gpio/gpio17\", active_low = \"yes\", cycle_off_s = 1, lin = 17 }\n";
        assert_eq!(
            errors(text),
            [
                "t.toml:4:9: error: missing required key `line` in [tv.relay]",
                "t.toml:4:9: hint: add a line such as `line = 17` to this section",
                "t.toml:4:18: error: `chip` in [tv.relay]: \"/sys/class/gpio/gpio17\" is in the old sysfs GPIO interface, which sitelink does not use",
                "t.toml:4:18: hint: name the chip instead, e.g. `chip = \"gpiochip0\"`, and put the GPIO number in `line`; `gpiodetect` lists the chips",
                "t.toml:4:57: error: wrong type for `active_low` in [tv.relay]: expected true or false, found a string",
                "t.toml:4:57: hint: write it like this: `active_low = true`",
                "t.toml:4:78: error: `cycle_off_s` in [tv.relay] must be from 2 to 300 s, found 1",
                "t.toml:4:78: hint: the default is 10 s; delete the line to use it",
                "t.toml:4:81: error: unknown key `lin` in [tv.relay]",
                "t.toml:4:81: hint: did you mean `line`? known keys: `chip`, `line`, `active_low`, `cycle_off_s`",
            ]
        );
    }

    #[test]
    fn quoted_booleans_lose_their_quotes() {
        let text = "[[tv]]\nname = \"a\"\nhost = \"tv-a\"\nallow_shell = \"true\"\n";
        assert_eq!(
            errors(text),
            [
                "t.toml:4:15: error: wrong type for `allow_shell` in [[tv]]: expected true or false, found a string",
                "t.toml:4:15: hint: remove the quotes: `allow_shell = true`",
            ]
        );
    }

    #[test]
    fn range_limits_are_inclusive() {
        let text = "[[tv]]\nname = \"a\"\nhost = \"tv-a\"\nport = 65535\ntelemetry_s = 5\n\
                    screenshot_s = 86400\nmax_streams = 8\n\
                    relay = { chip = \"gpiochip0\", line = 511, cycle_off_s = 300 }\n";
        let c = parse(Path::new("t.toml"), text).expect("valid");
        let tv = &c.tvs[0];
        assert_eq!((tv.port, tv.max_streams), (65535, 8));
        assert_eq!(tv.telemetry_every, Duration::from_secs(5));
        assert_eq!(tv.screenshot_every, Some(Duration::from_secs(86_400)));
        let relay = tv.relay.as_ref().expect("relay");
        assert_eq!(
            (relay.line, relay.cycle_off),
            (511, Duration::from_secs(300))
        );
        let over = text.replace("screenshot_s = 86400", "screenshot_s = 59");
        assert_eq!(
            errors(&over)[0],
            "t.toml:6:16: error: `screenshot_s` in [[tv]] must be from 60 to 86400 s, found 59"
        );
    }

    #[test]
    fn a_changed_tv_restarts_alone() {
        let old = parse(Path::new("t.toml"), WALL).expect("valid");
        let new =
            parse(Path::new("t.toml"), &WALL.replace("line = 27", "line = 22")).expect("valid");
        let plan = reload_plan(&old, &new);
        let names: Vec<&str> = plan.tvs.changed.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["tv-bar-02"]);
        assert!(plan.tvs.added.is_empty() && plan.tvs.removed.is_empty());
        let fewer = parse(
            Path::new("t.toml"),
            WALL.split("[[tv]]\nname = \"tv-bar-02\"")
                .next()
                .expect("split"),
        )
        .expect("valid");
        assert_eq!(reload_plan(&old, &fewer).tvs.removed, ["tv-bar-02"]);
    }
}
