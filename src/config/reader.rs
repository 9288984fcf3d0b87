//! A typed reader over one TOML table. Each section's `read` function asks it
//! for the keys it knows; the reader records a diagnostic for every value of
//! the wrong type and, at `finish`, for every key nobody asked for. So adding
//! a section is one new `read` function, and every section reports the same way.

use super::diagnostic::Diagnostics;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The TOML shape a key wants, for type checks and for the hint that fixes them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    Table,
    List,
}

impl Kind {
    fn accepts(self, value: &DeValue<'_>) -> bool {
        matches!(
            (self, value),
            (Kind::Text, DeValue::String(_))
                | (Kind::Integer, DeValue::Integer(_))
                | (Kind::Number, DeValue::Integer(_) | DeValue::Float(_))
                | (Kind::Boolean, DeValue::Boolean(_))
                | (Kind::Table, DeValue::Table(_))
                | (Kind::List, DeValue::Array(_))
        )
    }
}

/// A plain value type that `optional` and `required` can read through serde.
pub(super) trait Expect: DeserializeOwned {
    const KIND: Kind;
    /// Named in "expected ..." messages.
    const WHAT: &'static str;
    /// A line to show in hints when the key has no better example.
    fn example(key: &str) -> String;
}

impl Expect for String {
    const KIND: Kind = Kind::Text;
    const WHAT: &'static str = "a string";
    fn example(key: &str) -> String {
        format!("{key} = \"text\"")
    }
}

impl Expect for f64 {
    const KIND: Kind = Kind::Number;
    const WHAT: &'static str = "a number";
    fn example(key: &str) -> String {
        format!("{key} = 1.5")
    }
}

impl Expect for bool {
    const KIND: Kind = Kind::Boolean;
    const WHAT: &'static str = "true or false";
    fn example(key: &str) -> String {
        format!("{key} = true")
    }
}

impl Expect for Vec<String> {
    const KIND: Kind = Kind::List;
    const WHAT: &'static str = "a list of strings";
    fn example(key: &str) -> String {
        format!("{key} = [\"text\"]")
    }
}

/// An unsigned integer type that `int` can produce.
pub(super) trait Whole: Copy + fmt::Display + TryFrom<i128> {
    fn wide(self) -> i128;
}

/// `From<T> for i128` holds for each of these, so the widening is lossless.
macro_rules! whole {
    ($($t:ty),*) => {$(
        impl Whole for $t {
            fn wide(self) -> i128 {
                self.into()
            }
        }
    )*};
}
whole!(u8, u16, u32, u64);

impl Whole for usize {
    fn wide(self) -> i128 {
        // Lossless: usize is at most 64 bits on every target we build for.
        self as i128
    }
}

/// The rule for an integer key: inclusive range, unit for messages, default.
pub(super) struct Int<T> {
    pub min: T,
    pub max: T,
    pub unit: &'static str,
    pub default: T,
}

/// How a key is listed in "known keys" hints.
#[derive(Clone, Copy)]
enum Shape {
    Key,
    Table,
    List,
}

pub(super) struct SectionReader<'a, 'i> {
    diags: &'a mut Diagnostics<'i>,
    /// Dotted path: "" for the top level, "store.quota" for `[store.quota]`.
    path: String,
    /// An element of an array of tables, so shown as `[[path]]`.
    list: bool,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    known: Vec<(&'static str, Shape)>,
}

impl<'a, 'i> SectionReader<'a, 'i> {
    /// A reader over the whole file.
    pub(super) fn document(diags: &'a mut Diagnostics<'i>, doc: &'a Spanned<DeTable<'i>>) -> Self {
        SectionReader {
            diags,
            path: String::new(),
            list: false,
            table: doc.get_ref(),
            span: doc.span(),
            known: Vec::new(),
        }
    }

    /// How messages name this table: `[store]`, `[[generator]]`.
    pub(super) fn name(&self) -> String {
        if self.list {
            format!("[[{}]]", self.path)
        } else {
            format!("[{}]", self.path)
        }
    }

    /// Where a key is, for messages: " in [store]" or " outside any section".
    fn within(&self) -> String {
        if self.path.is_empty() {
            " outside any section".to_string()
        } else {
            format!(" in {}", self.name())
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn lookup(&mut self, key: &'static str, shape: Shape) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push((key, shape));
        let table: &'a DeTable<'i> = self.table;
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// Records a problem found by a section's own rules.
    /// Where this table is (its header, for a whole-section complaint).
    pub(super) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Whether the table has `key` at all (whatever its value).
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.keys().any(|k| k.get_ref() == key)
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: String, hint: String) {
        self.diags.error(span, message, hint);
    }

    /// `PATH:LINE:COL` of a span's start, for hints that point at another place.
    pub(super) fn locate(&self, span: &Range<usize>) -> String {
        self.diags.locate(span.start)
    }

    /// The value as written in the file, to quote it back.
    pub(super) fn snippet(&self, span: Range<usize>) -> &'i str {
        self.diags.snippet(span)
    }

    pub(super) fn optional<T: Expect>(&mut self, key: &'static str) -> Option<Spanned<T>> {
        let value = self.lookup(key, Shape::Key)?;
        self.convert(key, value, &T::example(key))
    }

    /// The key's value; a missing key is reported, with `example` showing
    /// how to add it.
    fn lookup_required(
        &mut self,
        key: &'static str,
        example: &str,
    ) -> Option<&'a Spanned<DeValue<'i>>> {
        let value = self.lookup(key, Shape::Key);
        if value.is_none() {
            let message = format!("missing required key `{key}` in {}", self.name());
            let hint = format!("add a line such as `{example}` to this section");
            self.diags.error(self.span.clone(), message, hint);
        }
        value
    }

    /// Like `optional`, but a missing key is an error; `example` shows how to add it.
    pub(super) fn required<T: Expect>(
        &mut self,
        key: &'static str,
        example: &str,
    ) -> Option<Spanned<T>> {
        let value = self.lookup_required(key, example)?;
        self.convert(key, value, example)
    }

    fn convert<T: Expect>(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        example: &str,
    ) -> Option<Spanned<T>> {
        if !T::KIND.accepts(value.get_ref()) {
            self.wrong_type(key, value, T::KIND, T::WHAT, example);
            return None;
        }
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(Spanned::new(value.span(), v)),
            Err(e) => {
                let message = format!(
                    "invalid value for `{key}`{}: {}",
                    self.within(),
                    e.message()
                );
                let hint = format!("write it like this: `{example}`");
                self.diags
                    .error(e.span().unwrap_or(value.span()), message, hint);
                None
            }
        }
    }

    /// An integer key with a range; the default when absent or invalid (an
    /// invalid value is reported, so the config is rejected anyway).
    pub(super) fn int<T: Whole>(&mut self, key: &'static str, rule: Int<T>) -> T {
        let Some(value) = self.lookup(key, Shape::Key) else {
            return rule.default;
        };
        let example = format!("{key} = {}", rule.default);
        let hint = format!(
            "the default is {} {}; delete the line to use it",
            rule.default, rule.unit
        );
        self.whole(key, value, (rule.min, rule.max), rule.unit, &example, hint)
            .unwrap_or(rule.default)
    }

    /// An integer key that must be there, with where it was written (for
    /// checks across sections, such as two EGMs at one address).
    pub(super) fn required_int<T: Whole>(
        &mut self,
        key: &'static str,
        range: (T, T),
        unit: &'static str,
        example: &str,
    ) -> Option<Spanned<T>> {
        let hint = format!("write it like this: `{example}`");
        self.required_int_hint(key, range, unit, example, hint)
    }

    /// `required_int` with its own hint for a value out of range.
    pub(super) fn required_int_hint<T: Whole>(
        &mut self,
        key: &'static str,
        range: (T, T),
        unit: &'static str,
        example: &str,
        range_hint: String,
    ) -> Option<Spanned<T>> {
        let value = self.lookup_required(key, example)?;
        let v = self.whole(key, value, range, unit, example, range_hint)?;
        Some(Spanned::new(value.span(), v))
    }

    /// An integer key whose absence means something (not a default value),
    /// with where it was written; `range_hint` says what to do when it is out
    /// of range.
    pub(super) fn optional_int<T: Whole>(
        &mut self,
        key: &'static str,
        range: (T, T),
        unit: &'static str,
        example: &str,
        range_hint: String,
    ) -> Option<Spanned<T>> {
        let value = self.lookup(key, Shape::Key)?;
        let v = self.whole(key, value, range, unit, example, range_hint)?;
        Some(Spanned::new(value.span(), v))
    }

    fn whole<T: Whole>(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        (min, max): (T, T),
        unit: &str,
        example: &str,
        range_hint: String,
    ) -> Option<T> {
        let DeValue::Integer(n) = value.get_ref() else {
            let what = format!("an integer ({unit})");
            self.wrong_type(key, value, Kind::Integer, &what, example);
            return None;
        };
        // TOML integers may exceed any Rust type (or be negative): those are
        // range errors, so parse wide and convert only what is in range.
        let allowed = min.wide()..=max.wide();
        let fits = i128::from_str_radix(n.as_str(), n.radix())
            .ok()
            .filter(|n| allowed.contains(n))
            .and_then(|n| T::try_from(n).ok());
        if fits.is_none() {
            let must = format!("from {min} to {max} {unit}");
            self.out_of_range(key, value.span(), &must, range_hint);
        }
        fits
    }

    /// Reports a value outside its range: "`KEY` in [S] must be MUST, found VALUE".
    pub(super) fn out_of_range(&mut self, key: &str, span: Range<usize>, must: &str, hint: String) {
        let found = self.snippet(span.clone());
        let message = format!("`{key}`{} must be {must}, found {found}", self.within());
        self.diags.error(span, message, hint);
    }

    fn wrong_type(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        want: Kind,
        what: &str,
        example: &str,
    ) {
        let written = self.snippet(value.span());
        let message = format!(
            "wrong type for `{key}`{}: expected {what}, found {}",
            self.within(),
            describe(value.get_ref())
        );
        let hint = match (want, value.get_ref()) {
            (Kind::Integer | Kind::Number | Kind::Boolean, DeValue::String(s))
                if parses_as(want, s.trim()) =>
            {
                format!("remove the quotes: `{key} = {}`", s.trim())
            }
            (Kind::Text, DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)) => {
                format!("put text in double quotes: `{key} = \"{written}\"`")
            }
            (Kind::Integer, DeValue::Float(_)) => {
                format!("use a whole number without a decimal point, e.g. `{example}`")
            }
            _ => format!("write it like this: `{example}`"),
        };
        self.diags.error(value.span(), message, hint);
    }

    /// Reads the subtable `key` with `read`. An absent table reads as an empty
    /// one, so a section's defaults come from its `read` function alone.
    pub(super) fn section<R>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&mut SectionReader<'_, 'i>) -> R,
    ) -> R {
        let empty = DeTable::new();
        let path = self.child_path(key);
        let (table, span) = match self.lookup(key, Shape::Table) {
            None => (&empty, self.span.clone()),
            Some(value) => match value.get_ref() {
                DeValue::Table(table) => (table, value.span()),
                DeValue::Array(_) => {
                    let message =
                        format!("[[{path}]] is a list of sections, but there is only one [{path}]");
                    let hint = format!("write the header with single brackets: [{path}]");
                    self.diags.error(value.span(), message, hint);
                    (&empty, value.span())
                }
                _ => {
                    let what = format!("a section [{path}]");
                    self.wrong_type(key, value, Kind::Table, &what, &format!("[{path}]"));
                    (&empty, value.span())
                }
            },
        };
        let mut reader = SectionReader {
            diags: &mut *self.diags,
            path,
            list: false,
            table,
            span,
            known: Vec::new(),
        };
        let out = read(&mut reader);
        reader.finish();
        out
    }

    /// Reads every table of the array of tables `key` (`[[key]]`), keeping
    /// what `read` returns for the valid ones.
    pub(super) fn each_table<R>(
        &mut self,
        key: &'static str,
        mut read: impl FnMut(&mut SectionReader<'_, 'i>) -> Option<R>,
    ) -> Vec<R> {
        let Some(value) = self.lookup(key, Shape::List) else {
            return Vec::new();
        };
        let path = self.child_path(key);
        let items: Vec<&Spanned<DeValue<'i>>> = match value.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            DeValue::Table(_) => {
                let message = format!("[{path}] is a single section, but [[{path}]] is a list");
                let hint = format!(
                    "write the header with double brackets: [[{path}]], once for each entry"
                );
                self.diags.error(value.span(), message, hint);
                // Still check its keys, so one run shows every problem.
                vec![value]
            }
            _ => {
                let what = format!("a list of [[{path}]] sections");
                self.wrong_type(key, value, Kind::List, &what, &format!("[[{path}]]"));
                Vec::new()
            }
        };
        let mut out = Vec::new();
        for item in items {
            let DeValue::Table(table) = item.get_ref() else {
                let what = format!("a [[{path}]] section");
                self.wrong_type(key, item, Kind::Table, &what, &format!("[[{path}]]"));
                continue;
            };
            let mut reader = SectionReader {
                diags: &mut *self.diags,
                path: path.clone(),
                list: true,
                table,
                span: item.span(),
                known: Vec::new(),
            };
            out.extend(read(&mut reader));
            reader.finish();
        }
        out
    }

    /// Reports every key no `read` function asked for.
    pub(super) fn finish(self) {
        let top = self.path.is_empty();
        let known: Vec<String> = self
            .known
            .iter()
            .map(|&(name, shape)| self.show(name, shape))
            .collect();
        let label = if top { "known sections" } else { "known keys" };
        let known_list = format!("{label}: {}", known.join(", "));
        for (key, value) in self.table.iter() {
            let key_name = key.get_ref().as_ref();
            if self.known.iter().any(|(name, _)| *name == key_name) {
                continue;
            }
            let shape = shape_of(value.get_ref());
            let message = match shape {
                Shape::Key if top => format!("key `{key_name}` is outside any section"),
                Shape::Key => format!("unknown key `{key_name}`{}", self.within()),
                _ => format!("unknown section {}", self.show(key_name, shape)),
            };
            let hint = match closest(key_name, self.known.iter().map(|(name, _)| *name)) {
                Some(i) => format!("did you mean {}? {known_list}", known[i]),
                None if top && matches!(shape, Shape::Key) => {
                    format!("put it under the header of its section; {known_list}")
                }
                None => known_list.clone(),
            };
            self.diags.error(key.span(), message, hint);
        }
    }

    fn show(&self, name: &str, shape: Shape) -> String {
        match shape {
            Shape::Key => format!("`{name}`"),
            Shape::Table => format!("[{}]", self.child_path(name)),
            Shape::List => format!("[[{}]]", self.child_path(name)),
        }
    }
}

/// Whether quoted text is a number of the kind wanted, so the quotes are the mistake.
fn parses_as(want: Kind, text: &str) -> bool {
    match want {
        Kind::Integer => text.parse::<i128>().is_ok(),
        Kind::Boolean => matches!(text, "true" | "false"),
        _ => text.parse::<f64>().is_ok(),
    }
}

fn shape_of(value: &DeValue<'_>) -> Shape {
    match value {
        DeValue::Table(_) => Shape::Table,
        DeValue::Array(items)
            if !items.is_empty()
                && items
                    .iter()
                    .all(|item| matches!(item.get_ref(), DeValue::Table(_))) =>
        {
            Shape::List
        }
        _ => Shape::Key,
    }
}

/// "a string", "an integer", ...: what the technician wrote, for messages.
fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "true/false",
        DeValue::Datetime(_) => "a date/time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Index of the candidate closest to `word`, if any is close enough to be a
/// likely typo (case is ignored: `Commit_MS` means `commit_ms`).
pub(super) fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<usize> {
    let word = word.to_lowercase();
    candidates
        .enumerate()
        .map(|(i, c)| {
            (
                strsim::damerau_levenshtein(&word, &c.to_lowercase()),
                c.len(),
                i,
            )
        })
        .filter(|&(distance, len, _)| distance <= (len / 3).max(1))
        .min_by_key(|&(distance, _, _)| distance)
        .map(|(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Runs `read` over the top level of `text`; returns the messages and hints.
    fn run<R>(text: &str, read: impl FnOnce(&mut SectionReader<'_, '_>) -> R) -> (R, Vec<String>) {
        let doc = DeTable::parse(text).expect("test TOML parses");
        let mut diags = Diagnostics::new(Path::new("t.toml"), text);
        let mut reader = SectionReader::document(&mut diags, &doc);
        let out = read(&mut reader);
        reader.finish();
        let lines = match diags.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        };
        (out, lines)
    }

    fn rule() -> Int<u64> {
        Int {
            min: 1,
            max: 100,
            unit: "ms",
            default: 10,
        }
    }

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        let keys = ["commit_records", "commit_ms", "min_free_mb"];
        assert_eq!(closest("comit_ms", keys.into_iter()), Some(1));
        assert_eq!(closest("COMMIT_MS", keys.into_iter()), Some(1));
        assert_eq!(closest("colour", keys.into_iter()), None);
        assert_eq!(closest("agnet", ["agent", "store"].into_iter()), Some(0));
    }

    #[test]
    fn int_reads_in_range_values_in_any_radix() {
        let (v, errs) = run("[s]\na = 0x10\n", |r| {
            r.section("s", |s| s.int("a", rule()))
        });
        assert_eq!((v, errs), (16, vec![]));
    }

    #[test]
    fn int_defaults_when_absent() {
        let (v, errs) = run("[s]\n", |r| r.section("s", |s| s.int("a", rule())));
        assert_eq!((v, errs), (10, vec![]));
    }

    #[test]
    fn int_rejects_negative_and_huge_as_range_errors() {
        let text = "[s]\na = -1\nb = 99999999999999999999999999999999999999999\n";
        let (_, errs) = run(text, |r| {
            r.section("s", |s| (s.int("a", rule()), s.int("b", rule())))
        });
        assert_eq!(
            errs,
            [
                "t.toml:2:5: error: `a` in [s] must be from 1 to 100 ms, found -1",
                "t.toml:2:5: hint: the default is 10 ms; delete the line to use it",
                "t.toml:3:5: error: `b` in [s] must be from 1 to 100 ms, found 99999999999999999999999999999999999999999",
                "t.toml:3:5: hint: the default is 10 ms; delete the line to use it",
            ]
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_how_to_fix() {
        let text = "[s]\na = \"5\"\nb = 1.5\nc = 7\nd = true\n";
        let (_, errs) = run(text, |r| {
            r.section("s", |s| {
                s.int("a", rule());
                s.int("b", rule());
                s.optional::<String>("c");
                s.optional::<f64>("d");
            })
        });
        assert_eq!(
            errs,
            [
                "t.toml:2:5: error: wrong type for `a` in [s]: expected an integer (ms), found a string",
                "t.toml:2:5: hint: remove the quotes: `a = 5`",
                "t.toml:3:5: error: wrong type for `b` in [s]: expected an integer (ms), found a decimal number",
                "t.toml:3:5: hint: use a whole number without a decimal point, e.g. `b = 10`",
                "t.toml:4:5: error: wrong type for `c` in [s]: expected a string, found an integer",
                "t.toml:4:5: hint: put text in double quotes: `c = \"7\"`",
                "t.toml:5:5: error: wrong type for `d` in [s]: expected a number, found true/false",
                "t.toml:5:5: hint: write it like this: `d = 1.5`",
            ]
        );
    }

    #[test]
    fn numbers_accept_integers() {
        let (v, errs) = run("[s]\nrate = 3\n", |r| {
            r.section("s", |s| s.optional::<f64>("rate").map(Spanned::into_inner))
        });
        assert_eq!((v, errs), (Some(3.0), vec![]));
    }

    #[test]
    fn required_points_at_the_section_header() {
        let (v, errs) = run("\n[[g]]\nx = 1\n", |r| {
            r.each_table("g", |g| {
                g.int("x", rule());
                g.required::<String>("name", "name = \"a\"")
            })
        });
        assert!(v.is_empty());
        assert_eq!(
            errs,
            [
                "t.toml:2:1: error: missing required key `name` in [[g]]",
                "t.toml:2:1: hint: add a line such as `name = \"a\"` to this section",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_sections_get_the_closest_known_name() {
        let text = "stray = 1\n[s]\ncommit_m = 1\nzzz = 2\n[s.sub]\n[sx]\n";
        let (_, errs) = run(text, |r| {
            r.section("s", |s| s.int("commit_ms", rule()));
        });
        assert_eq!(
            errs,
            [
                "t.toml:1:1: error: key `stray` is outside any section",
                "t.toml:1:1: hint: put it under the header of its section; known sections: [s]",
                "t.toml:3:1: error: unknown key `commit_m` in [s]",
                "t.toml:3:1: hint: did you mean `commit_ms`? known keys: `commit_ms`",
                "t.toml:4:1: error: unknown key `zzz` in [s]",
                "t.toml:4:1: hint: known keys: `commit_ms`",
                "t.toml:5:4: error: unknown section [s.sub]",
                "t.toml:5:4: hint: known keys: `commit_ms`",
                "t.toml:6:2: error: unknown section [sx]",
                "t.toml:6:2: hint: did you mean [s]? known sections: [s]",
            ]
        );
    }

    #[test]
    fn a_single_table_where_a_list_is_expected_is_still_read() {
        let (names, errs) = run("[g]\nname = \"a\"\n", |r| {
            r.each_table("g", |g| g.required::<String>("name", "name = \"a\""))
        });
        assert_eq!(names.len(), 1);
        assert_eq!(
            errs,
            [
                "t.toml:1:1: error: [g] is a single section, but [[g]] is a list",
                "t.toml:1:1: hint: write the header with double brackets: [[g]], once for each entry",
            ]
        );
    }

    #[test]
    fn a_list_where_one_section_is_expected_is_an_error() {
        let (_, errs) = run("[[s]]\n", |r| r.section("s", |_| ()));
        assert_eq!(
            errs,
            [
                "t.toml:1:1: error: [[s]] is a list of sections, but there is only one [s]",
                "t.toml:1:1: hint: write the header with single brackets: [s]",
            ]
        );
    }
}
