//! `[update]`: over-the-air self-update (docs/OPERATIONS.md): the keys a
//! release must be signed with, an optional release URL to poll, and the
//! health gate.

use super::UpdateConfig;
use super::reader::{Int, SectionReader};
use std::time::Duration;

const KEY_EXAMPLE: &str = "trusted_keys = [\"ed25519:BASE64\"]";

pub(super) fn read(r: &mut SectionReader<'_, '_>) -> UpdateConfig {
    let keys = r.optional::<Vec<String>>("trusted_keys");
    let mut trusted_keys = Vec::new();
    if let Some(keys) = keys {
        let span = keys.span();
        for k in keys.into_inner() {
            match crate::ota::release::parse_public(&k) {
                Ok(_) => trusted_keys.push(k),
                Err(_) => r.error(
                    span.clone(),
                    format!(
                        "invalid key \"{k}\" in `trusted_keys` in [update]: a key is `ed25519:` and 32 bytes in base64"
                    ),
                    format!(
                        "write each key as `sitelink release keygen` prints it, e.g. `{KEY_EXAMPLE}`"
                    ),
                ),
            }
        }
    }
    let url = r.optional::<String>("url").and_then(|u| {
        let text = u.get_ref();
        if (text.starts_with("http://") || text.starts_with("https://")) && text.ends_with(".json") {
            Some(u.into_inner())
        } else {
            r.error(
                u.span(),
                format!(
                    "`url` in [update] must be an http:// or https:// URL of a .json manifest, found \"{text}\""
                ),
                "the URL of the release manifest (the binary is the same URL without .json), e.g. `url = \"https://releases.example.com/sitelink/arm64.json\"`".to_string(),
            );
            None
        }
    });
    let check_s: u64 = r.int(
        "check_s",
        Int {
            min: 10,
            max: 604_800,
            unit: "s",
            default: 3600,
        },
    );
    let health_s: u64 = r.int(
        "health_s",
        Int {
            min: 10,
            max: 3600,
            unit: "s",
            default: 120,
        },
    );
    let max_attempts: u32 = r.int(
        "max_attempts",
        Int {
            min: 1,
            max: 20,
            unit: "starts",
            default: 3,
        },
    );
    let max_mb: u64 = r.int(
        "max_mb",
        Int {
            min: 1,
            max: 1024,
            unit: "MB",
            default: 64,
        },
    );
    let allow_downgrade = r
        .optional::<bool>("allow_downgrade")
        .is_some_and(|b| *b.get_ref());
    UpdateConfig {
        trusted_keys,
        url,
        check_every: Duration::from_secs(check_s),
        health: Duration::from_secs(health_s),
        max_attempts,
        max_bytes: max_mb * 1024 * 1024,
        allow_downgrade,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn defaults_and_values() {
        let none = parse(Path::new("t.toml"), "[agent]\n")
            .expect("valid")
            .update;
        assert!(none.trusted_keys.is_empty());
        assert_eq!(none.health, Duration::from_secs(120));
        assert_eq!((none.max_attempts, none.max_bytes), (3, 64 << 20));
        let key = "ed25519:".to_string() + &"A".repeat(43) + "=";
        let text = format!(
            "[update]\ntrusted_keys = [\"{key}\"]\nurl = \"http://127.0.0.1:9/m.json\"\nhealth_s = 10\nallow_downgrade = true\n"
        );
        let u = parse(Path::new("t.toml"), &text).expect("valid").update;
        assert_eq!(u.trusted_keys, vec![key]);
        assert!(u.allow_downgrade);
        assert_eq!(u.url.as_deref(), Some("http://127.0.0.1:9/m.json"));
    }

    /// The block in config/sitelink.toml, uncommented, is valid as written.
    #[test]
    fn the_documented_block_is_valid() {
        let text = crate::config::EMBEDDED_DEFAULT;
        let start = text.find("#[update]").expect("an [update] block");
        let block: String = text[start..]
            .lines()
            .take_while(|line| *line != "#")
            .filter(|line| !line.starts_with("##"))
            .map(|line| format!("{}\n", line.strip_prefix('#').expect("commented out")))
            .collect();
        let block = block.replace(
            "ed25519:BASE64",
            "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        let u = parse(Path::new("t.toml"), &block)
            .expect("valid when uncommented")
            .update;
        assert_eq!(u.max_bytes, 64 << 20);
        assert_eq!(u.check_every, Duration::from_secs(3600));
    }
}
