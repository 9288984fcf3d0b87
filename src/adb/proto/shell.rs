//! Shell services (§4): the service strings, the shell v2 framing inside a
//! stream, and a collector that turns a stream's bytes into stdout, stderr
//! and an exit status.
//!
//! `shell,v2,raw:CMD` is the default: framed, stdout and stderr apart, an
//! exit status, no PTY. A TV without `shell_v2` (≤ 6.0) gets `shell:CMD`,
//! which merges the output and has no status, so the command is wrapped to
//! print a marker and `$?` at the end, which the collector strips again.

use std::borrow::Cow;

use super::decode::{Decoded, fill, le_u32};
use super::message::MAX_PAYLOAD;

/// `shell,v2,raw:CMD`: framed output, exit status, no PTY.
pub fn shell_v2_service(command: &str) -> String {
    format!("shell,v2,raw:{command}")
}

/// `shell:CMD`: the only shell of ≤ 6.0 TVs; output merged, no status.
pub fn shell_service(command: &str) -> String {
    format!("shell:{command}")
}

/// `exec:CMD`: raw and binary-safe, no framing (`exec:screencap -p`).
pub fn exec_service(command: &str) -> String {
    format!("exec:{command}")
}

/// One argument for `sh -c`: left alone when it is plainly safe, else in
/// single quotes with each `'` written as `'\''`, as adb quotes argv.
pub fn quote(arg: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        Cow::Borrowed(arg)
    } else {
        Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
    }
}

/// A command line from arguments, each quoted for the TV's shell.
pub fn command_line<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let quoted: Vec<String> = args
        .into_iter()
        .map(|a| quote(a.as_ref()).into_owned())
        .collect();
    quoted.join(" ")
}

/// Printed after a legacy `shell:` command, followed by its `$?`.
pub const EXIT_MARKER: &str = "SITELINK_EXIT_STATUS=";

/// How a stream's bytes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShellMode {
    /// Shell v2 packets.
    V2,
    /// `shell:` with the exit marker; PTY output on ≤ 6.0, so `\r\n` → `\n`.
    Legacy,
    /// `exec:`: the bytes as they are.
    Raw,
}

/// A command ready to open, with the mode to read its stream in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellRequest {
    pub command: String,
    pub mode: ShellMode,
    /// The service string for `Connection::open`.
    pub service: String,
}

impl ShellRequest {
    /// `shell,v2,raw:` when both sides list `shell_v2`, else `shell:` with
    /// the exit marker.
    pub fn new(command: &str, shell_v2: bool) -> ShellRequest {
        if shell_v2 {
            ShellRequest {
                command: command.to_string(),
                mode: ShellMode::V2,
                service: shell_v2_service(command),
            }
        } else {
            ShellRequest::legacy(command)
        }
    }

    /// `shell:` with the marker. The command runs in a subshell so that an
    /// `exit` inside it still lets the marker print; the newline ends a
    /// trailing `#` comment that would swallow the rest.
    pub fn legacy(command: &str) -> ShellRequest {
        ShellRequest {
            command: command.to_string(),
            mode: ShellMode::Legacy,
            service: shell_service(&format!("( {command}\n); echo \"{EXIT_MARKER}$?\"")),
        }
    }

    /// `exec:CMD`, read raw.
    pub fn exec(command: &str) -> ShellRequest {
        ShellRequest {
            command: command.to_string(),
            mode: ShellMode::Raw,
            service: exec_service(command),
        }
    }

    /// The same command as `shell:`, for a TV that refused the v2 OPEN (the
    /// caller remembers that for the TV).
    pub fn fallback(&self) -> Option<ShellRequest> {
        (self.mode == ShellMode::V2).then(|| ShellRequest::legacy(&self.command))
    }

    /// What to write as soon as the stream is open: v2 closes stdin at once
    /// when there is no input, as adb does, so commands reading stdin end.
    pub fn initial_input(&self) -> Vec<u8> {
        match self.mode {
            ShellMode::V2 => ShellPacket::CloseStdin.encode(),
            ShellMode::Legacy | ShellMode::Raw => Vec::new(),
        }
    }

    /// A collector for this request's stream.
    pub fn collector(&self, limit: usize) -> ShellCollector {
        ShellCollector::new(self.mode, limit)
    }
}

/// `rowsxcols,xpixelsxypixels`, as the window-size packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u32,
    pub cols: u32,
    pub x_pixels: u32,
    pub y_pixels: u32,
}

impl WindowSize {
    fn parse(data: &[u8]) -> Option<WindowSize> {
        let text = std::str::from_utf8(data).ok()?;
        let (chars, pixels) = text.split_once(',')?;
        let pair = |s: &str| -> Option<(u32, u32)> {
            let (a, b) = s.split_once('x')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let (rows, cols) = pair(chars)?;
        let (x_pixels, y_pixels) = pair(pixels)?;
        Some(WindowSize {
            rows,
            cols,
            x_pixels,
            y_pixels,
        })
    }
}

/// One shell v2 packet: `id: u8`, `len: u32 LE`, `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellPacket {
    /// 0, host → device.
    Stdin(Vec<u8>),
    /// 1, device → host.
    Stdout(Vec<u8>),
    /// 2, device → host.
    Stderr(Vec<u8>),
    /// 3, device → host: 0–255; 128 + signal if killed; 126 if the spawn
    /// failed (with `error: …` on stderr).
    Exit(u8),
    /// 4, host → device, empty: no more input.
    CloseStdin,
    /// 5, host → device.
    WindowSize(WindowSize),
}

/// Bytes before a packet's data.
pub const SHELL_HEADER_LEN: usize = 5;

impl ShellPacket {
    pub fn id(&self) -> u8 {
        match self {
            ShellPacket::Stdin(_) => 0,
            ShellPacket::Stdout(_) => 1,
            ShellPacket::Stderr(_) => 2,
            ShellPacket::Exit(_) => 3,
            ShellPacket::CloseStdin => 4,
            ShellPacket::WindowSize(_) => 5,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let window;
        let data: &[u8] = match self {
            ShellPacket::Stdin(d) | ShellPacket::Stdout(d) | ShellPacket::Stderr(d) => d,
            ShellPacket::Exit(code) => std::slice::from_ref(code),
            ShellPacket::CloseStdin => &[],
            ShellPacket::WindowSize(w) => {
                window = format!("{}x{},{}x{}", w.rows, w.cols, w.x_pixels, w.y_pixels);
                window.as_bytes()
            }
        };
        out.push(self.id());
        // Callers keep data far below 4 GiB (a WRTE holds at most 1 MiB).
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(data);
    }
}

/// Why stream bytes are not shell v2 packets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unknown shell v2 packet id {0}")]
    UnknownId(u8),
    #[error("shell v2 packet {id} announces {len} bytes, over the {max}-byte limit")]
    TooLong { id: u8, len: u32, max: u32 },
    #[error("shell v2 exit packet has {len} bytes instead of 1")]
    BadExit { len: u32 },
    #[error("shell v2 window size {0:?} is not rowsxcols,xpixelsxypixels")]
    BadWindowSize(String),
}

/// Reads shell v2 packets from stream bytes in any chunking (frames straddle
/// WRTEs); never panics, never buffers more than one packet.
#[derive(Clone, Debug)]
pub struct ShellDecoder {
    max_len: u32,
    header: Vec<u8>,
    data: Vec<u8>,
    failed: Option<ShellError>,
}

impl Default for ShellDecoder {
    fn default() -> Self {
        ShellDecoder::new(MAX_PAYLOAD)
    }
}

impl ShellDecoder {
    /// `max_len` bounds one packet's data (adbd's are far below 1 MiB).
    pub fn new(max_len: u32) -> ShellDecoder {
        ShellDecoder {
            max_len,
            header: Vec::with_capacity(SHELL_HEADER_LEN),
            data: Vec::new(),
            failed: None,
        }
    }

    pub fn decode(&mut self, input: &mut &[u8]) -> Decoded<ShellPacket, ShellError> {
        if let Some(e) = &self.failed {
            return Decoded::Invalid(e.clone());
        }
        match self.step(input) {
            Ok(Some(p)) => Decoded::Done(p),
            Ok(None) => Decoded::NeedMore,
            Err(e) => {
                self.failed = Some(e.clone());
                Decoded::Invalid(e)
            }
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<ShellPacket>, ShellError> {
        let fresh = self.header.len() < SHELL_HEADER_LEN;
        if !fill(&mut self.header, SHELL_HEADER_LEN, input) {
            return Ok(None);
        }
        let id = self.header.first().copied().unwrap_or_default();
        let len = le_u32(&self.header, 1);
        if fresh {
            // Checked once, before any data is buffered.
            if id > 5 {
                return Err(ShellError::UnknownId(id));
            }
            if len > self.max_len {
                return Err(ShellError::TooLong {
                    id,
                    len,
                    max: self.max_len,
                });
            }
            if id == 3 && len != 1 {
                return Err(ShellError::BadExit { len });
            }
            self.data = Vec::with_capacity(len as usize);
        }
        if !fill(&mut self.data, len as usize, input) {
            return Ok(None);
        }
        self.header.clear();
        let data = std::mem::take(&mut self.data);
        Ok(Some(match id {
            0 => ShellPacket::Stdin(data),
            1 => ShellPacket::Stdout(data),
            2 => ShellPacket::Stderr(data),
            3 => ShellPacket::Exit(data.first().copied().unwrap_or_default()),
            // adbd ignores the data of close-stdin; so do we.
            4 => ShellPacket::CloseStdin,
            _ => ShellPacket::WindowSize(WindowSize::parse(&data).ok_or_else(|| {
                ShellError::BadWindowSize(String::from_utf8_lossy(&data).into_owned())
            })?),
        }))
    }
}

/// What a command left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellOutput {
    /// All output for `shell:` (merged) and `exec:`.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None when the stream ended without one (killed, cut, or `exec:`).
    pub exit: Option<u8>,
    /// Output beyond the collector's limit was dropped.
    pub truncated: bool,
}

/// Bytes kept from the end of legacy output so the marker is found even
/// when the output itself was cut at the limit.
const LEGACY_TAIL: usize = 64;

/// Gathers one command's stream: feed every [`Event::Data`] to
/// [`push`](ShellCollector::push), call [`finish`](ShellCollector::finish)
/// on [`Event::Closed`]. With v2 the device closes right after the exit
/// packet.
///
/// [`Event::Data`]: super::connection::Event::Data
/// [`Event::Closed`]: super::connection::Event::Closed
#[derive(Clone, Debug)]
pub struct ShellCollector {
    mode: ShellMode,
    decoder: ShellDecoder,
    out: ShellOutput,
    limit: usize,
    tail: Vec<u8>,
}

impl ShellCollector {
    /// `limit` caps stdout + stderr kept in memory (a chatty dumpsys can
    /// print megabytes).
    pub fn new(mode: ShellMode, limit: usize) -> ShellCollector {
        ShellCollector {
            mode,
            decoder: ShellDecoder::default(),
            out: ShellOutput::default(),
            limit,
            tail: Vec::new(),
        }
    }

    /// Stream bytes, in any chunking.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), ShellError> {
        match self.mode {
            ShellMode::V2 => loop {
                match self.decoder.decode(&mut data) {
                    Decoded::NeedMore => return Ok(()),
                    Decoded::Invalid(e) => return Err(e),
                    Decoded::Done(ShellPacket::Stdout(d)) => self.keep(&d, false),
                    Decoded::Done(ShellPacket::Stderr(d)) => self.keep(&d, true),
                    Decoded::Done(ShellPacket::Exit(code)) => self.out.exit = Some(code),
                    // Host-bound streams carry no input packets; ignore them.
                    Decoded::Done(_) => {}
                }
            },
            ShellMode::Legacy => {
                self.tail.extend_from_slice(data);
                let cut = self.tail.len().saturating_sub(LEGACY_TAIL);
                self.tail.drain(..cut);
                self.keep(data, false);
                Ok(())
            }
            ShellMode::Raw => {
                self.keep(data, false);
                Ok(())
            }
        }
    }

    fn keep(&mut self, data: &[u8], stderr: bool) {
        let used = self.out.stdout.len() + self.out.stderr.len();
        let room = self.limit.saturating_sub(used);
        let take = data.get(..room.min(data.len())).unwrap_or_default();
        if take.len() < data.len() {
            self.out.truncated = true;
        }
        let sink = if stderr {
            &mut self.out.stderr
        } else {
            &mut self.out.stdout
        };
        sink.extend_from_slice(take);
    }

    /// True once a v2 exit packet has come.
    pub fn exited(&self) -> bool {
        self.out.exit.is_some()
    }

    /// The output once the stream is closed; for `shell:` the marker line is
    /// taken off and gives the exit status.
    pub fn finish(mut self) -> ShellOutput {
        if self.mode == ShellMode::Legacy {
            let mut text = crlf_to_lf(&self.out.stdout);
            if self.out.truncated {
                self.out.exit = marker_status(&crlf_to_lf(&self.tail)).map(|(_, code)| code);
            } else if let Some((at, code)) = marker_status(&text) {
                text.truncate(at);
                self.out.exit = Some(code);
            }
            self.out.stdout = text;
        }
        self.out
    }
}

/// The last marker in `text` followed by a status and the end of the
/// output: where it starts and the status.
fn marker_status(text: &[u8]) -> Option<(usize, u8)> {
    let marker = EXIT_MARKER.as_bytes();
    let at = text.windows(marker.len()).rposition(|w| w == marker)?;
    let rest = text.get(at + marker.len()..)?;
    let digits = rest.strip_suffix(b"\n").unwrap_or(rest);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((at, code))
}

fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut bytes = data.iter().peekable();
    while let Some(&b) = bytes.next() {
        if b == b'\r' && bytes.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut ShellDecoder, mut input: &[u8]) -> Vec<ShellPacket> {
        let mut out = Vec::new();
        loop {
            match dec.decode(&mut input) {
                Decoded::Done(p) => out.push(p),
                Decoded::NeedMore => return out,
                Decoded::Invalid(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn packet_bytes() {
        assert_eq!(
            ShellPacket::Stdout(b"hi\n".to_vec()).encode(),
            [1, 3, 0, 0, 0, b'h', b'i', b'\n']
        );
        assert_eq!(ShellPacket::Exit(3).encode(), [3, 1, 0, 0, 0, 3]);
        assert_eq!(ShellPacket::CloseStdin.encode(), [4, 0, 0, 0, 0]);
        assert_eq!(ShellPacket::Stdin(vec![]).encode(), [0, 0, 0, 0, 0]);
        let w = ShellPacket::WindowSize(WindowSize {
            rows: 24,
            cols: 80,
            x_pixels: 0,
            y_pixels: 0,
        });
        assert_eq!(w.encode(), b"\x05\x09\x00\x00\x0024x80,0x0");
    }

    #[test]
    fn frames_straddle_writes() {
        let mut bytes = ShellPacket::Stdout(b"hello".to_vec()).encode();
        bytes.extend(ShellPacket::Stderr(b"oops".to_vec()).encode());
        bytes.extend(ShellPacket::Exit(0).encode());
        let mut dec = ShellDecoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            got.extend(decode_all(&mut dec, chunk));
        }
        assert_eq!(
            got,
            [
                ShellPacket::Stdout(b"hello".to_vec()),
                ShellPacket::Stderr(b"oops".to_vec()),
                ShellPacket::Exit(0)
            ]
        );
    }

    #[test]
    fn bad_packets_are_typed_errors() {
        let mut dec = ShellDecoder::default();
        assert_eq!(
            dec.decode(&mut &[6u8, 0, 0, 0, 0][..]),
            Decoded::Invalid(ShellError::UnknownId(6))
        );
        // Sticky.
        assert_eq!(
            dec.decode(&mut &ShellPacket::Exit(0).encode()[..]),
            Decoded::Invalid(ShellError::UnknownId(6))
        );
        let mut dec = ShellDecoder::new(10);
        assert_eq!(
            dec.decode(&mut &[1u8, 11, 0, 0, 0][..]),
            Decoded::Invalid(ShellError::TooLong {
                id: 1,
                len: 11,
                max: 10
            })
        );
        let mut dec = ShellDecoder::default();
        assert_eq!(
            dec.decode(&mut &[3u8, 2, 0, 0, 0, 1, 1][..]),
            Decoded::Invalid(ShellError::BadExit { len: 2 })
        );
        let mut dec = ShellDecoder::default();
        assert_eq!(
            dec.decode(&mut &b"\x05\x03\x00\x00\x0024x"[..]),
            Decoded::Invalid(ShellError::BadWindowSize("24x".into()))
        );
    }

    #[test]
    fn collector_v2_separates_streams_and_keeps_the_status() {
        let req = ShellRequest::new("ls /nope", true);
        assert_eq!(req.service, "shell,v2,raw:ls /nope");
        assert_eq!(req.initial_input(), [4, 0, 0, 0, 0]);
        let mut c = req.collector(1 << 20);
        let mut bytes = ShellPacket::Stderr(b"ls: /nope: No such file\n".to_vec()).encode();
        bytes.extend(ShellPacket::Exit(1).encode());
        c.push(&bytes[..7]).unwrap();
        assert!(!c.exited());
        c.push(&bytes[7..]).unwrap();
        assert!(c.exited());
        let out = c.finish();
        assert_eq!(out.stdout, b"");
        assert_eq!(out.stderr, b"ls: /nope: No such file\n");
        assert_eq!(out.exit, Some(1));
        assert!(!out.truncated);
    }

    #[test]
    fn legacy_request_and_marker() {
        let req = ShellRequest::new("getprop ro.serialno", false);
        assert_eq!(req.mode, ShellMode::Legacy);
        assert_eq!(
            req.service,
            "shell:( getprop ro.serialno\n); echo \"SITELINK_EXIT_STATUS=$?\""
        );
        assert!(req.initial_input().is_empty());
        let mut c = req.collector(1 << 20);
        // PTY output on ≤ 6.0: CRLF, and the marker split over two WRTEs.
        c.push(b"ABC123\r\nSITELINK_EXIT").unwrap();
        c.push(b"_STATUS=0\r\n").unwrap();
        let out = c.finish();
        assert_eq!(out.stdout, b"ABC123\n");
        assert_eq!(out.exit, Some(0));
        // Output without a final newline still gets its marker off.
        let mut c = req.collector(1 << 20);
        c.push(b"no newlineSITELINK_EXIT_STATUS=130\n").unwrap();
        let out = c.finish();
        assert_eq!(out.stdout, b"no newline");
        assert_eq!(out.exit, Some(130));
        // Killed before the echo: no status, output kept.
        let mut c = req.collector(1 << 20);
        c.push(b"partial").unwrap();
        assert_eq!(c.finish().exit, None);
    }

    #[test]
    fn legacy_marker_survives_truncation() {
        let mut c = ShellCollector::new(ShellMode::Legacy, 8);
        c.push(b"0123456789abcdef\n").unwrap();
        c.push(b"SITELINK_EXIT_STATUS=2\n").unwrap();
        let out = c.finish();
        assert!(out.truncated);
        assert_eq!(out.stdout, b"01234567");
        assert_eq!(out.exit, Some(2));
    }

    #[test]
    fn the_limit_covers_both_streams() {
        let mut c = ShellCollector::new(ShellMode::V2, 5);
        let mut bytes = ShellPacket::Stdout(b"abc".to_vec()).encode();
        bytes.extend(ShellPacket::Stderr(b"defg".to_vec()).encode());
        bytes.extend(ShellPacket::Exit(0).encode());
        c.push(&bytes).unwrap();
        let out = c.finish();
        assert_eq!(out.stdout, b"abc");
        assert_eq!(out.stderr, b"de");
        assert!(out.truncated);
        assert_eq!(out.exit, Some(0));
    }

    #[test]
    fn fallback_and_exec() {
        let v2 = ShellRequest::new("id", true);
        let legacy = v2.fallback().unwrap();
        assert_eq!(legacy.mode, ShellMode::Legacy);
        assert_eq!(legacy.command, "id");
        assert!(legacy.fallback().is_none());
        let exec = ShellRequest::exec("screencap -p");
        assert_eq!(exec.service, "exec:screencap -p");
        let mut c = exec.collector(16);
        c.push(&[0x89, b'P', b'N', b'G', b'\r', b'\n']).unwrap();
        let out = c.finish();
        // Binary-safe: CRLF stays.
        assert_eq!(out.stdout, [0x89, b'P', b'N', b'G', b'\r', b'\n']);
        assert_eq!(out.exit, None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("-p"), "-p");
        assert_eq!(quote("/sdcard/s.png"), "/sdcard/s.png");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(
            command_line(["input", "keyevent", "26"]),
            "input keyevent 26"
        );
        assert_eq!(
            command_line(["am", "start", "-d", "content://x/y z;"]),
            "am start -d 'content://x/y z;'"
        );
    }
}
