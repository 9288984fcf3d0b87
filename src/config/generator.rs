//! `[[generator]]`: a synthetic device producing records at a fixed rate.

use super::GeneratorConfig;
use super::names::{DeviceNames, device_name};
use super::reader::{Int, SectionReader, closest};
use crate::store::Class;
use toml::Spanned;

/// Above this a Pi's SD card, not the generator, is what gets measured.
const MAX_RATE: f64 = 1_000_000.0;

pub(super) fn read(
    r: &mut SectionReader<'_, '_>,
    devices: &mut DeviceNames,
) -> Option<GeneratorConfig> {
    let name = device_name(r, devices, "gen-1");
    let class = r
        .required::<String>("class", "class = \"event\"")
        .and_then(|class| read_class(r, class));
    let rate = r
        .required::<f64>("rate", "rate = 10")
        .and_then(|rate| check_rate(r, rate));
    let size = r.int(
        "size",
        Int {
            min: 0,
            max: 65_536,
            unit: "bytes",
            default: 200,
        },
    );
    Some(GeneratorConfig {
        name: name?.into_inner(),
        class: class?,
        rate: rate?,
        size,
    })
}

fn read_class(r: &mut SectionReader<'_, '_>, class: Spanned<String>) -> Option<Class> {
    let given = class.get_ref();
    if let Some(found) = Class::ALL.into_iter().find(|c| c.as_str() == given) {
        return Some(found);
    }
    let names: Vec<String> = Class::ALL
        .iter()
        .map(|c| format!("`{}`", c.as_str()))
        .collect();
    let message = format!(
        "unknown class {given:?} in {}: expected one of {}",
        r.name(),
        names.join(", ")
    );
    let hint = match closest(given, Class::ALL.iter().map(|c| c.as_str())) {
        Some(i) => format!("did you mean `class = \"{}\"`?", Class::ALL[i].as_str()),
        None => "write one of them in double quotes, e.g. `class = \"event\"`".to_string(),
    };
    r.error(class.span(), message, hint);
    None
}

fn check_rate(r: &mut SectionReader<'_, '_>, rate: Spanned<f64>) -> Option<f64> {
    let value = *rate.get_ref();
    // Written so that NaN fails too.
    if value > 0.0 && value <= MAX_RATE {
        return Some(value);
    }
    r.out_of_range(
        "rate",
        rate.span(),
        "more than 0 and at most 1000000 records per second",
        "e.g. `rate = 10` for ten records a second, `rate = 0.5` for one every two seconds"
            .to_string(),
    );
    None
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::store::Class;
    use std::path::Path;

    #[test]
    fn reads_a_generator_with_defaults() {
        let text = "[[generator]]\nname = \"g\"\nclass = \"metric\"\nrate = 2\n";
        let config = parse(Path::new("t.toml"), text).expect("valid");
        let g = &config.generators[0];
        assert_eq!(
            (g.name.as_str(), g.class, g.rate, g.size),
            ("g", Class::Metric, 2.0, 200)
        );
    }

    #[test]
    fn rate_must_be_positive_and_finite() {
        for bad in ["0", "-1", "nan", "inf", "1000000.5"] {
            let text = format!("[[generator]]\nname = \"g\"\nclass = \"event\"\nrate = {bad}\n");
            let err = parse(Path::new("t.toml"), &text).expect_err(bad);
            assert_eq!(
                err.diagnostics[0].message,
                format!(
                    "`rate` in [[generator]] must be more than 0 and at most 1000000 records per second, found {bad}"
                )
            );
        }
    }

    #[test]
    fn every_class_name_is_accepted() {
        for class in Class::ALL {
            let text = format!(
                "[[generator]]\nname = \"g\"\nclass = \"{}\"\nrate = 1\n",
                class.as_str()
            );
            let config = parse(Path::new("t.toml"), &text).expect("valid");
            assert_eq!(config.generators[0].class, class);
        }
    }
}
