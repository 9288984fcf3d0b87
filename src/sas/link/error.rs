//! Errors of the serial line; every one names the configured port.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The likely cause of a failed open or a lost port, in words a technician
/// can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The path does not exist.
    NotPresent,
    /// The device stopped answering (EIO, ENXIO, ENODEV, hangup).
    Unplugged,
    /// The path is gone or names another device than the one open.
    Vanished,
    /// TCP: the other side closed or reset the connection.
    PeerClosed,
    /// TCP: nothing listens there, or the network does not reach it.
    Refused,
    Permission,
    Busy,
    Other,
}

impl Cause {
    pub fn from_io(e: &io::Error) -> Cause {
        match e.raw_os_error() {
            Some(libc::ENOENT) => return Cause::NotPresent,
            Some(libc::EIO | libc::ENXIO | libc::ENODEV) => return Cause::Unplugged,
            Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNABORTED) => {
                return Cause::PeerClosed;
            }
            Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ETIMEDOUT) => {
                return Cause::Refused;
            }
            Some(libc::EACCES | libc::EPERM) => return Cause::Permission,
            Some(libc::EBUSY) => return Cause::Busy,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::NotFound => Cause::NotPresent,
            io::ErrorKind::PermissionDenied => Cause::Permission,
            io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => Cause::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Cause::PeerClosed,
            _ => Cause::Other,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::NotPresent => {
                "no such device: adapter not plugged in or wrong path (prefer a stable /dev/serial/by-id/... path)"
            }
            Cause::Unplugged => {
                "the device stopped answering: USB adapter unplugged, or the other end of the PTY closed"
            }
            Cause::Vanished => {
                "the path is gone or names another device now: adapter unplugged or renumbered, or the simulator restarted (prefer /dev/serial/by-id/...)"
            }
            Cause::PeerClosed => {
                "the remote end closed the connection: device server or simulator restarted, or a network fault"
            }
            Cause::Refused => "cannot connect: nothing listens there, or the network does not reach it",
            Cause::Permission => {
                "permission denied: the service user needs access to the device (group dialout)"
            }
            Cause::Busy => "busy: another program has the port open",
            Cause::Other => "I/O error",
        })
    }
}

/// `Clone` (the I/O error is shared) so one failure can go both to the
/// sender that hit it and into the line's `Down` event.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "port {port:?}: {reason} (expected a device path such as /dev/serial/by-id/... or tcp://HOST:PORT)"
    )]
    BadPort { port: String, reason: String },
    #[error("port {port}: cannot open: {cause}: {source}")]
    Open {
        port: String,
        cause: Cause,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("port {port}: not a serial device or PTY")]
    NotATty { port: String },
    #[error("port {port}: {op}: {source}")]
    Io {
        port: String,
        op: &'static str,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "port {port}: the driver does not keep mark/space parity (CMSPAR), so it cannot send the SAS wakeup bit; use an adapter whose driver supports it (FTDI, CP2102, PL011, 8250)"
    )]
    NoMarkSpace { port: String },
    #[error("port {port}: lost: {cause}: {source}")]
    Lost {
        port: String,
        cause: Cause,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("port {port}: a write did not finish within {after:?}")]
    WriteTimeout { port: String, after: Duration },
    #[error("port {port}: the line is down, reconnecting")]
    Down { port: String },
    #[error("port {port}: the line's I/O thread has stopped")]
    Stopped { port: String },
}

impl PortError {
    pub fn port(&self) -> &str {
        match self {
            PortError::BadPort { port, .. }
            | PortError::Open { port, .. }
            | PortError::NotATty { port }
            | PortError::Io { port, .. }
            | PortError::NoMarkSpace { port }
            | PortError::Lost { port, .. }
            | PortError::WriteTimeout { port, .. }
            | PortError::Down { port }
            | PortError::Stopped { port } => port,
        }
    }

    pub fn cause(&self) -> Option<Cause> {
        match self {
            PortError::Open { cause, .. } | PortError::Lost { cause, .. } => Some(*cause),
            _ => None,
        }
    }

    /// The port is gone: drop it and reconnect.
    pub(crate) fn is_lost(&self) -> bool {
        matches!(self, PortError::Lost { .. })
    }

    /// An I/O error on an open port: "lost" when it means the device or the
    /// connection is gone, otherwise reported as is.
    pub(crate) fn io(port: &str, op: &'static str, e: io::Error) -> PortError {
        match Cause::from_io(&e) {
            cause @ (Cause::Unplugged | Cause::PeerClosed | Cause::NotPresent) => PortError::Lost {
                port: port.to_owned(),
                cause,
                source: Arc::new(e),
            },
            _ => PortError::Io {
                port: port.to_owned(),
                op,
                source: Arc::new(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_errno_and_kind() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Cause::from_io(&os(libc::EIO)), Cause::Unplugged);
        assert_eq!(Cause::from_io(&os(libc::ENXIO)), Cause::Unplugged);
        assert_eq!(Cause::from_io(&os(libc::ENOENT)), Cause::NotPresent);
        assert_eq!(Cause::from_io(&os(libc::ECONNRESET)), Cause::PeerClosed);
        assert_eq!(Cause::from_io(&os(libc::ECONNREFUSED)), Cause::Refused);
        assert_eq!(Cause::from_io(&os(libc::EACCES)), Cause::Permission);
        assert_eq!(Cause::from_io(&os(libc::EBUSY)), Cause::Busy);
        assert_eq!(Cause::from_io(&os(libc::EINVAL)), Cause::Other);
        let kind = |k| io::Error::new(k, "x");
        assert_eq!(
            Cause::from_io(&kind(io::ErrorKind::NotFound)),
            Cause::NotPresent
        );
        assert_eq!(
            Cause::from_io(&kind(io::ErrorKind::BrokenPipe)),
            Cause::PeerClosed
        );
    }

    #[test]
    fn io_errors_that_mean_gone_are_lost() {
        let e = PortError::io(
            "/dev/ttyUSB0",
            "read",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(e.is_lost());
        assert_eq!(e.port(), "/dev/ttyUSB0");
        assert_eq!(e.cause(), Some(Cause::Unplugged));
        assert!(e.to_string().contains("/dev/ttyUSB0"));
        assert!(e.to_string().contains("unplugged"));
        let e = PortError::io("p", "read", io::Error::from_raw_os_error(libc::EINVAL));
        assert!(!e.is_lost());
    }
}
