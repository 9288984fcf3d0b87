//! TCP to a serial device server or the simulator: TCP_NODELAY so a poll
//! leaves at once, and one write per frame so the far side's idle-gap
//! framing (§1.3) sees it whole.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use super::error::{Cause, PortError};
use super::{LinkTiming, Transport, TransportKind, fdio};

/// Bounds one connection attempt; the line's thread waits for it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct TcpTransport {
    port: String,
    stream: TcpStream,
    write_timeout: Duration,
}

impl TcpTransport {
    /// `addr` is `HOST:PORT`.
    pub fn open(port: &str, addr: &str, timing: &LinkTiming) -> Result<Self, PortError> {
        let open_error = |e: std::io::Error| PortError::Open {
            port: port.to_owned(),
            cause: Cause::from_io(&e),
            source: Arc::new(e),
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host name resolves to no address",
        );
        for candidate in addr.to_socket_addrs().map_err(open_error)? {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let io = |op| move |e| PortError::io(port, op, e);
                    stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
                    stream
                        .set_nonblocking(true)
                        .map_err(io("set non-blocking"))?;
                    return Ok(TcpTransport {
                        port: port.to_owned(),
                        stream,
                        write_timeout: timing.write_timeout,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(open_error(last))
    }
}

impl AsFd for TcpTransport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<(), PortError> {
        fdio::write_all(&self.port, &mut self.stream, frame, self.write_timeout)
    }

    fn read_available(&mut self, bytes: &mut Vec<u8>, _: &mut Vec<usize>) -> Result<(), PortError> {
        fdio::read_available(&self.port, &mut self.stream, bytes, Cause::PeerClosed)
    }

    /// A connection has no path that could vanish; a dead peer shows as an
    /// error or end of file on read.
    fn check(&self) -> Result<(), PortError> {
        Ok(())
    }
}
