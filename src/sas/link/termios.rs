//! Terminal settings. What a SAS port needs is computed by pure functions
//! (testable without hardware); the thin wrappers below apply them.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, termios};

/// The 9th bit on the wire, as forced parity (§1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireParity {
    /// Parity bit forced to 1: the wakeup bit of a poll's first byte.
    Mark,
    /// Parity bit forced to 0: every other byte, and the receiving state.
    Space,
}

/// Raw binary mode: no echo, no line editing, no signals, no CR/LF or
/// XON/XOFF translation, no parity, 8 bits, receiver on, modem lines ignored.
pub fn raw_termios(base: &termios) -> termios {
    let mut t = *base;
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON
        | libc::IXOFF
        | libc::IXANY
        | libc::INPCK
        | libc::IGNPAR);
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    t.c_cflag &=
        !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CMSPAR | libc::CSTOPB | libc::CRTSCTS);
    t.c_cflag |= libc::CS8 | libc::CREAD | libc::CLOCAL;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    t
}

/// A SAS serial port: 19200 baud, 8 data bits, the 9th bit as mark or space
/// parity (`PARENB|CMSPAR`, `PARODD` = mark), 1 stop bit, no flow control.
/// Receiving checks parity and marks errors (`INPCK|PARMRK`, `IGNPAR` and
/// `ISTRIP` clear) so a byte that came with the wakeup bit shows as `FF 00 b`
/// while the port is in space (§1.2); breaks are ignored so they cannot
/// pass for a marked `00`.
pub fn sas_termios(base: &termios, parity: WireParity) -> termios {
    let mut t = raw_termios(base);
    t.c_cflag |= libc::PARENB | libc::CMSPAR;
    if parity == WireParity::Mark {
        t.c_cflag |= libc::PARODD;
    }
    t.c_iflag |= libc::INPCK | libc::PARMRK | libc::IGNBRK;
    // SAFETY: both only write the speed fields of the struct we own.
    unsafe {
        libc::cfsetispeed(&mut t, libc::B19200);
        libc::cfsetospeed(&mut t, libc::B19200);
    }
    t
}

/// Whether the driver kept the bits SAS depends on. Drivers drop CMSPAR
/// silently (cp210x on a CP2101, TI 3410), so the port is read back (§1.1).
pub fn kept_sas_bits(want: &termios, got: &termios) -> bool {
    let cflag = libc::CSIZE | libc::CSTOPB | libc::PARENB | libc::PARODD | libc::CMSPAR;
    let iflag = libc::INPCK | libc::PARMRK | libc::IGNPAR | libc::ISTRIP;
    want.c_cflag & cflag == got.c_cflag & cflag && want.c_iflag & iflag == got.c_iflag & iflag
}

pub(crate) fn get(fd: BorrowedFd<'_>) -> io::Result<termios> {
    let mut t = MaybeUninit::<termios>::uninit();
    // SAFETY: tcgetattr fills the whole struct when it returns 0.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), t.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    Ok(unsafe { t.assume_init() })
}

/// `when`: `TCSANOW`, or `TCSADRAIN` to let the bytes already written leave
/// first (a parity change must not re-parity a byte still in the FIFO).
pub(crate) fn set(fd: BorrowedFd<'_>, when: c_int, t: &termios) -> io::Result<()> {
    // SAFETY: a valid descriptor and a fully initialised struct.
    retry_interrupted(|| unsafe { libc::tcsetattr(fd.as_raw_fd(), when, t) })
}

/// Waits until the written bytes have left (as far as the driver can tell).
pub(crate) fn drain(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    retry_interrupted(|| unsafe { libc::tcdrain(fd.as_raw_fd()) })
}

/// Drops input received before we opened the port: it belongs to no poll.
pub(crate) fn flush_input(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    retry_interrupted(|| unsafe { libc::tcflush(fd.as_raw_fd(), libc::TCIFLUSH) })
}

fn retry_interrupted(mut call: impl FnMut() -> c_int) -> io::Result<()> {
    // A signal can interrupt a drain; a few tries are plenty.
    for _ in 0..8 {
        if call() == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Err(io::ErrorKind::Interrupted.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cooked terminal, as a port may be left by getty or another program.
    fn cooked() -> termios {
        // SAFETY: termios is plain integers; all zero is a valid value.
        let mut t: termios = unsafe { std::mem::zeroed() };
        t.c_iflag = libc::ICRNL | libc::IXON | libc::ISTRIP | libc::IGNPAR | libc::BRKINT;
        t.c_oflag = libc::OPOST | libc::ONLCR;
        t.c_lflag = libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN;
        t.c_cflag = libc::CS7 | libc::CSTOPB | libc::CRTSCTS | libc::PARENB | libc::HUPCL;
        t
    }

    fn has(flags: libc::tcflag_t, bits: libc::tcflag_t) -> bool {
        flags & bits == bits
    }

    #[test]
    fn mark_and_space_differ_only_in_parodd() {
        let mark = sas_termios(&cooked(), WireParity::Mark);
        let space = sas_termios(&cooked(), WireParity::Space);
        for t in [&mark, &space] {
            assert!(has(t.c_cflag, libc::PARENB | libc::CMSPAR | libc::CS8));
            assert!(has(t.c_cflag, libc::CREAD | libc::CLOCAL));
            assert_eq!(t.c_cflag & (libc::CSTOPB | libc::CRTSCTS), 0);
            assert!(has(t.c_iflag, libc::INPCK | libc::PARMRK | libc::IGNBRK));
            assert_eq!(
                t.c_iflag & (libc::IGNPAR | libc::ISTRIP | libc::IXON | libc::ICRNL),
                0
            );
            assert_eq!(t.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG), 0);
            assert_eq!(t.c_oflag & libc::OPOST, 0);
            // SAFETY: reads the speed of a struct we own.
            assert_eq!(unsafe { libc::cfgetospeed(t) }, libc::B19200);
            assert_eq!(unsafe { libc::cfgetispeed(t) }, libc::B19200);
        }
        assert!(has(mark.c_cflag, libc::PARODD));
        assert_eq!(space.c_cflag & libc::PARODD, 0);
        assert_eq!(mark.c_cflag & !libc::PARODD, space.c_cflag);
        assert_eq!(mark.c_iflag, space.c_iflag);
    }

    #[test]
    fn raw_mode_has_no_parity() {
        let t = raw_termios(&sas_termios(&cooked(), WireParity::Mark));
        assert_eq!(t.c_cflag & (libc::PARENB | libc::CMSPAR | libc::PARODD), 0);
        assert_eq!(t.c_iflag & (libc::INPCK | libc::PARMRK), 0);
        assert!(has(t.c_cflag, libc::CS8));
        assert_eq!(t.c_lflag & (libc::ECHO | libc::ICANON), 0);
        assert_eq!((t.c_cc[libc::VMIN], t.c_cc[libc::VTIME]), (1, 0));
    }

    #[test]
    fn read_back_catches_a_dropped_cmspar() {
        let want = sas_termios(&cooked(), WireParity::Space);
        assert!(kept_sas_bits(&want, &want));
        let mut dropped = want;
        dropped.c_cflag &= !libc::CMSPAR;
        assert!(!kept_sas_bits(&want, &dropped));
        // A PTY clears PARENB: the same check refuses it.
        let mut pty = want;
        pty.c_cflag &= !libc::PARENB;
        assert!(!kept_sas_bits(&want, &pty));
        let mut no_mark = want;
        no_mark.c_iflag &= !libc::PARMRK;
        assert!(!kept_sas_bits(&want, &no_mark));
        // Bits outside SAS's concern may differ.
        let mut other = want;
        other.c_cflag |= libc::HUPCL;
        assert!(kept_sas_bits(&want, &other));
    }
}
