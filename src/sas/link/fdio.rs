//! Non-blocking descriptor I/O for the line's thread: it waits on the port
//! and its command waker at once, so no read or write may block it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::error::{Cause, PortError};

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor, with an int argument.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until one of `fds` is ready or `timeout` passes; an interrupting
/// signal counts as a timeout (the caller loops).
pub(crate) fn wait(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Under 10^9, so it fits even a 32-bit c_long (armv7); `try_from`
        // would be infallible on 64-bit targets.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a live slice of `n` pollfds; no signal mask change.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), n, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

pub(crate) fn pollfd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

/// Writes all of `bytes`, waiting for room at most `timeout` in total.
pub(crate) fn write_all<W: Write + AsFd>(
    port: &str,
    w: &mut W,
    mut bytes: &[u8],
    timeout: Duration,
) -> Result<(), PortError> {
    let deadline = Instant::now() + timeout;
    while !bytes.is_empty() {
        match w.write(bytes) {
            Ok(0) => {
                return Err(PortError::io(
                    port,
                    "write",
                    io::ErrorKind::WriteZero.into(),
                ));
            }
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(PortError::WriteTimeout {
                        port: port.to_owned(),
                        after: timeout,
                    });
                }
                let mut fds = [pollfd(w.as_fd(), libc::POLLOUT)];
                wait(&mut fds, left).map_err(|e| PortError::io(port, "write", e))?;
            }
            Err(e) => return Err(PortError::io(port, "write", e)),
        }
    }
    Ok(())
}

/// Appends what can be read now to `out`. End of file is the port lost,
/// for the reason `eof` (a hung-up tty, a closed connection).
pub(crate) fn read_available<R: Read>(
    port: &str,
    r: &mut R,
    out: &mut Vec<u8>,
    eof: Cause,
) -> Result<(), PortError> {
    let mut buf = [0u8; 1024];
    // Bounded so that a flooding peer cannot starve the commands.
    for _ in 0..16 {
        match r.read(&mut buf) {
            Ok(0) => {
                return Err(PortError::Lost {
                    port: port.to_string(),
                    cause: eof,
                    source: Arc::new(io::ErrorKind::UnexpectedEof.into()),
                });
            }
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EIO once the other end of a tty has closed.
            Err(e) => return Err(PortError::io(port, "read", e)),
        }
    }
    Ok(())
}
