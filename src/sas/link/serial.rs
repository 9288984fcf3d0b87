//! A real serial port: the wakeup bit as mark/space parity (§1.1), parity
//! marks on receive (§1.2).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use libc::termios;
use tokio_serial::{DataBits, ErrorKind, FlowControl, Parity, StopBits};

use super::device::Identity;
use super::error::{Cause, PortError};
use super::parmrk::ParmrkDecoder;
use super::termios::{self as tio, WireParity, kept_sas_bits, sas_termios};
use super::{LinkTiming, Transport, TransportKind, fdio};

pub struct SerialTransport {
    port: String,
    file: File,
    identity: Identity,
    mark: termios,
    space: termios,
    settle: Duration,
    write_timeout: Duration,
    decoder: ParmrkDecoder,
    raw: Vec<u8>,
}

impl SerialTransport {
    pub fn open(port: &str, path: &Path, timing: &LinkTiming) -> Result<Self, PortError> {
        // serialport opens exclusively (TIOCEXCL and flock), sets raw 8N1 at
        // 19200 and checks it took; it knows no mark/space, set below.
        let native = tokio_serial::new(port, 19200)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .open_native()
            .map_err(|e| open_error(port, path, e))?;
        // SAFETY: into_raw_fd hands over an open descriptor that nothing else
        // owns (TTYPort's drop would only have closed it).
        let file = File::from(unsafe { OwnedFd::from_raw_fd(native.into_raw_fd()) });
        let io = |op| move |e| PortError::io(port, op, e);
        fdio::set_nonblocking(file.as_fd()).map_err(io("set non-blocking"))?;
        let identity = Identity::of(path, &file).map_err(io("fstat"))?;
        let base = tio::get(file.as_fd()).map_err(io("tcgetattr"))?;
        let mark = sas_termios(&base, WireParity::Mark);
        let space = sas_termios(&base, WireParity::Space);
        // Space last: it is the receiving state.
        for want in [&mark, &space] {
            tio::set(file.as_fd(), libc::TCSANOW, want).map_err(io("tcsetattr"))?;
            let got = tio::get(file.as_fd()).map_err(io("tcgetattr"))?;
            if !kept_sas_bits(want, &got) {
                return Err(PortError::NoMarkSpace {
                    port: port.to_owned(),
                });
            }
        }
        tio::flush_input(file.as_fd()).map_err(io("tcflush"))?;
        Ok(SerialTransport {
            port: port.to_owned(),
            file,
            identity,
            mark,
            space,
            settle: timing.wakeup_settle,
            write_timeout: timing.write_timeout,
            decoder: ParmrkDecoder::default(),
            raw: Vec::new(),
        })
    }
}

/// serialport folds errno into its own kinds (EBUSY from TIOCEXCL becomes
/// "no device"); tell "absent" from "busy" by looking at the path.
fn open_error(port: &str, path: &Path, e: tokio_serial::Error) -> PortError {
    let cause = match e.kind() {
        _ if !path.exists() => Cause::NotPresent,
        ErrorKind::NoDevice => Cause::Busy,
        ErrorKind::Io(kind) => Cause::from_io(&kind.into()),
        _ => Cause::Other,
    };
    PortError::Open {
        port: port.to_owned(),
        cause,
        source: Arc::new(std::io::Error::other(e)),
    }
}

/// One step of sending a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'a> {
    /// Switch parity once what was written has left (`TCSADRAIN`).
    Parity(WireParity),
    Write(&'a [u8]),
    Drain,
    /// The adapter's margin after the drain (see `WAKEUP_SETTLE`).
    Settle,
}

/// Mark, the address byte, drain and settle, space, the rest in one write
/// (§1.1). Back to space even for a one-byte poll: receiving in mark would
/// flag every reply byte as a parity error.
fn send_steps(frame: &[u8]) -> Vec<Step<'_>> {
    let Some((first, rest)) = frame.split_first() else {
        return Vec::new();
    };
    let mut steps = vec![
        Step::Parity(WireParity::Mark),
        Step::Write(std::slice::from_ref(first)),
        Step::Drain,
        Step::Settle,
        Step::Parity(WireParity::Space),
    ];
    if !rest.is_empty() {
        steps.push(Step::Write(rest));
    }
    steps
}

impl AsFd for SerialTransport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Transport for SerialTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Serial
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<(), PortError> {
        let port = self.port.as_str();
        for step in send_steps(frame) {
            let fd = self.file.as_fd();
            match step {
                Step::Parity(parity) => {
                    let t = match parity {
                        WireParity::Mark => &self.mark,
                        WireParity::Space => &self.space,
                    };
                    tio::set(fd, libc::TCSADRAIN, t)
                        .map_err(|e| PortError::io(port, "tcsetattr", e))?;
                }
                Step::Write(bytes) => {
                    fdio::write_all(port, &mut self.file, bytes, self.write_timeout)?
                }
                Step::Drain => tio::drain(fd).map_err(|e| PortError::io(port, "tcdrain", e))?,
                Step::Settle => thread::sleep(self.settle),
            }
        }
        Ok(())
    }

    fn read_available(
        &mut self,
        bytes: &mut Vec<u8>,
        wakeup: &mut Vec<usize>,
    ) -> Result<(), PortError> {
        self.raw.clear();
        let result =
            fdio::read_available(&self.port, &mut self.file, &mut self.raw, Cause::Unplugged);
        self.decoder.push(&self.raw, bytes, wakeup);
        result
    }

    fn check(&self) -> Result<(), PortError> {
        self.identity.check(&self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeup_on_the_first_byte_only_and_back_to_space() {
        use Step::*;
        assert_eq!(
            send_steps(&[0x01, 0x2F, 0x05]),
            [
                Parity(WireParity::Mark),
                Write(&[0x01]),
                Drain,
                Settle,
                Parity(WireParity::Space),
                Write(&[0x2F, 0x05]),
            ]
        );
        assert_eq!(
            send_steps(&[0x81]),
            [
                Parity(WireParity::Mark),
                Write(&[0x81]),
                Drain,
                Settle,
                Parity(WireParity::Space),
            ]
        );
        assert_eq!(send_steps(&[]), []);
    }
}
