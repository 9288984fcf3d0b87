//! `[[sas]]` (one serial line) and its `[[sas.egm]]` (one gaming machine on it).

use super::names::{DeviceNames, device_name};
use super::reader::{Int, SectionReader};
use super::{EgmConfig, SasLineConfig};
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// Ports seen so far across all lines, and where.
#[derive(Default)]
pub(super) struct Ports {
    seen: HashMap<String, Range<usize>>,
}

pub(super) fn read(
    r: &mut SectionReader<'_, '_>,
    devices: &mut DeviceNames,
    ports: &mut Ports,
) -> Option<SasLineConfig> {
    let name = device_name(r, devices, "line-1");
    let port = r
        .required::<String>(
            "port",
            "port = \"/dev/serial/by-id/usb-FTDI_...-if00-port0\"",
        )
        .and_then(|p| check_port(r, p, ports));
    let ms = |default, min, max| Int {
        min,
        max,
        unit: "ms",
        default,
    };
    // The document's defaults: 200 ms between polls to one EGM (40 ms only
    // for machines that announce it), replies due within 20 ms plus what a
    // USB adapter adds, 5 ms inter-byte gap plus USB burst slack.
    let poll_interval_ms: u64 = r.int("poll_interval_ms", ms(200, 40, 10_000));
    let reply_timeout_ms: u64 = r.int("reply_timeout_ms", ms(50, 10, 1000));
    let inter_byte_ms: u64 = r.int("inter_byte_ms", ms(20, 5, 200));
    let meters_s = read_meters_s(r, 60);
    let mut addresses: HashMap<u8, Range<usize>> = HashMap::new();
    if !r.has("egm") {
        let message = format!(
            "the line {} has no gaming machines",
            name.as_ref().map_or("", |n| n.get_ref())
        );
        r.error(
            r.span(),
            message,
            "add one [[sas.egm]] section per machine on this line, with its `address` and `name`"
                .to_string(),
        );
    }
    let egms = r.each_table("egm", |e| read_egm(e, devices, &mut addresses, meters_s));
    Some(SasLineConfig {
        name: name?.into_inner(),
        port: port?,
        poll_interval: Duration::from_millis(poll_interval_ms),
        reply_timeout: Duration::from_millis(reply_timeout_ms),
        inter_byte: Duration::from_millis(inter_byte_ms),
        meters_every: Duration::from_secs(meters_s),
        egms,
    })
}

fn read_egm(
    r: &mut SectionReader<'_, '_>,
    devices: &mut DeviceNames,
    addresses: &mut HashMap<u8, Range<usize>>,
    line_meters_s: u64,
) -> Option<EgmConfig> {
    let address = r.required_int::<u8>("address", (1, 127), "(an EGM address)", "address = 1");
    if let Some(a) = &address {
        if let Some(first) = addresses.get(a.get_ref()) {
            let message = format!("two gaming machines at address {} on one line", a.get_ref());
            let hint = format!(
                "the other is at {}; each machine on a line needs its own SAS address (set on the machine's SAS menu)",
                r.locate(first)
            );
            r.error(a.span(), message, hint);
        } else {
            addresses.insert(*a.get_ref(), a.span());
        }
    }
    let name = device_name(r, devices, "egm-1");
    let meters_s = read_meters_s(r, line_meters_s);
    Some(EgmConfig {
        address: address?.into_inner(),
        name: name?.into_inner(),
        meters_every: Duration::from_secs(meters_s),
    })
}

/// `meters_s`, on a line (default 60) or a machine (default: its line's).
fn read_meters_s(r: &mut SectionReader<'_, '_>, default: u64) -> u64 {
    r.int(
        "meters_s",
        Int {
            min: 1,
            max: 86_400,
            unit: "s",
            default,
        },
    )
}

/// A port is an absolute device path or `tcp://HOST:PORT`, used by one line only.
fn check_port(
    r: &mut SectionReader<'_, '_>,
    port: Spanned<String>,
    ports: &mut Ports,
) -> Option<String> {
    let value = port.get_ref();
    let problem = if let Some(rest) = value.strip_prefix("tcp://") {
        match rest.rsplit_once(':') {
            Some((host, p)) if !host.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => None,
            _ => Some((
                "is not a TCP address with a port from 1 to 65535",
                "a serial server is written `tcp://HOST:PORT`, e.g. `tcp://10.0.0.9:4001`",
            )),
        }
    } else if !value.starts_with('/') {
        Some((
            "is not a full path",
            "write the device's full path, best the stable one under /dev/serial/by-id/ \
             (`ls -l /dev/serial/by-id/` lists them), or `tcp://HOST:PORT` for a serial server",
        ))
    } else {
        None
    };
    if let Some((what, hint)) = problem {
        r.error(
            port.span(),
            format!("`port` in {}: {value:?} {what}", r.name()),
            hint.to_string(),
        );
        return None;
    }
    if let Some(first) = ports.seen.get(value) {
        let message = format!("port {value} is used by two lines");
        let hint = format!(
            "also used at {}; one [[sas]] line per port, with all its machines as [[sas.egm]] under it",
            r.locate(first)
        );
        r.error(port.span(), message, hint);
        return None;
    }
    ports.seen.insert(value.clone(), port.span());
    Some(port.into_inner())
}

#[cfg(test)]
mod tests {
    use crate::config::{EgmConfig, parse, reload_plan};
    use std::path::Path;
    use std::time::Duration;

    const FLOOR: &str = r#"
[[sas]]
name = "line-1"
port = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"
meters_s = 30
[[sas.egm]]
address = 1
name = "egm-1"
[[sas.egm]]
address = 2
name = "egm-2"
meters_s = 5

[[sas]]
name = "line-2"
port = "tcp://127.0.0.1:4001"
poll_interval_ms = 40
[[sas.egm]]
address = 1
name = "egm-3"
"#;

    #[test]
    fn lines_and_machines_read_with_their_defaults() {
        let c = parse(Path::new("t.toml"), FLOOR).expect("valid");
        assert_eq!(c.sas.len(), 2);
        let l1 = &c.sas[0];
        assert_eq!(l1.poll_interval, Duration::from_millis(200));
        assert_eq!(l1.reply_timeout, Duration::from_millis(50));
        assert_eq!(l1.inter_byte, Duration::from_millis(20));
        assert_eq!(
            l1.egms,
            [
                EgmConfig {
                    address: 1,
                    name: "egm-1".into(),
                    meters_every: Duration::from_secs(30)
                },
                EgmConfig {
                    address: 2,
                    name: "egm-2".into(),
                    meters_every: Duration::from_secs(5)
                },
            ]
        );
        // The same address on another line is fine.
        assert_eq!(c.sas[1].egms[0].address, 1);
        assert_eq!(c.sas[1].poll_interval, Duration::from_millis(40));
        assert!(
            c.summary()
                .ends_with("3 devices (3 gaming machines on 2 SAS lines)")
        );
    }

    #[test]
    fn a_line_with_a_changed_machine_restarts_as_a_whole() {
        let old = parse(Path::new("t.toml"), FLOOR).expect("valid");
        let new = parse(
            Path::new("t.toml"),
            &FLOOR.replace("meters_s = 5", "meters_s = 6"),
        )
        .expect("valid");
        let plan = reload_plan(&old, &new);
        assert_eq!(plan.sas.changed.len(), 1);
        assert_eq!(plan.sas.changed[0].name, "line-1");
        assert!(plan.sas.added.is_empty() && plan.sas.removed.is_empty());
    }
}
