//! `[agent]`: who this agent is, where it keeps its data, how much it logs.

use super::AgentConfig;
use super::names::check_name;
use super::reader::SectionReader;
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

const DEFAULT_DATA_DIR: &str = "/var/lib/sitelink";
const DEFAULT_LOG_LEVEL: &str = "info";
/// The id when the host name is unusable as one.
const FALLBACK_ID: &str = "sitelink";

pub(super) fn read(r: &mut SectionReader<'_, '_>) -> AgentConfig {
    let id = match r.optional::<String>("id") {
        Some(id) => {
            check_name(r, "id", &id, "site-01");
            id.into_inner()
        }
        None => default_id(),
    };

    let data_dir = match r.optional::<String>("data_dir") {
        Some(dir) => {
            if !Path::new(dir.get_ref()).is_absolute() {
                let message = format!(
                    "`data_dir` in [agent] must be an absolute path, found {:?}",
                    dir.get_ref()
                );
                let hint = format!(
                    "the daemon runs from `/` under systemd, so a relative path would not be where you expect; \
                     write the full path, e.g. `data_dir = \"{DEFAULT_DATA_DIR}\"`"
                );
                r.error(dir.span(), message, hint);
            }
            PathBuf::from(dir.into_inner())
        }
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };

    let log_level = match r.optional::<String>("log_level") {
        Some(level) => {
            if let Some(problem) = log_level_problem(level.get_ref()) {
                let message = format!("invalid `log_level` in [agent]: {problem}");
                let hint = "use one of `error`, `warn`, `info`, `debug`, `trace`, `off`, \
                            or per-module directives like `info,sitelink::store=debug`"
                    .to_string();
                r.error(level.span(), message, hint);
            }
            level.into_inner()
        }
        None => DEFAULT_LOG_LEVEL.to_string(),
    };

    AgentConfig {
        id,
        data_dir,
        log_level,
    }
}

/// Why `filter` is not a usable log filter, if it is not. Stricter than
/// EnvFilter itself: a bare word there means "everything from the module of
/// that name", so a misspelt level like `debgu` would silently log nothing.
fn log_level_problem(filter: &str) -> Option<String> {
    if filter.trim().is_empty() {
        return Some("it is empty".to_string());
    }
    let bare_word = filter.split(',').map(str::trim).find(|directive| {
        !directive.is_empty()
            && !directive.contains(['=', '[', ':'])
            && directive.parse::<LevelFilter>().is_err()
    });
    if let Some(word) = bare_word {
        return Some(format!(
            "`{word}` is not a level (for a module, write `{word}=LEVEL`)"
        ));
    }
    EnvFilter::builder()
        .parse(filter)
        .err()
        .map(|e| format!("{filter:?} is not a filter: {e}"))
}

/// The host name, if it is a valid id; else `sitelink`.
pub(super) fn default_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return FALLBACK_ID.to_string();
    }
    // Without a NUL the name was truncated; a truncated name is no name.
    let host = buf
        .iter()
        .position(|&b| b == 0)
        .and_then(|end| std::str::from_utf8(&buf[..end]).ok());
    match host {
        Some(host) if super::names::name_problem(host).is_none() => host.to_string(),
        _ => FALLBACK_ID.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "DEBUG",
            "warn,sitelink::store=debug",
            "sitelink=trace",
            "off",
        ] {
            assert_eq!(log_level_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn misspelt_levels_and_broken_directives_are_rejected() {
        assert_eq!(
            log_level_problem("verbose"),
            Some("`verbose` is not a level (for a module, write `verbose=LEVEL`)".into())
        );
        assert_eq!(log_level_problem(" "), Some("it is empty".into()));
        let broken = log_level_problem("sitelink=loud").expect("rejected");
        assert!(
            broken.starts_with("\"sitelink=loud\" is not a filter: "),
            "{broken}"
        );
    }

    #[test]
    fn default_id_is_a_valid_name() {
        let id = default_id();
        assert_eq!(super::super::names::name_problem(&id), None, "{id}");
    }
}
