//! What a configured port string names, and whether a device path is a PTY.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Cause, PortError};

/// A port string from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `tcp://HOST:PORT`, kept as `HOST:PORT` for the resolver.
    Tcp(String),
    Path(PathBuf),
}

impl Target {
    pub(crate) fn parse(port: &str) -> Result<Target, PortError> {
        let bad = |reason: &str| PortError::BadPort {
            port: port.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(addr) = port.strip_prefix("tcp://") {
            let Some((host, number)) = addr.rsplit_once(':') else {
                return Err(bad("no port number after the host"));
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("no host"));
            }
            match number.parse::<u16>() {
                Ok(n) if n > 0 => Ok(Target::Tcp(addr.to_owned())),
                _ => Err(bad("the port number is not 1 to 65535")),
            }
        } else if port.contains("://") {
            Err(bad("unsupported scheme"))
        } else if port.is_empty() {
            Err(bad("empty"))
        } else {
            Ok(Target::Path(PathBuf::from(port)))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    Serial,
    Pty,
}

/// Unix98 PTY slaves have majors 136 to 143 (`UNIX98_PTY_SLAVE_MAJOR`, 8
/// majors). TIOCGPTN cannot tell: it answers only on the master side and
/// fails with ENOTTY on a slave, exactly as on a UART. The device number
/// holds for a PTY reached through any symlink or a devpts mounted
/// elsewhere; the `/dev/pts/` target is a second, name-based rule.
pub(crate) fn is_pty_slave(major: u32, canonical: Option<&Path>) -> bool {
    (136..=143).contains(&major) || canonical.is_some_and(|p| p.starts_with("/dev/pts/"))
}

pub(crate) fn classify(port: &str, path: &Path) -> Result<DeviceKind, PortError> {
    let meta = fs::metadata(path).map_err(|e| PortError::Open {
        port: port.to_owned(),
        cause: Cause::from_io(&e),
        source: Arc::new(e),
    })?;
    if !meta.file_type().is_char_device() {
        return Err(PortError::NotATty {
            port: port.to_owned(),
        });
    }
    let canonical = fs::canonicalize(path).ok();
    Ok(
        if is_pty_slave(libc::major(meta.rdev()), canonical.as_deref()) {
            DeviceKind::Pty
        } else {
            DeviceKind::Serial
        },
    )
}

/// The device a path named when it was opened. A USB adapter's node and its
/// by-id link go away when it is unplugged, and a simulator that restarts
/// points its link at a new PTY: either way the open descriptor is stale.
#[derive(Debug)]
pub(crate) struct Identity {
    path: PathBuf,
    rdev: u64,
}

impl Identity {
    pub(crate) fn of(path: &Path, file: &fs::File) -> io::Result<Identity> {
        Ok(Identity {
            path: path.to_owned(),
            rdev: file.metadata()?.rdev(),
        })
    }

    pub(crate) fn check(&self, port: &str) -> Result<(), PortError> {
        let lost = |e| PortError::Lost {
            port: port.to_owned(),
            cause: Cause::Vanished,
            source: Arc::new(e),
        };
        match fs::metadata(&self.path) {
            Err(e) => Err(lost(e)),
            Ok(m) if m.rdev() != self.rdev => {
                Err(lost(io::Error::other("the path names another device now")))
            }
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_tcp() {
        assert_eq!(
            Target::parse("/dev/serial/by-id/usb-FTDI-if00-port0").ok(),
            Some(Target::Path("/dev/serial/by-id/usb-FTDI-if00-port0".into()))
        );
        assert_eq!(
            Target::parse("tcp://10.0.0.9:4001").ok(),
            Some(Target::Tcp("10.0.0.9:4001".into()))
        );
        assert_eq!(
            Target::parse("tcp://[::1]:4001").ok(),
            Some(Target::Tcp("[::1]:4001".into()))
        );
        for bad in [
            "",
            "tcp://host",
            "tcp://:4001",
            "tcp://host:0",
            "tcp://host:70000",
            "udp://h:1",
        ] {
            let e = Target::parse(bad).expect_err(bad);
            assert!(matches!(e, PortError::BadPort { .. }), "{bad}");
            assert_eq!(e.port(), bad);
        }
    }

    #[test]
    fn pty_rule() {
        assert!(is_pty_slave(136, None));
        assert!(is_pty_slave(143, Some(Path::new("/somewhere/else"))));
        assert!(is_pty_slave(5, Some(Path::new("/dev/pts/3"))));
        // ttyS (4), ttyUSB (188), ttyACM (166), ttyAMA (204): serial ports.
        for major in [4, 188, 166, 204] {
            assert!(!is_pty_slave(major, Some(Path::new("/dev/ttyUSB0"))));
        }
        assert!(!is_pty_slave(5, Some(Path::new("/dev/ptmx"))));
    }

    #[test]
    fn classify_refuses_what_is_not_a_tty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plain");
        fs::write(&file, b"x").expect("write");
        let port = file.to_string_lossy().into_owned();
        assert!(matches!(
            classify(&port, &file),
            Err(PortError::NotATty { .. })
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            classify("m", &missing),
            Err(PortError::Open {
                cause: Cause::NotPresent,
                ..
            })
        ));
    }
}
