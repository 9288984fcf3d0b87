//! The device side of one `sync:` stream, sans-IO: request bytes in (any
//! chunking), reply bytes out, against the TV's file system. Like adbd, a
//! failed request answers FAIL and ends the session.

use std::time::Instant;

use crate::adb::proto::sync::{MAX_DATA, StatV2, stat_v2_reply};
use crate::adb::proto::{Decoded, SyncReply, SyncRequest, SyncRequestDecoder};

use super::fs::{DIR_MODE, FsError};
use super::model::TvModel;

/// The largest file a push may leave on the TV (memory, not realism).
pub const MAX_UPLOAD: usize = 64 * 1024 * 1024;

/// A push in progress: SEND seen, DATA gathering, DONE to come.
struct Upload {
    path: String,
    mode: u32,
    data: Vec<u8>,
}

#[derive(Default)]
pub struct SyncSession {
    decoder: SyncRequestDecoder,
    upload: Option<Upload>,
}

/// What a batch of request bytes led to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncOutput {
    pub reply: Vec<u8>,
    /// QUIT, or a failure: close the stream after the reply.
    pub end: bool,
}

/// Linux errno numbers for the stat v2 `error` field.
fn errno(e: FsError) -> u32 {
    match e {
        FsError::NotFound => 2,
        FsError::PermissionDenied => 13,
        FsError::NotDirectory => 20,
        FsError::IsDirectory => 21,
        FsError::ReadOnly => 30,
    }
}

impl SyncSession {
    pub fn new() -> SyncSession {
        SyncSession::default()
    }

    pub fn feed(&mut self, tv: &mut TvModel, mut input: &[u8], now: Instant) -> SyncOutput {
        let mut out = SyncOutput::default();
        while !out.end {
            match self.decoder.decode(&mut input) {
                Decoded::NeedMore => break,
                Decoded::Done(request) => self.handle(tv, request, now, &mut out),
                Decoded::Invalid(e) => {
                    out.reply.extend(SyncReply::Fail(e.to_string()).encode());
                    out.end = true;
                }
            }
        }
        out
    }

    fn fail(out: &mut SyncOutput, message: String) {
        out.reply.extend(SyncReply::Fail(message).encode());
        out.end = true;
    }

    /// mode, size, mtime of a path, or why there is none.
    fn stat(tv: &TvModel, path: &str, now: Instant) -> Result<(u32, u64, u32), FsError> {
        match tv.read(path, now) {
            Ok(f) => Ok((f.mode, f.data.len() as u64, f.mtime)),
            Err(FsError::IsDirectory) => Ok((DIR_MODE, 4096, 0)),
            Err(e) => Err(e),
        }
    }

    fn handle(
        &mut self,
        tv: &mut TvModel,
        request: SyncRequest,
        now: Instant,
        out: &mut SyncOutput,
    ) {
        let id = request.id();
        match request {
            SyncRequest::Stat(path) => {
                // v1 STAT: an all-zero answer means "not there".
                let (mode, size, mtime) = Self::stat(tv, &path, now).unwrap_or((0, 0, 0));
                let size = u32::try_from(size).unwrap_or(u32::MAX);
                out.reply
                    .extend(SyncReply::Stat { mode, size, mtime }.encode());
            }
            SyncRequest::Stat2(path) | SyncRequest::Lstat2(path) => {
                let stat = match Self::stat(tv, &path, now) {
                    Ok((mode, size, mtime)) => StatV2 {
                        mode,
                        nlink: 1,
                        // The shell user and sdcard_rw, as on shared storage.
                        uid: 2000,
                        gid: 1015,
                        size,
                        mtime: i64::from(mtime),
                        ..StatV2::default()
                    },
                    Err(e) => StatV2 {
                        error: errno(e),
                        ..StatV2::default()
                    },
                };
                out.reply.extend(stat_v2_reply(id, &stat));
            }
            SyncRequest::List(path) => {
                if let Ok(entries) = tv.fs.list(&path) {
                    for (name, file) in entries {
                        let (mode, size, mtime) = match file {
                            Some(f) => (
                                f.mode,
                                u32::try_from(f.data.len()).unwrap_or(u32::MAX),
                                f.mtime,
                            ),
                            None => (DIR_MODE, 4096, 0),
                        };
                        out.reply.extend(
                            SyncReply::Dent {
                                mode,
                                size,
                                mtime,
                                name,
                            }
                            .encode(),
                        );
                    }
                }
                // adbd ends a listing of a missing directory with DONE alone.
                out.reply.extend(SyncReply::ListDone.encode());
            }
            SyncRequest::Recv(path) => match tv.read(&path, now) {
                Ok(file) => {
                    for chunk in file.data.chunks(MAX_DATA) {
                        out.reply.extend(SyncReply::Data(chunk.to_vec()).encode());
                    }
                    out.reply.extend(SyncReply::Done.encode());
                }
                Err(e) => Self::fail(out, format!("open failed: {e}")),
            },
            SyncRequest::Send { path, mode } => {
                self.upload = Some(Upload {
                    path,
                    mode,
                    data: Vec::new(),
                });
            }
            SyncRequest::Data(data) => match &mut self.upload {
                Some(up) if up.data.len() + data.len() <= MAX_UPLOAD => up.data.extend(data),
                Some(_) => {
                    self.upload = None;
                    Self::fail(out, "write failed: No space left on device".into());
                }
                None => Self::fail(out, "unexpected DATA outside a SEND".into()),
            },
            SyncRequest::Done { mtime } => match self.upload.take() {
                Some(up) => match tv.write(&up.path, up.data, up.mode, mtime) {
                    Ok(()) => out.reply.extend(SyncReply::Okay.encode()),
                    Err(e) => Self::fail(out, format!("couldn't create file: {e}")),
                },
                None => Self::fail(out, "unexpected DONE outside a SEND".into()),
            },
            SyncRequest::Quit => out.end = true,
        }
    }
}
