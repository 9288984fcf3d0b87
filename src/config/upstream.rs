//! `[upstream]`: where the uplink delivers records (a `wss://` URL), the
//! certificates of the mutual TLS, and the pace of the drain.

use super::UpstreamConfig;
use super::reader::{Int, SectionReader};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The port of a `wss://` URL without one.
const WSS_PORT: u16 = 443;
const URL_EXAMPLE: &str = "url = \"wss://hub.example.com:8443\"";

pub(super) fn read(r: &mut SectionReader<'_, '_>) -> Option<UpstreamConfig> {
    let url = r
        .required::<String>("url", URL_EXAMPLE)
        .and_then(|u| check_url(r, u));
    let ca = pem_file(
        r,
        "ca",
        "ca = \"/etc/sitelink/pki/ca.pem\"",
        "the site's ca.pem (`sitelink pki init` made it)",
    );
    let cert = pem_file(
        r,
        "cert",
        "cert = \"/etc/sitelink/pki/agent-site-01.pem\"",
        "this agent's certificate (`sitelink pki issue-agent --id ID`)",
    );
    let key = pem_file(
        r,
        "key",
        "key = \"/etc/sitelink/pki/agent-site-01.key\"",
        "this agent's private key (made with its certificate)",
    );
    let batch_records: usize = r.int(
        "batch_records",
        Int {
            min: 1,
            max: crate::uplink::proto::MAX_BATCH_RECORDS,
            unit: "records",
            default: 1000,
        },
    );
    let batch_ms: u64 = r.int(
        "batch_ms",
        Int {
            min: 1,
            max: 60_000,
            unit: "ms",
            default: 1000,
        },
    );
    let window: usize = r.int(
        "window",
        Int {
            min: 1,
            max: 64,
            unit: "batches",
            default: 4,
        },
    );
    let backoff_min_ms: u64 = r.int(
        "backoff_min_ms",
        Int {
            min: 10,
            max: 60_000,
            unit: "ms",
            default: 1000,
        },
    );
    let backoff_max = r.optional_int::<u64>(
        "backoff_max_s",
        (1, 3600),
        "s",
        "backoff_max_s = 60",
        "the default is 60 s; delete the line to use it".to_string(),
    );
    if let Some(max) = &backoff_max
        && max.get_ref() * 1000 < backoff_min_ms
    {
        let message = format!(
            "`backoff_max_s` in [upstream] ({} s) is shorter than `backoff_min_ms` ({backoff_min_ms} ms)",
            max.get_ref()
        );
        let hint = "the longest wait between two attempts must be at least the shortest: raise backoff_max_s or lower backoff_min_ms".to_string();
        r.error(max.span(), message, hint);
    }
    let ping_s = r.optional_int::<u64>(
        "ping_s",
        (1, 300),
        "s",
        "ping_s = 15",
        "the default is 15 s; delete the line to use it".to_string(),
    );
    let timeout_s: u64 = r.int(
        "timeout_s",
        Int {
            min: 2,
            max: 600,
            unit: "s",
            default: 45,
        },
    );
    if let Some(p) = &ping_s
        && *p.get_ref() >= timeout_s
    {
        let message = format!(
            "`ping_s` in [upstream] ({} s) is not shorter than `timeout_s` ({timeout_s} s)",
            p.get_ref()
        );
        let hint = "a quiet connection is declared dead after timeout_s, so pings must come more often: lower ping_s (a third of timeout_s is usual)".to_string();
        r.error(p.span(), message, hint);
    }
    let (url, host, port, path) = url?;
    Some(UpstreamConfig {
        url,
        host,
        port,
        path,
        ca: ca?,
        cert: cert?,
        key: key?,
        batch_records,
        batch_wait: Duration::from_millis(batch_ms),
        window,
        backoff_min: Duration::from_millis(backoff_min_ms),
        backoff_max: Duration::from_secs(backoff_max.map_or(60, Spanned::into_inner)),
        ping_every: Duration::from_secs(ping_s.map_or(15, Spanned::into_inner)),
        dead_after: Duration::from_secs(timeout_s),
    })
}

/// A PEM file path: absolute, and a file that is there.
fn pem_file(
    r: &mut SectionReader<'_, '_>,
    key: &'static str,
    example: &str,
    what: &str,
) -> Option<PathBuf> {
    let value = r.required::<String>(key, example)?;
    let path = PathBuf::from(value.get_ref());
    let problem = if !path.is_absolute() {
        Some("must be an absolute path".to_string())
    } else {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some("is not a file".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("does not exist".to_string())
            }
            Err(e) => Some(format!("cannot be read ({e})")),
        }
    };
    match problem {
        None => Some(path),
        Some(problem) => {
            let message = format!("`{key}` in [upstream]: {:?} {problem}", value.get_ref());
            let hint = format!("give the full path of {what}, e.g. `{example}`");
            r.error(value.span(), message, hint);
            None
        }
    }
}

type Url = (String, String, u16, String);

fn check_url(r: &mut SectionReader<'_, '_>, url: Spanned<String>) -> Option<Url> {
    match parse_url(url.get_ref()) {
        Ok((host, port, path)) => Some((url.into_inner(), host, port, path)),
        Err((what, hint)) => {
            let message = format!("`url` in [upstream]: {:?} {what}", url.get_ref());
            r.error(url.span(), message, hint);
            None
        }
    }
}

/// Host (without brackets), port and path of a `wss://` URL, or what is
/// wrong with it and how to write it.
pub(crate) fn parse_url(text: &str) -> Result<(String, u16, String), (String, String)> {
    let fail = |what: &str, hint: String| Err((what.to_string(), hint));
    let Some((scheme, rest)) = text.split_once("://") else {
        return fail(
            "is not a URL",
            format!("write the upstream's address as `{URL_EXAMPLE}`"),
        );
    };
    match scheme.to_ascii_lowercase().as_str() {
        "wss" => {}
        "ws" => {
            return fail(
                "is plaintext (`ws://`), which the uplink refuses",
                format!(
                    "records and commands travel only over TLS with certificates both ways: write `wss://{rest}`"
                ),
            );
        }
        other => {
            return fail(
                &format!("has the scheme `{other}://`"),
                format!("the uplink speaks secure WebSocket only: write `wss://{rest}`"),
            );
        }
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return fail(
            "has a user name in it",
            "the agent proves who it is with its certificate: remove `USER@`".to_string(),
        );
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return fail(
                "has an unclosed `[`",
                "write an IPv6 address as `wss://[fd00::1]:8443`".to_string(),
            );
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return fail("has no host", format!("write it as `{URL_EXAMPLE}`"));
    }
    let port = match port {
        None => WSS_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return fail(
                    &format!("has the port {p:?}"),
                    "a port is a number from 1 to 65535, e.g. `wss://hub.example.com:8443`"
                        .to_string(),
                );
            }
        },
    };
    Ok((host.to_string(), port, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("wss://hub.example.com:8443/sitelink"),
            Ok(("hub.example.com".into(), 8443, "/sitelink".into()))
        );
        assert_eq!(
            parse_url("wss://[::1]:9"),
            Ok(("::1".into(), 9, "/".into()))
        );
        assert_eq!(parse_url("WSS://h"), Ok(("h".into(), 443, "/".into())));
        for bad in [
            "ws://h:1",
            "https://h",
            "h:1",
            "wss://:1",
            "wss://h:0",
            "wss://u@h",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
