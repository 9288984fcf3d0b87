//! A PTY (a socat pair, the EGM simulator): raw mode, no parity. The 9th
//! bit never crosses a PTY (§1.3), so the far side finds frames by the idle
//! gap: a frame goes out in one write so that no gap can split it.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::device::Identity;
use super::error::{Cause, PortError};
use super::termios::{self as tio, raw_termios};
use super::{LinkTiming, Transport, TransportKind, fdio};

pub struct PtyTransport {
    port: String,
    file: File,
    identity: Identity,
    write_timeout: Duration,
}

impl PtyTransport {
    pub fn open(port: &str, path: &Path, timing: &LinkTiming) -> Result<Self, PortError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            // Never become the agent's controlling terminal; never block.
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| PortError::Open {
                port: port.to_owned(),
                cause: Cause::from_io(&e),
                source: Arc::new(e),
            })?;
        let io = |op| move |e| PortError::io(port, op, e);
        let identity = Identity::of(path, &file).map_err(io("fstat"))?;
        let base = tio::get(file.as_fd()).map_err(io("tcgetattr"))?;
        tio::set(file.as_fd(), libc::TCSANOW, &raw_termios(&base)).map_err(io("tcsetattr"))?;
        tio::flush_input(file.as_fd()).map_err(io("tcflush"))?;
        Ok(PtyTransport {
            port: port.to_owned(),
            file,
            identity,
            write_timeout: timing.write_timeout,
        })
    }
}

impl AsFd for PtyTransport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Transport for PtyTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Pty
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<(), PortError> {
        fdio::write_all(&self.port, &mut self.file, frame, self.write_timeout)
    }

    fn read_available(&mut self, bytes: &mut Vec<u8>, _: &mut Vec<usize>) -> Result<(), PortError> {
        fdio::read_available(&self.port, &mut self.file, bytes, Cause::Unplugged)
    }

    fn check(&self) -> Result<(), PortError> {
        self.identity.check(&self.port)
    }
}
