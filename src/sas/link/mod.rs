//! `sas::link`: the serial line under the per-address state machine of
//! [`crate::sas::proto::link`].
//!
//! A host frame goes out with its first byte carrying the 9th (wakeup) bit
//! and the rest without; reply bytes come back as timestamped [`Chunk`]s,
//! with a [`LineEvent::Quiet`] when the line has been idle for the frame gap.
//!
//! - [`SerialTransport`]: a real UART or USB adapter: mark/space parity with
//!   a drain between the address byte and the rest, PARMRK on receive
//!   (§1.1, §1.2 of the protocol document).
//! - [`PtyTransport`] and [`TcpTransport`]: no 9th bit (§1.3); the far side
//!   frames by the idle gap ([`GapFramer`]).
//!
//! [`open`] picks one from the configured port string; [`Line`] runs one on
//! its own thread, reports [`LineEvent::Down`] with a likely cause when the
//! port is lost, and reopens it with backoff until it is back.
//!
//! Feeding the state machine of one EGM (the poller does this for several):
//!
//! ```no_run
//! # async fn run() -> Result<(), sitelink::sas::link::PortError> {
//! use std::time::Instant;
//! use sitelink::sas::link::{Line, LineEvent, LinkTiming};
//! use sitelink::sas::proto::{Link, LinkConfig};
//!
//! let timing = LinkTiming::default();
//! let mut line = Line::spawn("/dev/serial/by-id/usb-FTDI_X-if00-port0", timing.clone())?;
//! let config = timing.apply(LinkConfig::default());
//! let mut egm = Link::new(1, config, Instant::now()).expect("an EGM address");
//! loop {
//!     if let Some(poll) = egm.poll_transmit(Instant::now()) {
//!         if let Err(e) = line.send(&poll.bytes).await {
//!             tracing::warn!(error = %e, "poll not sent"); // down: the link times out
//!         }
//!     }
//!     let deadline = tokio::time::Instant::from_std(egm.poll_timeout());
//!     match tokio::time::timeout_at(deadline, line.next_event()).await {
//!         // A real poller drops the bytes listed in `chunk.wakeup` (chirps).
//!         Ok(Some(LineEvent::Bytes(chunk))) => egm.handle_bytes(chunk.at, &chunk.bytes),
//!         Ok(Some(_)) => {}
//!         Ok(None) => return Ok(()),
//!         Err(_) => egm.handle_timeout(Instant::now()),
//!     }
//! }
//! # }
//! ```

mod device;
mod error;
mod fdio;
mod framer;
mod line;
mod parmrk;
mod pty;
mod serial;
mod tcp;
mod termios;
mod timing;

use std::fmt;
use std::os::fd::AsFd;
use std::time::Instant;

pub use error::{Cause, PortError};
pub use framer::{Frame, GapFramer};
pub use line::{Line, LineEvent};
pub use parmrk::ParmrkDecoder;
pub use pty::PtyTransport;
pub use serial::SerialTransport;
pub use tcp::{CONNECT_TIMEOUT, TcpTransport};
pub use termios::{WireParity, kept_sas_bits, raw_termios, sas_termios};
pub use timing::{
    ADAPTER_SLACK, INTER_BYTE_GAP, LinkTiming, MIN_POLL_INTERVAL, REPLY_WINDOW, WAKEUP_SETTLE,
    backoff_delay,
};

use device::{DeviceKind, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Serial,
    Pty,
    Tcp,
}

impl TransportKind {
    /// Whether the medium carries the 9th bit both ways. Without it, frames
    /// are found by the idle gap and received bytes have no wakeup flags.
    pub fn carries_wakeup(self) -> bool {
        self == TransportKind::Serial
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Serial => "serial",
            TransportKind::Pty => "pty",
            TransportKind::Tcp => "tcp",
        })
    }
}

/// Bytes from one read, with the time they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub at: Instant,
    pub bytes: Vec<u8>,
    /// Indices in `bytes` of the bytes that came with the wakeup bit (only a
    /// serial port can tell; an EGM sets it only on a chirp). Always empty
    /// on a PTY or TCP.
    pub wakeup: Vec<usize>,
}

/// An open port. Implementations never block in `read_available`, so one
/// thread can wait on the port and its commands at once.
pub trait Transport: AsFd + Send {
    fn kind(&self) -> TransportKind;

    /// Sends one host frame: the first byte with the wakeup bit set, the
    /// rest with it clear, as the medium allows.
    fn send_frame(&mut self, frame: &[u8]) -> Result<(), PortError>;

    /// Appends what has arrived to `bytes` (unescaped) and the indices of
    /// wakeup-marked bytes to `wakeup`. An error may follow some bytes.
    fn read_available(
        &mut self,
        bytes: &mut Vec<u8>,
        wakeup: &mut Vec<usize>,
    ) -> Result<(), PortError>;

    /// Whether the configured path still names the open device.
    fn check(&self) -> Result<(), PortError>;
}

/// Opens a configured port: `tcp://HOST:PORT`, or a device path. A path
/// whose device is a PTY slave opens as a PTY, any other character device
/// as a serial port (which then must keep mark/space parity, or the open
/// fails with [`PortError::NoMarkSpace`]).
pub fn open(port: &str, timing: &LinkTiming) -> Result<Box<dyn Transport>, PortError> {
    Ok(match Target::parse(port)? {
        Target::Tcp(addr) => Box::new(TcpTransport::open(port, &addr, timing)?),
        Target::Path(path) => match device::classify(port, &path)? {
            DeviceKind::Pty => Box::new(PtyTransport::open(port, &path, timing)?),
            DeviceKind::Serial => Box::new(SerialTransport::open(port, &path, timing)?),
        },
    })
}
