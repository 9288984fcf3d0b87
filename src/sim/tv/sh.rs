//! A tiny `sh -c`: enough of the grammar for what agents and technicians
//! send: words with `'…'`, `"…"` and `\` quoting, `$?`, globs on absolute
//! paths, `;`/newline, `&&`, `||`, `|`, `( … )` subshells, `#` comments and
//! the redirections `>`, `>>`, `<`, `N>`, `N>&M`. No variables beyond a
//! fixed environment, no `$( … )`, no control flow: those are a syntax
//! error, as on a shell that lacks them.
//!
//! A command line runs at once against the [`TvModel`]; what it prints
//! comes back as [`Chunk`]s in order, `sleep` as a pause between them, so
//! the connection can pace the output without the shell being async.

use std::time::{Duration, Instant};

use super::model::TvModel;

/// The longest `sleep` obeyed: a simulator must not hold a stream forever.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Output of a command line, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
    Sleep(Duration),
}

/// What a command line did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finished {
    pub chunks: Vec<Chunk>,
    pub status: u8,
}

impl Finished {
    /// All stdout, for tests.
    pub fn stdout(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Out(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// All stderr, for tests.
    pub fn stderr(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Err(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

/// Runs `line` as `sh -c` would on the TV.
pub fn run(tv: &mut TvModel, line: &str, now: Instant) -> Finished {
    let node = match tokenize(line).and_then(|t| Parser { tokens: t, at: 0 }.script()) {
        Ok(node) => node,
        Err(e) => {
            return Finished {
                chunks: vec![Chunk::Err(
                    format!("/system/bin/sh: syntax error: {e}\n").into_bytes(),
                )],
                status: 1,
            };
        }
    };
    let mut sh = Shell { tv, now, status: 0 };
    let r = sh.node(&node, &[]);
    Finished {
        chunks: r.chunks,
        status: r.status,
    }
}

// --- words and tokens --------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Text, and whether it was quoted (quoted text is never globbed).
    Lit(String, bool),
    /// `$?`.
    Status,
    /// `$NAME`, expanded from the fixed environment.
    Var(String),
}

type Word = Vec<Part>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RedirKind {
    /// `>`: truncate.
    Write,
    /// `>>`.
    Append,
    /// `<`.
    Read,
    /// `N>&M`.
    Dup(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(Word),
    /// `;`, newline or `&` (run in the foreground: there are no jobs).
    Sep,
    And,
    Or,
    Pipe,
    Open,
    Close,
    Redir(u8, RedirKind),
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word: Word = Vec::new();
    let mut chars = line.chars().peekable();
    let flush = |word: &mut Word, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word)));
        }
    };
    let lit = |word: &mut Word, c: char, quoted: bool| match word.last_mut() {
        Some(Part::Lit(s, q)) if *q == quoted => s.push(c),
        _ => word.push(Part::Lit(c.to_string(), quoted)),
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut word, &mut tokens),
            '\n' | ';' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Sep);
            }
            '#' if word.is_empty() => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '&' | '|' => {
                flush(&mut word, &mut tokens);
                let double = chars.next_if_eq(&c).is_some();
                tokens.push(match (c, double) {
                    ('&', true) => Token::And,
                    ('&', false) => Token::Sep,
                    ('|', true) => Token::Or,
                    _ => Token::Pipe,
                });
            }
            '(' | ')' => {
                flush(&mut word, &mut tokens);
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '>' | '<' => {
                // A lone digit right before is the descriptor: `2>`.
                let fd = match word.as_slice() {
                    [Part::Lit(d, false)]
                        if d.len() == 1 && d.chars().all(|c| c.is_ascii_digit()) =>
                    {
                        let fd = d.parse().unwrap_or(1);
                        word.clear();
                        fd
                    }
                    _ => {
                        flush(&mut word, &mut tokens);
                        u8::from(c == '>')
                    }
                };
                let kind = if c == '<' {
                    RedirKind::Read
                } else if chars.next_if_eq(&'>').is_some() {
                    RedirKind::Append
                } else if chars.next_if_eq(&'&').is_some() {
                    let to = chars
                        .next()
                        .and_then(|d| d.to_digit(10))
                        .ok_or("bad fd after '>&'")?;
                    RedirKind::Dup(to as u8)
                } else {
                    RedirKind::Write
                };
                tokens.push(Token::Redir(fd, kind));
            }
            '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
                word.push(Part::Lit(s, true));
            }
            '"' => {
                // An empty "" is still a word.
                word.push(Part::Lit(String::new(), true));
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => lit(&mut word, e, true),
                            Some('\n') => {}
                            Some(other) => {
                                lit(&mut word, '\\', true);
                                lit(&mut word, other, true);
                            }
                            None => return Err("unterminated \"".into()),
                        },
                        Some('$') => dollar(&mut chars, &mut word, true)?,
                        Some('`') => return Err("'`' unexpected".into()),
                        Some(c) => lit(&mut word, c, true),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(e) => lit(&mut word, e, true),
            },
            '$' => dollar(&mut chars, &mut word, false)?,
            '`' => return Err("'`' unexpected".into()),
            c => lit(&mut word, c, false),
        }
    }
    flush(&mut word, &mut tokens);
    Ok(tokens)
}

/// After a `$`: `$?`, `$NAME`, `${NAME}`; `$(` is not simulated.
fn dollar(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Word,
    quoted: bool,
) -> Result<(), String> {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match chars.peek().copied() {
        Some('?') => {
            chars.next();
            word.push(Part::Status);
        }
        Some('(') => return Err("'$(' unexpected: command substitution is not simulated".into()),
        Some('{') => {
            chars.next();
            let name: String = std::iter::from_fn(|| chars.next_if(is_name)).collect();
            if chars.next() != Some('}') {
                return Err("bad substitution".into());
            }
            word.push(if name == "?" {
                Part::Status
            } else {
                Part::Var(name)
            });
        }
        Some(c) if is_name(&c) => {
            let name: String = std::iter::from_fn(|| chars.next_if(is_name)).collect();
            word.push(Part::Var(name));
        }
        // A `$` before anything else is itself.
        _ => word.push(Part::Lit("$".into(), quoted)),
    }
    Ok(())
}

// --- grammar -----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Redir {
    fd: u8,
    kind: RedirKind,
    target: Word,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Simple {
        words: Vec<Word>,
        redirs: Vec<Redir>,
    },
    Subshell {
        body: Box<Node>,
        redirs: Vec<Redir>,
    },
    Pipeline(Vec<Node>),
    /// First, then each (is `&&`, next).
    AndOr(Box<Node>, Vec<(bool, Node)>),
    List(Vec<Node>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn script(mut self) -> Result<Node, String> {
        let list = self.list()?;
        match self.peek() {
            None => Ok(list),
            Some(t) => Err(format!("{} unexpected", describe(t))),
        }
    }

    /// and-or lists separated (and maybe ended) by separators.
    fn list(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        loop {
            while self.peek() == Some(&Token::Sep) {
                self.at += 1;
            }
            match self.peek() {
                None | Some(Token::Close) => break,
                _ => items.push(self.and_or()?),
            }
            match self.peek() {
                Some(Token::Sep) => {}
                _ => break,
            }
        }
        Ok(Node::List(items))
    }

    fn and_or(&mut self) -> Result<Node, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        while let Some(op @ (Token::And | Token::Or)) = self.peek() {
            let and = *op == Token::And;
            self.at += 1;
            // A newline may follow the operator.
            while self.peek() == Some(&Token::Sep) {
                self.at += 1;
            }
            rest.push((and, self.pipeline()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Node::AndOr(Box::new(first), rest)
        })
    }

    fn pipeline(&mut self) -> Result<Node, String> {
        let mut parts = vec![self.command()?];
        while self.peek() == Some(&Token::Pipe) {
            self.at += 1;
            parts.push(self.command()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Node::Pipeline(parts)
        })
    }

    fn redir(&mut self, redirs: &mut Vec<Redir>) -> Result<bool, String> {
        let Some(&Token::Redir(fd, kind)) = self.peek() else {
            return Ok(false);
        };
        self.at += 1;
        let target = match kind {
            RedirKind::Dup(_) => Vec::new(),
            _ => match self.tokens.get(self.at) {
                Some(Token::Word(w)) => {
                    self.at += 1;
                    w.clone()
                }
                other => {
                    return Err(format!(
                        "{} unexpected after redirection",
                        other.map_or("end of input", describe)
                    ));
                }
            },
        };
        redirs.push(Redir { fd, kind, target });
        Ok(true)
    }

    fn command(&mut self) -> Result<Node, String> {
        let mut redirs = Vec::new();
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let body = self.list()?;
            if self.peek() != Some(&Token::Close) {
                return Err("missing ')'".into());
            }
            self.at += 1;
            while self.redir(&mut redirs)? {}
            return Ok(Node::Subshell {
                body: Box::new(body),
                redirs,
            });
        }
        let mut words = Vec::new();
        loop {
            if self.redir(&mut redirs)? {
                continue;
            }
            match self.peek() {
                Some(Token::Word(w)) => {
                    words.push(w.clone());
                    self.at += 1;
                }
                _ => break,
            }
        }
        if words.is_empty() && redirs.is_empty() {
            return Err(match self.peek() {
                Some(t) => format!("{} unexpected", describe(t)),
                None => "unexpected end of input".into(),
            });
        }
        Ok(Node::Simple { words, redirs })
    }
}

fn describe(t: &Token) -> &'static str {
    match t {
        Token::Word(_) => "word",
        Token::Sep => "';'",
        Token::And => "'&&'",
        Token::Or => "'||'",
        Token::Pipe => "'|'",
        Token::Open => "'('",
        Token::Close => "')'",
        Token::Redir(..) => "redirection",
    }
}

// --- running -----------------------------------------------------------------

/// The shell user's environment (what `$NAME` expands to).
const ENV: [(&str, &str); 5] = [
    ("HOME", "/"),
    (
        "PATH",
        "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin:/odm/bin:/vendor/bin",
    ),
    ("SHELL", "/system/bin/sh"),
    ("USER", "shell"),
    ("TMPDIR", "/data/local/tmp"),
];

/// Output and status of one node; `exit` unwinds to the nearest subshell.
#[derive(Default)]
pub(super) struct Ran {
    pub chunks: Vec<Chunk>,
    pub status: u8,
    exit: bool,
}

impl Ran {
    pub fn status(status: u8) -> Ran {
        Ran {
            status,
            ..Ran::default()
        }
    }

    pub fn out(&mut self, bytes: impl Into<Vec<u8>>) {
        self.chunks.push(Chunk::Out(bytes.into()));
    }

    pub fn err(&mut self, bytes: impl Into<Vec<u8>>) {
        self.chunks.push(Chunk::Err(bytes.into()));
    }

    pub fn sleep(&mut self, d: Duration) {
        self.chunks.push(Chunk::Sleep(d));
    }

    /// `exit`: the rest of the (sub)shell is skipped.
    pub fn exiting(mut self) -> Ran {
        self.exit = true;
        self
    }
}

pub(super) struct Shell<'a> {
    pub tv: &'a mut TvModel,
    pub now: Instant,
    status: u8,
}

impl Shell<'_> {
    /// `$?`.
    pub fn last_status(&self) -> u8 {
        self.status
    }

    fn expand(&self, word: &Word) -> Vec<String> {
        let mut text = String::new();
        let mut globbed = false;
        for part in word {
            match part {
                Part::Lit(s, quoted) => {
                    globbed |= !quoted && s.contains(['*', '?']);
                    text.push_str(s);
                }
                Part::Status => text.push_str(&self.status.to_string()),
                Part::Var(name) => {
                    if let Some((_, v)) = ENV.iter().find(|(k, _)| k == name) {
                        text.push_str(v);
                    }
                }
            }
        }
        if globbed && text.starts_with('/') {
            let matches = super::fs::glob(&text, self.tv.all_paths().iter().map(String::as_str));
            if !matches.is_empty() {
                return matches;
            }
        }
        // An unquoted expansion that came out empty is no word at all.
        let all_vars = word.iter().all(|p| matches!(p, Part::Var(_)));
        if text.is_empty() && all_vars {
            return Vec::new();
        }
        vec![text]
    }

    fn node(&mut self, node: &Node, stdin: &[u8]) -> Ran {
        let r = match node {
            Node::List(items) => {
                let mut all = Ran::status(self.status);
                for item in items {
                    let r = self.node(item, stdin);
                    all.chunks.extend(r.chunks);
                    all.status = r.status;
                    self.status = r.status;
                    if r.exit {
                        all.exit = true;
                        break;
                    }
                }
                all
            }
            Node::AndOr(first, rest) => {
                let mut all = self.node(first, stdin);
                self.status = all.status;
                for (and, next) in rest {
                    if all.exit {
                        break;
                    }
                    if (all.status == 0) == *and {
                        let r = self.node(next, stdin);
                        all.chunks.extend(r.chunks);
                        all.status = r.status;
                        all.exit = r.exit;
                        self.status = r.status;
                    }
                }
                all
            }
            Node::Pipeline(parts) => {
                let mut input = stdin.to_vec();
                let mut all = Ran::default();
                let last = parts.len() - 1;
                for (i, part) in parts.iter().enumerate() {
                    // Each stage is a subshell: `exit` ends only the stage.
                    let r = self.node(part, &input);
                    input.clear();
                    for c in r.chunks {
                        match c {
                            Chunk::Out(b) if i < last => input.extend(b),
                            other => all.chunks.push(other),
                        }
                    }
                    all.status = r.status;
                }
                all
            }
            Node::Subshell { body, redirs } => {
                let saved = self.status;
                let mut r = self.node(body, stdin);
                r.exit = false;
                self.status = saved;
                self.redirect(r, redirs)
            }
            Node::Simple { words, redirs } => {
                let argv: Vec<String> = words.iter().flat_map(|w| self.expand(w)).collect();
                let mut input = stdin.to_vec();
                for rd in redirs.iter().filter(|r| r.kind == RedirKind::Read) {
                    let path = self.expand(&rd.target).join(" ");
                    match self.read_input(&path) {
                        Ok(data) => input = data,
                        Err(e) => {
                            let mut r = Ran::status(1);
                            r.err(format!("/system/bin/sh: can't open '{path}': {e}\n"));
                            return r;
                        }
                    }
                }
                let r = if argv.is_empty() {
                    Ran::status(0)
                } else {
                    super::commands::run(self, &argv, &input)
                };
                self.redirect(r, redirs)
            }
        };
        self.status = r.status;
        r
    }

    fn read_input(&self, path: &str) -> Result<Vec<u8>, super::fs::FsError> {
        if path == "/dev/null" {
            return Ok(Vec::new());
        }
        self.tv.read(path, self.now).map(|f| f.data)
    }

    /// Applies output redirections in order, as the shell sets them up.
    fn redirect(&mut self, mut r: Ran, redirs: &[Redir]) -> Ran {
        // Where fd 1 and 2 go: the stream itself, nowhere, or a file buffer.
        #[derive(Clone, Copy, PartialEq)]
        enum To {
            Out,
            Err,
            Null,
            File(usize),
        }
        let mut to = [To::Out, To::Err];
        let mut files: Vec<(String, bool, Vec<u8>)> = Vec::new();
        for rd in redirs {
            let slot = match rd.fd {
                1 => 0,
                2 => 1,
                _ => continue,
            };
            to[slot] = match rd.kind {
                RedirKind::Read => continue,
                RedirKind::Dup(1) => to[0],
                RedirKind::Dup(2) => to[1],
                RedirKind::Dup(_) => continue,
                RedirKind::Write | RedirKind::Append => {
                    let path = self.expand(&rd.target).join(" ");
                    if path == "/dev/null" {
                        To::Null
                    } else {
                        files.push((path, rd.kind == RedirKind::Append, Vec::new()));
                        To::File(files.len() - 1)
                    }
                }
            };
        }
        if redirs.iter().all(|rd| rd.kind == RedirKind::Read) {
            return r;
        }
        let mut chunks = Vec::with_capacity(r.chunks.len());
        for c in r.chunks.drain(..) {
            let (dest, bytes) = match c {
                Chunk::Out(b) => (to[0], b),
                Chunk::Err(b) => (to[1], b),
                sleep => {
                    chunks.push(sleep);
                    continue;
                }
            };
            match dest {
                To::Out => chunks.push(Chunk::Out(bytes)),
                To::Err => chunks.push(Chunk::Err(bytes)),
                To::Null => {}
                To::File(i) => {
                    if let Some(f) = files.get_mut(i) {
                        f.2.extend(bytes);
                    }
                }
            }
        }
        r.chunks = chunks;
        for (path, append, data) in files {
            let mut content = if append {
                self.read_input(&path).unwrap_or_default()
            } else {
                Vec::new()
            };
            content.extend(data);
            let mtime = u32::try_from(super::model::wall_ms() / 1000).unwrap_or(0);
            if let Err(e) = self.tv.write(&path, content, 0o660, mtime) {
                r.err(format!("/system/bin/sh: can't create {path}: {e}\n"));
                r.status = 1;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Identity;
    use super::*;

    fn tv() -> TvModel {
        let id = Identity {
            manufacturer: "Sitelink".into(),
            model: "SIM TV 55".into(),
            name: "simtv_55".into(),
            device: "simtv".into(),
            serial: "SIMTV0001".into(),
            release: "11".into(),
            sdk: 30,
        };
        TvModel::new(id, 100, 3, Instant::now())
    }

    fn sh(tv: &mut TvModel, line: &str) -> (String, String, u8) {
        let f = run(tv, line, Instant::now());
        (
            String::from_utf8(f.stdout()).unwrap(),
            String::from_utf8(f.stderr()).unwrap(),
            f.status,
        )
    }

    #[test]
    fn quoting_and_words() {
        let mut t = tv();
        assert_eq!(sh(&mut t, "echo hi").0, "hi\n");
        assert_eq!(
            sh(&mut t, "echo 'a  b' \"c $? d\" e\\ f").0,
            "a  b c 0 d e f\n"
        );
        assert_eq!(sh(&mut t, "echo -n x; echo \"\"").0, "x\n");
        assert_eq!(sh(&mut t, "echo $HOME${USER} $NOPE end").0, "/shell end\n");
        assert_eq!(sh(&mut t, "echo a # a comment\necho b").0, "a\nb\n");
        assert_eq!(sh(&mut t, "echo '#not' x#y").0, "#not x#y\n");
        assert_eq!(sh(&mut t, "echo $ 5$").0, "$ 5$\n");
    }

    #[test]
    fn status_sequencing_and_exit() {
        let mut t = tv();
        assert_eq!(sh(&mut t, "false; echo $?").0, "1\n");
        assert_eq!(sh(&mut t, "true && echo y || echo n").0, "y\n");
        assert_eq!(sh(&mut t, "false && echo y || echo n").0, "n\n");
        assert_eq!(sh(&mut t, "false || false && echo y").0, "");
        assert_eq!(sh(&mut t, "exit 3").2, 3);
        assert_eq!(
            sh(&mut t, "echo a; exit 4; echo b"),
            ("a\n".into(), String::new(), 4)
        );
        assert_eq!(sh(&mut t, "true &&\n false").2, 1);
        assert_eq!(sh(&mut t, "").2, 0);
        assert_eq!(sh(&mut t, "exit 256").2, 0);
        // The legacy exit-status wrapper of adb::proto::ShellRequest.
        let wrapped = "( exit 7\n); echo \"MARK=$?\"";
        assert_eq!(sh(&mut t, wrapped), ("MARK=7\n".into(), String::new(), 0));
        assert_eq!(
            sh(&mut t, "(echo in; false) && echo no; echo $?").0,
            "in\n1\n"
        );
    }

    #[test]
    fn unknown_commands_and_syntax_errors() {
        let mut t = tv();
        assert_eq!(
            sh(&mut t, "frobnicate --now"),
            (
                String::new(),
                "/system/bin/sh: frobnicate: inaccessible or not found\n".into(),
                127
            )
        );
        let (_, err, status) = sh(&mut t, "echo 'open");
        assert_eq!(status, 1);
        assert!(
            err.starts_with("/system/bin/sh: syntax error: unterminated '"),
            "{err}"
        );
        for bad in [
            "echo $(id)",
            "echo `id`",
            "&& x",
            "(echo",
            "echo )",
            "echo >",
        ] {
            assert_eq!(sh(&mut t, bad).2, 1, "{bad}");
        }
    }

    #[test]
    fn pipes_redirections_and_globs() {
        let mut t = tv();
        assert_eq!(sh(&mut t, "echo one; echo two | grep t").0, "one\ntwo\n");
        assert_eq!(
            sh(&mut t, "getprop | grep -q ro.serialno && echo yes").0,
            "yes\n"
        );
        assert_eq!(sh(&mut t, "frob 2>/dev/null; echo $?").0, "127\n");
        assert_eq!(
            sh(&mut t, "frob 2>&1").0,
            "/system/bin/sh: frob: inaccessible or not found\n"
        );
        assert_eq!(sh(&mut t, "echo e >&2").1, "e\n");
        assert_eq!(
            sh(&mut t, "echo saved > /sdcard/x.txt; cat /sdcard/x.txt").0,
            "saved\n"
        );
        assert_eq!(
            sh(&mut t, "echo more >> /sdcard/x.txt; cat < /sdcard/x.txt").0,
            "saved\nmore\n"
        );
        let (_, err, status) = sh(&mut t, "echo x > /system/x");
        assert_eq!(
            (err.as_str(), status),
            (
                "/system/bin/sh: can't create /system/x: Read-only file system\n",
                1
            )
        );
        let temps = sh(&mut t, "cat /sys/class/thermal/thermal_zone*/temp").0;
        assert_eq!(temps.lines().count(), 2, "{temps}");
        assert!(temps.lines().all(|l| l.parse::<i64>().unwrap() > 20_000));
        // A quoted star is not a glob; an unmatched one stays as it is.
        assert!(
            sh(&mut t, "cat '/sys/class/thermal/thermal_zone*/temp'")
                .1
                .contains("zone*/temp: No such file")
        );
        assert!(sh(&mut t, "ls /nope/*").1.contains("/nope/*"));
    }

    #[test]
    fn sleep_is_a_pause_in_the_output() {
        let mut t = tv();
        let f = run(
            &mut t,
            "echo a; sleep 0.25; echo b; sleep 9999",
            Instant::now(),
        );
        assert_eq!(
            f.chunks,
            [
                Chunk::Out(b"a\n".to_vec()),
                Chunk::Sleep(Duration::from_millis(250)),
                Chunk::Out(b"b\n".to_vec()),
                Chunk::Sleep(MAX_SLEEP)
            ]
        );
        assert_eq!(sh(&mut t, "sleep x").2, 1);
    }
}
