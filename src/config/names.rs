//! Names of the agent and its devices: how they may be spelled, and the
//! registry that keeps device names unique across every device section
//! (`[[generator]]` today; `[[sas]]` and `[[tv]]` register here too).

use super::reader::SectionReader;
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

/// Names appear in records, file names and upstream URLs, so they stay plain.
const NAME_RULE: &str = "1 to 64 letters, digits, `.`, `_` or `-`";

/// Why `name` is not a valid agent or device name, if it is not.
pub fn name_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    if len == 0 {
        return Some("is empty".to_string());
    }
    if len > 64 {
        return Some(format!("is {len} characters long"));
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| format!("contains {c:?}, which is not allowed"))
}

/// Reports `value` of `key` if it breaks the name rule; `example` is a good name.
pub(super) fn check_name(
    r: &mut SectionReader<'_, '_>,
    key: &str,
    value: &Spanned<String>,
    example: &str,
) {
    if let Some(problem) = name_problem(value.get_ref()) {
        let message = format!(
            "invalid `{key}` in {}: {:?} {problem}",
            r.name(),
            value.get_ref()
        );
        let hint = format!("use {NAME_RULE}, e.g. `{key} = \"{example}\"`");
        r.error(value.span(), message, hint);
    }
}

/// Reads a device section's required `name`: checks its spelling and that
/// no other device has it.
pub(super) fn device_name(
    r: &mut SectionReader<'_, '_>,
    devices: &mut DeviceNames,
    example: &str,
) -> Option<Spanned<String>> {
    let name = r.required::<String>("name", &format!("name = \"{example}\""))?;
    check_name(r, "name", &name, example);
    devices.register(r, &name);
    Some(name)
}

/// Device names seen so far and where each was defined.
#[derive(Default)]
pub(super) struct DeviceNames {
    seen: HashMap<String, Range<usize>>,
}

impl DeviceNames {
    /// Registers a device's name; a name seen before is reported at this
    /// place with a hint pointing at the first.
    pub(super) fn register(&mut self, r: &mut SectionReader<'_, '_>, name: &Spanned<String>) {
        if let Some(first) = self.seen.get(name.get_ref()) {
            let message = format!("duplicate device name `{}`", name.get_ref());
            let hint = format!(
                "also defined at {}; every device needs its own name",
                r.locate(first)
            );
            r.error(name.span(), message, hint);
            return;
        }
        self.seen.insert(name.get_ref().clone(), name.span());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert_eq!(name_problem("egm-1.floor_2"), None);
        assert_eq!(name_problem(&"a".repeat(64)), None);
        assert_eq!(name_problem(""), Some("is empty".into()));
        assert_eq!(
            name_problem(&"a".repeat(65)),
            Some("is 65 characters long".into())
        );
        assert_eq!(
            name_problem("site 01"),
            Some("contains ' ', which is not allowed".into())
        );
        assert_eq!(
            name_problem("café"),
            Some("contains 'é', which is not allowed".into())
        );
    }
}
