//! The `sync:` file protocol (§4), inside one stream: requests are a 4-byte
//! id, a u32 LE length and that many bytes; replies have per-id layouts.
//! The host encodes requests and decodes replies; the simulator the reverse.
//!
//! A reply cannot be read without knowing the request: `DONE` ends a LIST
//! as a 20-byte entry but a RECV as 8 bytes. So the reply decoder is told
//! what it waits for ([`SyncExpect`]).
//!
//! Of `stat_v2`, the device side reads `STA2`/`LST2` and answers them with
//! [`stat_v2_reply`]: Google's adb sends them instead of `STAT` to a device
//! that lists the feature. `ls_v2` (`LIS2`) and `sendrecv_v2` are not
//! implemented; their ids decode as unknown.

use std::fmt;

use super::decode::{Decoded, fill, le_u32};

/// Longest path a request may carry (adbd's limit).
pub const MAX_PATH: usize = 1024;
/// Largest DATA chunk either side sends (`SYNC_DATA_MAX`).
pub const MAX_DATA: usize = 64 * 1024;
/// Bound on a FAIL message; adbd's are one line.
const MAX_FAIL: usize = 64 * 1024;
/// Bound on a DENT name (Linux names have ≤ 255 bytes).
const MAX_NAME: usize = MAX_PATH;

/// A four-letter sync id, shown as its letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncId(pub [u8; 4]);

impl SyncId {
    pub const STAT: SyncId = SyncId(*b"STAT");
    pub const STA2: SyncId = SyncId(*b"STA2");
    pub const LST2: SyncId = SyncId(*b"LST2");
    pub const LIST: SyncId = SyncId(*b"LIST");
    pub const DENT: SyncId = SyncId(*b"DENT");
    pub const RECV: SyncId = SyncId(*b"RECV");
    pub const SEND: SyncId = SyncId(*b"SEND");
    pub const DATA: SyncId = SyncId(*b"DATA");
    pub const DONE: SyncId = SyncId(*b"DONE");
    pub const OKAY: SyncId = SyncId(*b"OKAY");
    pub const FAIL: SyncId = SyncId(*b"FAIL");
    pub const QUIT: SyncId = SyncId(*b"QUIT");
}

impl fmt::Display for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(u8::is_ascii_graphic) {
            self.0
                .iter()
                .try_for_each(|&c| write!(f, "{}", char::from(c)))
        } else {
            write!(f, "{:02X?}", self.0)
        }
    }
}

impl fmt::Debug for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncId({self})")
    }
}

/// What went wrong in the sync protocol, or what the device refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("path of {len} bytes is over the {MAX_PATH}-byte sync limit")]
    PathTooLong { len: usize },
    #[error("path contains a NUL byte")]
    PathNul,
    #[error("path is not UTF-8")]
    PathNotUtf8,
    #[error("DATA chunk of {len} bytes is over {MAX_DATA}")]
    DataTooLong { len: usize },
    #[error("unknown sync id {0}")]
    UnknownId(SyncId),
    #[error("sync {id} announces {len} bytes, over the {max}-byte limit")]
    TooLong { id: SyncId, len: u32, max: usize },
    #[error("SEND target {0:?} is not \"path,mode\"")]
    BadSendTarget(String),
    #[error("sync reply {id} while waiting for the answer to {expect}")]
    UnexpectedReply { id: SyncId, expect: SyncExpect },
    /// The device's FAIL, e.g. `No such file or directory`.
    #[error("the TV says: {0}")]
    Fail(String),
    #[error("pulled file is over the {limit}-byte limit")]
    FileTooLarge { limit: usize },
}

/// A request, as the host sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    Stat(String),
    /// `STA2` (`stat_v2`): stat, following a final symlink.
    Stat2(String),
    /// `LST2` (`stat_v2`): lstat.
    Lstat2(String),
    List(String),
    Recv(String),
    /// `mode` is the file mode, e.g. `0o100644`; sent as `"path,33188"`.
    Send {
        path: String,
        mode: u32,
    },
    /// A piece of a SEND, ≤ 64 KiB.
    Data(Vec<u8>),
    /// Ends a SEND; the file gets this mtime (seconds since 1970).
    Done {
        mtime: u32,
    },
    Quit,
}

fn header(out: &mut Vec<u8>, id: SyncId, len: usize) {
    out.extend_from_slice(&id.0);
    // Every caller bounds len far below 4 GiB first.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn check_path(path: &str) -> Result<(), SyncError> {
    if path.len() > MAX_PATH {
        return Err(SyncError::PathTooLong { len: path.len() });
    }
    if path.contains('\0') {
        return Err(SyncError::PathNul);
    }
    Ok(())
}

impl SyncRequest {
    pub fn id(&self) -> SyncId {
        match self {
            SyncRequest::Stat(_) => SyncId::STAT,
            SyncRequest::Stat2(_) => SyncId::STA2,
            SyncRequest::Lstat2(_) => SyncId::LST2,
            SyncRequest::List(_) => SyncId::LIST,
            SyncRequest::Recv(_) => SyncId::RECV,
            SyncRequest::Send { .. } => SyncId::SEND,
            SyncRequest::Data(_) => SyncId::DATA,
            SyncRequest::Done { .. } => SyncId::DONE,
            SyncRequest::Quit => SyncId::QUIT,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, SyncError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SyncError> {
        let id = self.id();
        match self {
            SyncRequest::Stat(path)
            | SyncRequest::Stat2(path)
            | SyncRequest::Lstat2(path)
            | SyncRequest::List(path)
            | SyncRequest::Recv(path) => {
                check_path(path)?;
                header(out, id, path.len());
                out.extend_from_slice(path.as_bytes());
            }
            SyncRequest::Send { path, mode } => {
                let target = format!("{path},{mode}");
                check_path(&target)?;
                header(out, id, target.len());
                out.extend_from_slice(target.as_bytes());
            }
            SyncRequest::Data(data) => {
                if data.len() > MAX_DATA {
                    return Err(SyncError::DataTooLong { len: data.len() });
                }
                header(out, id, data.len());
                out.extend_from_slice(data);
            }
            SyncRequest::Done { mtime } => header(out, id, *mtime as usize),
            SyncRequest::Quit => header(out, id, 0),
        }
        Ok(())
    }
}

/// RECV of `path`: the device answers DATA chunks and DONE, or FAIL.
pub fn recv_request(path: &str) -> Result<Vec<u8>, SyncError> {
    SyncRequest::Recv(path.to_string()).encode()
}

/// A whole push: SEND `path,mode`, the content in DATA chunks of at most
/// 64 KiB, then DONE with the mtime. The device answers OKAY or FAIL.
pub fn send_requests(path: &str, mode: u32, data: &[u8], mtime: u32) -> Result<Vec<u8>, SyncError> {
    let mut out = Vec::with_capacity(data.len() + 8 * (data.len() / MAX_DATA + 3) + path.len());
    SyncRequest::Send {
        path: path.to_string(),
        mode,
    }
    .encode_into(&mut out)?;
    for chunk in data.chunks(MAX_DATA) {
        SyncRequest::Data(chunk.to_vec()).encode_into(&mut out)?;
    }
    SyncRequest::Done { mtime }.encode_into(&mut out)?;
    Ok(out)
}

/// A reply, as the device sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncReply {
    /// Answer to STAT; `mode` 0 means the path does not exist.
    Stat {
        mode: u32,
        size: u32,
        mtime: u32,
    },
    /// One entry of a LIST.
    Dent {
        mode: u32,
        size: u32,
        mtime: u32,
        name: String,
    },
    /// The end of a LIST (a 20-byte, all-zero DENT named DONE).
    ListDone,
    /// A piece of a RECV, ≤ 64 KiB.
    Data(Vec<u8>),
    /// The end of a RECV.
    Done,
    /// A SEND was stored.
    Okay,
    Fail(String),
}

impl SyncReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let words = |out: &mut Vec<u8>, id: SyncId, w: &[u32]| {
            out.extend_from_slice(&id.0);
            w.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        };
        match self {
            SyncReply::Stat { mode, size, mtime } => {
                words(&mut out, SyncId::STAT, &[*mode, *size, *mtime]);
            }
            SyncReply::Dent {
                mode,
                size,
                mtime,
                name,
            } => {
                let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
                words(&mut out, SyncId::DENT, &[*mode, *size, *mtime, len]);
                out.extend_from_slice(name.as_bytes());
            }
            SyncReply::ListDone => words(&mut out, SyncId::DONE, &[0, 0, 0, 0]),
            SyncReply::Data(data) => {
                header(&mut out, SyncId::DATA, data.len());
                out.extend_from_slice(data);
            }
            SyncReply::Done => header(&mut out, SyncId::DONE, 0),
            SyncReply::Okay => header(&mut out, SyncId::OKAY, 0),
            SyncReply::Fail(msg) => {
                header(&mut out, SyncId::FAIL, msg.len());
                out.extend_from_slice(msg.as_bytes());
            }
        }
        out
    }
}

/// The answer to `STA2`/`LST2` (`struct sync_stat_v2`). `error` is an
/// errno (2 = ENOENT) with the other fields zero, or 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatV2 {
    pub error: u32,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

/// Bytes of a `sync_stat_v2` reply: id, then the fields in order.
pub const STAT_V2_LEN: usize = 72;

/// Encodes the reply to a `STA2` or `LST2` request; `id` is the request's.
pub fn stat_v2_reply(id: SyncId, st: &StatV2) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAT_V2_LEN);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&st.error.to_le_bytes());
    out.extend_from_slice(&st.dev.to_le_bytes());
    out.extend_from_slice(&st.ino.to_le_bytes());
    for w in [st.mode, st.nlink, st.uid, st.gid] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&st.size.to_le_bytes());
    for t in [st.atime, st.mtime, st.ctime] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

/// What the host waits for, which decides how a reply is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncExpect {
    /// STAT.
    Stat,
    /// DENT … then DONE.
    List,
    /// DATA … then DONE.
    Recv,
    /// OKAY.
    Send,
}

impl fmt::Display for SyncExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncExpect::Stat => "STAT",
            SyncExpect::List => "LIST",
            SyncExpect::Recv => "RECV",
            SyncExpect::Send => "SEND",
        })
    }
}

/// The layout of one frame: fixed bytes, then where a trailing length is.
struct Layout {
    fixed: usize,
    /// Offset of the u32 giving the bytes after `fixed`, and their limit.
    tail: Option<(usize, usize)>,
}

/// A whole frame: its fixed part (id first) and the bytes after it.
struct Frame {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Frame {
    fn id(&self) -> SyncId {
        let id = self.head.get(..4).and_then(|b| b.try_into().ok());
        SyncId(id.unwrap_or([0; 4]))
    }
}

/// Shared two-stage frame reader: the 4-byte id, the fixed part, the tail.
#[derive(Clone, Debug, Default)]
struct FrameReader {
    buf: Vec<u8>,
    tail: Vec<u8>,
    /// (fixed, tail length) once the fixed part was checked.
    sized: Option<(usize, usize)>,
}

impl FrameReader {
    /// The frame's fixed part and tail, once whole.
    fn read(
        &mut self,
        input: &mut &[u8],
        layout: impl Fn(SyncId) -> Result<Layout, SyncError>,
    ) -> Result<Option<Frame>, SyncError> {
        let (fixed, tail_len) = match self.sized {
            Some(s) => s,
            None => {
                if !fill(&mut self.buf, 4, input) {
                    return Ok(None);
                }
                let mut id = [0u8; 4];
                id.copy_from_slice(self.buf.get(..4).unwrap_or(&[0; 4]));
                let l = layout(SyncId(id))?;
                if !fill(&mut self.buf, l.fixed, input) {
                    return Ok(None);
                }
                let tail_len = match l.tail {
                    None => 0,
                    Some((at, max)) => {
                        let len = le_u32(&self.buf, at);
                        if len as usize > max {
                            return Err(SyncError::TooLong {
                                id: SyncId(id),
                                len,
                                max,
                            });
                        }
                        len as usize
                    }
                };
                self.tail = Vec::with_capacity(tail_len);
                self.sized = Some((l.fixed, tail_len));
                (l.fixed, tail_len)
            }
        };
        if !fill(&mut self.tail, tail_len, input) {
            return Ok(None);
        }
        self.sized = None;
        let mut head = std::mem::take(&mut self.buf);
        head.truncate(fixed);
        Ok(Some(Frame {
            head,
            tail: std::mem::take(&mut self.tail),
        }))
    }
}

fn text(bytes: Vec<u8>) -> Result<String, SyncError> {
    String::from_utf8(bytes).map_err(|_| SyncError::PathNotUtf8)
}

/// Reads requests from stream bytes in any chunking (device side).
#[derive(Clone, Debug, Default)]
pub struct SyncRequestDecoder {
    frame: FrameReader,
    failed: Option<SyncError>,
}

impl SyncRequestDecoder {
    pub fn new() -> SyncRequestDecoder {
        SyncRequestDecoder::default()
    }

    pub fn decode(&mut self, input: &mut &[u8]) -> Decoded<SyncRequest, SyncError> {
        if let Some(e) = &self.failed {
            return Decoded::Invalid(e.clone());
        }
        match self.step(input) {
            Ok(Some(r)) => Decoded::Done(r),
            Ok(None) => Decoded::NeedMore,
            Err(e) => {
                self.failed = Some(e.clone());
                Decoded::Invalid(e)
            }
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<SyncRequest>, SyncError> {
        let layout = |id: SyncId| match id {
            SyncId::STAT
            | SyncId::STA2
            | SyncId::LST2
            | SyncId::LIST
            | SyncId::RECV
            | SyncId::SEND => Ok(Layout {
                fixed: 8,
                tail: Some((4, MAX_PATH)),
            }),
            SyncId::DATA => Ok(Layout {
                fixed: 8,
                tail: Some((4, MAX_DATA)),
            }),
            SyncId::DONE | SyncId::QUIT => Ok(Layout {
                fixed: 8,
                tail: None,
            }),
            other => Err(SyncError::UnknownId(other)),
        };
        let Some(frame) = self.frame.read(input, layout)? else {
            return Ok(None);
        };
        let (id, head, tail) = (frame.id(), frame.head, frame.tail);
        let path = || -> Result<String, SyncError> {
            if tail.contains(&0) {
                return Err(SyncError::PathNul);
            }
            text(tail.clone())
        };
        Ok(Some(match id {
            SyncId::STAT => SyncRequest::Stat(path()?),
            SyncId::STA2 => SyncRequest::Stat2(path()?),
            SyncId::LST2 => SyncRequest::Lstat2(path()?),
            SyncId::LIST => SyncRequest::List(path()?),
            SyncId::RECV => SyncRequest::Recv(path()?),
            SyncId::SEND => {
                let target = path()?;
                let parsed = target
                    .rsplit_once(',')
                    .and_then(|(p, m)| Some((p.to_string(), m.parse().ok()?)));
                let (path, mode) = parsed.ok_or(SyncError::BadSendTarget(target))?;
                SyncRequest::Send { path, mode }
            }
            SyncId::DATA => SyncRequest::Data(tail),
            SyncId::DONE => SyncRequest::Done {
                mtime: le_u32(&head, 4),
            },
            _ => SyncRequest::Quit,
        }))
    }
}

/// Reads replies from stream bytes in any chunking (host side).
#[derive(Clone, Debug, Default)]
pub struct SyncReplyDecoder {
    frame: FrameReader,
    failed: Option<SyncError>,
}

impl SyncReplyDecoder {
    pub fn new() -> SyncReplyDecoder {
        SyncReplyDecoder::default()
    }

    /// The next reply to a request of kind `expect`. A FAIL is a reply like
    /// any other here; [`Pull`] turns it into an error.
    pub fn decode(
        &mut self,
        expect: SyncExpect,
        input: &mut &[u8],
    ) -> Decoded<SyncReply, SyncError> {
        if let Some(e) = &self.failed {
            return Decoded::Invalid(e.clone());
        }
        match self.step(expect, input) {
            Ok(Some(r)) => Decoded::Done(r),
            Ok(None) => Decoded::NeedMore,
            Err(e) => {
                self.failed = Some(e.clone());
                Decoded::Invalid(e)
            }
        }
    }

    fn step(
        &mut self,
        expect: SyncExpect,
        input: &mut &[u8],
    ) -> Result<Option<SyncReply>, SyncError> {
        use SyncExpect as E;
        let layout = |id: SyncId| {
            let (fixed, tail) = match (id, expect) {
                (SyncId::FAIL, _) => (8, Some((4, MAX_FAIL))),
                (SyncId::STAT, E::Stat) => (16, None),
                (SyncId::DENT, E::List) => (20, Some((16, MAX_NAME))),
                (SyncId::DONE, E::List) => (20, None),
                (SyncId::DATA, E::Recv) => (8, Some((4, MAX_DATA))),
                (SyncId::DONE, E::Recv) | (SyncId::OKAY, E::Send) => (8, None),
                (id, _) => return Err(SyncError::UnexpectedReply { id, expect }),
            };
            Ok(Layout { fixed, tail })
        };
        let Some(frame) = self.frame.read(input, layout)? else {
            return Ok(None);
        };
        let (id, head, tail) = (frame.id(), frame.head, frame.tail);
        let word = |i: usize| le_u32(&head, 4 * i);
        Ok(Some(match id {
            SyncId::FAIL => SyncReply::Fail(String::from_utf8_lossy(&tail).into_owned()),
            SyncId::STAT => SyncReply::Stat {
                mode: word(1),
                size: word(2),
                mtime: word(3),
            },
            SyncId::DENT => SyncReply::Dent {
                mode: word(1),
                size: word(2),
                mtime: word(3),
                name: text(tail)?,
            },
            SyncId::DONE if expect == E::List => SyncReply::ListDone,
            SyncId::DATA => SyncReply::Data(tail),
            SyncId::DONE => SyncReply::Done,
            _ => SyncReply::Okay,
        }))
    }
}

/// A file read from the TV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledFile {
    pub mode: u32,
    pub size: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullStage {
    Stat,
    Recv,
    Finished,
}

/// adb's pull in one go: STAT, RECV and QUIT are sent together (the sync
/// service answers them in order), the replies gathered into a
/// [`PulledFile`]. Write [`Pull::requests`] after the `sync:` stream opens
/// and feed each `Data` event to [`Pull::push`].
#[derive(Clone, Debug)]
pub struct Pull {
    decoder: SyncReplyDecoder,
    stage: PullStage,
    file: PulledFile,
    limit: usize,
    requests: Vec<u8>,
}

impl Pull {
    /// `limit` caps the file size held in memory.
    pub fn new(path: &str, limit: usize) -> Result<Pull, SyncError> {
        let mut requests = SyncRequest::Stat(path.to_string()).encode()?;
        SyncRequest::Recv(path.to_string()).encode_into(&mut requests)?;
        SyncRequest::Quit.encode_into(&mut requests)?;
        Ok(Pull {
            decoder: SyncReplyDecoder::new(),
            stage: PullStage::Stat,
            file: PulledFile {
                mode: 0,
                size: 0,
                mtime: 0,
                data: Vec::new(),
            },
            limit,
            requests,
        })
    }

    /// The bytes to write to the stream.
    pub fn requests(&self) -> &[u8] {
        &self.requests
    }

    /// Stream bytes in any chunking; the file once its DONE has come.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Option<PulledFile>, SyncError> {
        loop {
            let expect = match self.stage {
                PullStage::Stat => SyncExpect::Stat,
                PullStage::Recv => SyncExpect::Recv,
                // Bytes after DONE are not ours to read (none are sent).
                PullStage::Finished => return Ok(None),
            };
            let reply = match self.decoder.decode(expect, &mut bytes) {
                Decoded::NeedMore => return Ok(None),
                Decoded::Invalid(e) => return Err(e),
                Decoded::Done(r) => r,
            };
            match reply {
                SyncReply::Fail(msg) => return Err(SyncError::Fail(msg)),
                SyncReply::Stat { mode, size, mtime } => {
                    self.file.mode = mode;
                    self.file.size = size;
                    self.file.mtime = mtime;
                    self.stage = PullStage::Recv;
                }
                SyncReply::Data(d) => {
                    if self.file.data.len() + d.len() > self.limit {
                        return Err(SyncError::FileTooLarge { limit: self.limit });
                    }
                    self.file.data.extend_from_slice(&d);
                }
                SyncReply::Done => {
                    self.stage = PullStage::Finished;
                    return Ok(Some(std::mem::replace(
                        &mut self.file,
                        PulledFile {
                            mode: 0,
                            size: 0,
                            mtime: 0,
                            data: Vec::new(),
                        },
                    )));
                }
                // The decoder yields only replies that fit `expect`.
                SyncReply::Dent { .. } | SyncReply::ListDone | SyncReply::Okay => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(mut input: &[u8]) -> Vec<SyncRequest> {
        let mut dec = SyncRequestDecoder::new();
        let mut out = Vec::new();
        loop {
            match dec.decode(&mut input) {
                Decoded::Done(r) => out.push(r),
                Decoded::NeedMore => return out,
                Decoded::Invalid(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            recv_request("/sdcard/s.png").unwrap(),
            b"RECV\x0d\x00\x00\x00/sdcard/s.png"
        );
        assert_eq!(
            SyncRequest::Stat("/x".into()).encode().unwrap(),
            b"STAT\x02\x00\x00\x00/x"
        );
        assert_eq!(SyncRequest::Quit.encode().unwrap(), b"QUIT\0\0\0\0");
        assert_eq!(
            SyncRequest::Done { mtime: 0x6543_2100 }.encode().unwrap(),
            b"DONE\x00\x21\x43\x65"
        );
        assert_eq!(
            SyncRequest::Send {
                path: "/data/local/tmp/a".into(),
                mode: 0o100644
            }
            .encode()
            .unwrap(),
            b"SEND\x17\x00\x00\x00/data/local/tmp/a,33188"
        );
    }

    #[test]
    fn send_is_chunked_at_64k_and_ends_with_done() {
        let data = vec![7u8; MAX_DATA * 2 + 10];
        let bytes = send_requests("/t/f", 0o100600, &data, 1_700_000_000).unwrap();
        let got = requests(&bytes);
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[0],
            SyncRequest::Send {
                path: "/t/f".into(),
                mode: 0o100600
            }
        );
        assert_eq!(got[1], SyncRequest::Data(vec![7; MAX_DATA]));
        assert_eq!(got[2], SyncRequest::Data(vec![7; MAX_DATA]));
        assert_eq!(got[3], SyncRequest::Data(vec![7; 10]));
        assert_eq!(
            got[4],
            SyncRequest::Done {
                mtime: 1_700_000_000
            }
        );
        // An empty file is SEND and DONE.
        assert_eq!(
            requests(&send_requests("/e", 0o644, &[], 1).unwrap()).len(),
            2
        );
    }

    #[test]
    fn request_limits() {
        let long = "/".repeat(MAX_PATH + 1);
        assert_eq!(
            recv_request(&long),
            Err(SyncError::PathTooLong { len: MAX_PATH + 1 })
        );
        assert_eq!(recv_request("/a\0b"), Err(SyncError::PathNul));
        assert_eq!(
            SyncRequest::Data(vec![0; MAX_DATA + 1]).encode(),
            Err(SyncError::DataTooLong { len: MAX_DATA + 1 })
        );
        let mut dec = SyncRequestDecoder::new();
        assert_eq!(
            dec.decode(&mut &b"DATA\x01\x00\x01\x00"[..]),
            Decoded::Invalid(SyncError::TooLong {
                id: SyncId::DATA,
                len: 0x10001,
                max: MAX_DATA
            })
        );
        let mut dec = SyncRequestDecoder::new();
        assert_eq!(
            dec.decode(&mut &b"LIS2\x00\x00\x00\x00"[..]),
            Decoded::Invalid(SyncError::UnknownId(SyncId(*b"LIS2")))
        );
        let mut dec = SyncRequestDecoder::new();
        assert_eq!(
            dec.decode(&mut &b"SEND\x02\x00\x00\x00/a"[..]),
            Decoded::Invalid(SyncError::BadSendTarget("/a".into()))
        );
    }

    #[test]
    fn stat_v2_requests_and_reply() {
        let mut bytes = SyncRequest::Stat2("/sdcard/a".into()).encode().unwrap();
        SyncRequest::Lstat2("/b".into())
            .encode_into(&mut bytes)
            .unwrap();
        assert_eq!(&bytes[..8], b"STA2\x09\x00\x00\x00");
        assert_eq!(
            requests(&bytes),
            [
                SyncRequest::Stat2("/sdcard/a".into()),
                SyncRequest::Lstat2("/b".into())
            ]
        );
        let st = StatV2 {
            mode: 0o100_644,
            nlink: 1,
            uid: 2000,
            gid: 1015,
            size: 5_000_000_000,
            mtime: 1_700_000_000,
            ..StatV2::default()
        };
        let reply = stat_v2_reply(SyncId::STA2, &st);
        assert_eq!(reply.len(), STAT_V2_LEN);
        assert_eq!(&reply[..8], b"STA2\0\0\0\0");
        // dev and ino (16 bytes), then mode.
        assert_eq!(reply[24..28], 0o100_644u32.to_le_bytes());
        assert_eq!(reply[40..48], 5_000_000_000u64.to_le_bytes());
        // atime, then mtime.
        assert_eq!(reply[56..64], 1_700_000_000i64.to_le_bytes());
        let missing = stat_v2_reply(
            SyncId::LST2,
            &StatV2 {
                error: 2,
                ..StatV2::default()
            },
        );
        assert_eq!(&missing[..8], b"LST2\x02\0\0\0");
        assert!(missing[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn reply_layouts_depend_on_the_request() {
        let mut list = SyncReply::Dent {
            mode: 0o100644,
            size: 5,
            mtime: 9,
            name: "a.txt".into(),
        }
        .encode();
        assert_eq!(list.len(), 20 + 5);
        list.extend(SyncReply::ListDone.encode());
        assert_eq!(&list[25..], b"DONE\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let mut dec = SyncReplyDecoder::new();
        let mut input = &list[..];
        assert!(matches!(
            dec.decode(SyncExpect::List, &mut input),
            Decoded::Done(SyncReply::Dent { size: 5, .. })
        ));
        assert_eq!(
            dec.decode(SyncExpect::List, &mut input),
            Decoded::Done(SyncReply::ListDone)
        );
        assert!(input.is_empty());
        // The same DONE after a RECV is 8 bytes.
        assert_eq!(SyncReply::Done.encode(), b"DONE\0\0\0\0");
        let mut dec = SyncReplyDecoder::new();
        assert_eq!(
            dec.decode(SyncExpect::Recv, &mut &b"DONE\0\0\0\0"[..]),
            Decoded::Done(SyncReply::Done)
        );
        assert_eq!(
            SyncReply::Stat {
                mode: 0o100644,
                size: 3,
                mtime: 4
            }
            .encode(),
            b"STAT\xa4\x81\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00"
        );
        assert_eq!(SyncReply::Okay.encode(), b"OKAY\0\0\0\0");
        let mut dec = SyncReplyDecoder::new();
        assert_eq!(
            dec.decode(SyncExpect::Send, &mut &b"DATA\0\0\0\0"[..]),
            Decoded::Invalid(SyncError::UnexpectedReply {
                id: SyncId::DATA,
                expect: SyncExpect::Send
            })
        );
    }

    #[test]
    fn pull_gathers_the_file_in_any_chunking() {
        let pull = Pull::new("/sdcard/s.png", 1 << 20).unwrap();
        let reqs = requests(pull.requests());
        assert_eq!(
            reqs,
            [
                SyncRequest::Stat("/sdcard/s.png".into()),
                SyncRequest::Recv("/sdcard/s.png".into()),
                SyncRequest::Quit
            ]
        );
        let content: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut replies = SyncReply::Stat {
            mode: 0o100660,
            size: 100_000,
            mtime: 77,
        }
        .encode();
        for chunk in content.chunks(MAX_DATA) {
            replies.extend(SyncReply::Data(chunk.to_vec()).encode());
        }
        replies.extend(SyncReply::Done.encode());
        for step in [1, 7, 4096, replies.len()] {
            let mut pull = Pull::new("/sdcard/s.png", 1 << 20).unwrap();
            let mut done = None;
            for chunk in replies.chunks(step) {
                if let Some(f) = pull.push(chunk).unwrap() {
                    done = Some(f);
                }
            }
            let file = done.unwrap();
            assert_eq!(file.mode, 0o100660);
            assert_eq!(file.size, 100_000);
            assert_eq!(file.mtime, 77);
            assert_eq!(file.data, content);
        }
    }

    #[test]
    fn pull_of_a_missing_file_reports_the_tv_message() {
        let mut pull = Pull::new("/nope", 100).unwrap();
        let mut replies = SyncReply::Stat {
            mode: 0,
            size: 0,
            mtime: 0,
        }
        .encode();
        replies.extend(SyncReply::Fail("No such file or directory".into()).encode());
        let err = pull.push(&replies).unwrap_err();
        assert_eq!(err, SyncError::Fail("No such file or directory".into()));
        assert_eq!(err.to_string(), "the TV says: No such file or directory");
    }

    #[test]
    fn pull_respects_its_limit() {
        let mut pull = Pull::new("/big", 10).unwrap();
        let mut replies = SyncReply::Stat {
            mode: 0o100644,
            size: 11,
            mtime: 0,
        }
        .encode();
        replies.extend(SyncReply::Data(vec![0; 11]).encode());
        assert_eq!(
            pull.push(&replies),
            Err(SyncError::FileTooLarge { limit: 10 })
        );
    }

    #[test]
    fn sync_id_display() {
        assert_eq!(SyncId::RECV.to_string(), "RECV");
        assert_eq!(SyncId([0, 1, 2, 3]).to_string(), "[00, 01, 02, 03]");
    }
}
