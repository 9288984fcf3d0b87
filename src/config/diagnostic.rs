//! Config errors as a technician sees them: `PATH:LINE:COL: error: ...`
//! followed by a `hint:` line, one diagnostic per problem found.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based; `None` for problems with the whole file.
    pub line: Option<usize>,
    /// 1-based, in characters (not bytes); `None` for problems with the whole file.
    pub col: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem with the file as a whole (missing, unreadable, empty).
    pub(crate) fn whole_file(path: &Path, message: String, hint: String) -> Self {
        Diagnostic {
            path: path.to_path_buf(),
            line: None,
            col: None,
            message,
            hint: Some(hint),
        }
    }

    fn location(&self) -> String {
        match (self.line, self.col) {
            (Some(line), Some(col)) => format!("{}:{line}:{col}", self.path.display()),
            _ => self.path.display().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.location();
        write!(f, "{at}: error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n{at}: hint: {hint}")?;
        }
        Ok(())
    }
}

/// Everything wrong with one config file. Display prints every diagnostic,
/// one line each (plus its hint line), without a trailing newline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ConfigError {
    /// In file order; never empty.
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}

impl From<Diagnostic> for ConfigError {
    fn from(diagnostic: Diagnostic) -> Self {
        ConfigError {
            diagnostics: vec![diagnostic],
        }
    }
}

/// Collects diagnostics while one file is read, keyed by byte offset so they
/// come out in file order whichever section found them.
pub(crate) struct Diagnostics<'i> {
    path: &'i Path,
    text: &'i str,
    found: Vec<(usize, Diagnostic)>,
}

impl<'i> Diagnostics<'i> {
    pub(crate) fn new(path: &'i Path, text: &'i str) -> Self {
        Diagnostics {
            path,
            text,
            found: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: String, hint: String) {
        let (line, col) = position(self.text, span.start);
        self.found.push((
            span.start,
            Diagnostic {
                path: self.path.to_path_buf(),
                line: Some(line),
                col: Some(col),
                message,
                hint: Some(hint),
            },
        ));
    }

    /// `PATH:LINE:COL` of a byte offset, for hints that point elsewhere.
    pub(crate) fn locate(&self, offset: usize) -> String {
        let (line, col) = position(self.text, offset);
        format!("{}:{line}:{col}", self.path.display())
    }

    /// The source text of a span, to quote what the technician wrote.
    pub(crate) fn snippet(&self, span: Range<usize>) -> &'i str {
        self.text.get(span).unwrap_or("")
    }

    pub(crate) fn finish(mut self) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            return Ok(());
        }
        // Stable, so two problems at one spot keep the order they were found in.
        self.found.sort_by_key(|(offset, _)| *offset);
        Err(ConfigError {
            diagnostics: self.found.into_iter().map(|(_, d)| d).collect(),
        })
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    // A byte-order mark is invisible in editors, so it is not a column.
    let col = before[line_start..]
        .chars()
        .filter(|&c| c != '\u{feff}')
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let text = "a = 1\nnäme = 2\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 6), (2, 1));
        // "ä" is two bytes but one column.
        let eq = text.find("= 2").expect("test text");
        assert_eq!(position(text, eq), (2, 6));
        assert_eq!(position("\u{feff}[agent]", 3), (1, 1));
    }

    #[test]
    fn display_puts_hint_on_its_own_line() {
        let d = Diagnostic {
            path: PathBuf::from("x.toml"),
            line: Some(3),
            col: Some(7),
            message: "bad".into(),
            hint: Some("fix it".into()),
        };
        let whole = Diagnostic::whole_file(Path::new("x.toml"), "gone".into(), "make it".into());
        let err = ConfigError {
            diagnostics: vec![d, whole],
        };
        assert_eq!(
            err.to_string(),
            "x.toml:3:7: error: bad\nx.toml:3:7: hint: fix it\nx.toml: error: gone\nx.toml: hint: make it"
        );
    }

    #[test]
    fn diagnostics_come_out_in_file_order() {
        let text = "a\nb\nc\n";
        let mut d = Diagnostics::new(Path::new("f"), text);
        d.error(4..5, "third".into(), "h".into());
        d.error(0..1, "first".into(), "h".into());
        let err = d.finish().expect_err("two errors");
        let lines: Vec<_> = err.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [Some(1), Some(3)]);
    }
}
