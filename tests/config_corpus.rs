//! The bad-config corpus: every `tests/config/bad/NAME.toml` must fail to
//! load with exactly the text in `NAME.expected` (the error's Display plus a
//! final newline, since editors end files with one). Paths are relative to
//! the crate root, which is cargo's working directory for integration tests.

use sitelink::config::{self, load};
use std::fs;
use std::path::{Path, PathBuf};

const CORPUS: &str = "tests/config/bad";

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(CORPUS)
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// Expected and actual, line by line, marking the lines that differ.
fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => out.push_str(&format!("  {e}\n")),
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("- {e}\n"));
                }
                if let Some(a) = a {
                    out.push_str(&format!("+ {a}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn every_bad_config_fails_with_its_expected_message() {
    let files = corpus_files();
    assert!(
        files.len() >= 50,
        "the corpus has only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for toml in &files {
        let expected_path = toml.with_extension("expected");
        let Ok(expected) = fs::read_to_string(&expected_path) else {
            failures.push(format!(
                "{}: no {}",
                toml.display(),
                expected_path.display()
            ));
            continue;
        };
        let actual = match load(toml) {
            Ok(config) => format!("loaded fine: {}\n", config.summary()),
            Err(e) => format!("{e}\n"),
        };
        if actual != expected {
            failures.push(format!(
                "{} (- expected, + actual):\n{}",
                toml.display(),
                diff(&expected, &actual)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_expected_file_has_its_config() {
    for entry in fs::read_dir(CORPUS).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        if path.extension().is_some_and(|ext| ext == "expected") {
            assert!(
                path.with_extension("toml").is_file(),
                "{} has no .toml",
                path.display()
            );
        }
    }
}

#[test]
fn the_not_utf8_file_really_is_not_utf8() {
    // Guards against an editor or git filter "fixing" the corpus file.
    let bytes = fs::read(Path::new(CORPUS).join("not-utf8.toml")).expect("corpus file");
    assert!(std::str::from_utf8(&bytes).is_err());
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sitelink.toml");
    let err = load(&path).expect_err("missing");
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}: error: cannot read the config file: it does not exist\n\
             {p}: hint: check the path; to create it, start from the annotated default, \
             which the package installs as /etc/sitelink/sitelink.toml (config/sitelink.toml in the source)"
        )
    );
}

#[test]
fn directory_instead_of_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = load(dir.path()).expect_err("a directory");
    let p = dir.path().display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}: error: cannot read the config file: it is a directory\n\
             {p}: hint: give the path of the file inside it, e.g. {p}/sitelink.toml"
        )
    );
}

#[test]
fn unreadable_path() {
    // Reading through a regular file as if it were a directory fails even as
    // root (CI runs as root, so permission bits cannot make a file unreadable).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain");
    fs::write(&file, "[agent]\n").expect("write temp file");
    let path = file.join("sitelink.toml");
    let err = load(&path).expect_err("not a directory");
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}: error: cannot read the config file: Not a directory (os error 20)\n\
             {p}: hint: check that every part of the path exists and that the service's user may read the file (`ls -l`)"
        )
    );
}

#[test]
fn shipped_default_and_examples_parse() {
    let default = load(Path::new("config/sitelink.toml")).expect("annotated default");
    assert_eq!(
        config::parse(Path::new("config/sitelink.toml"), config::EMBEDDED_DEFAULT),
        Ok(default.clone())
    );
    assert!(
        default.generators.is_empty() && default.sas.is_empty() && default.tvs.is_empty(),
        "the shipped default has no devices"
    );

    let casino = load(Path::new("config/examples/casino-floor.toml")).expect("casino example");
    assert_eq!(casino.agent.id, "casino-floor-01");
    assert_eq!(casino.sas.len(), 2);
    assert_eq!(casino.sas.iter().map(|l| l.egms.len()).sum::<usize>(), 5);
    assert!(casino.generators.is_empty());
    let tv = load(Path::new("config/examples/tv-wall.toml")).expect("tv example");
    assert_eq!(tv.agent.id, "tv-wall-01");
    assert_eq!(tv.tvs.len(), 3);
    assert!(tv.generators.is_empty() && tv.sas.is_empty());
    assert_eq!(tv.tvs.iter().filter(|t| t.relay.is_some()).count(), 1);
    // Each example is tuned, not a copy of the defaults.
    assert_ne!(casino.store, default.store);
    assert_ne!(tv.store, default.store);
}

#[test]
fn every_example_parses() {
    let mut count = 0;
    for entry in fs::read_dir("config/examples").expect("examples directory") {
        let path = entry.expect("examples entry").path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Err(e) = load(&path) {
                panic!("{}:\n{e}", path.display());
            }
            count += 1;
        }
    }
    assert!(count >= 2, "only {count} examples");
}
