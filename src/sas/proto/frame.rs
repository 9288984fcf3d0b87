//! The two-step parse shared by polls and responses: `check` looks at the
//! bytes so far and says whether a whole frame is there, more are needed, or
//! they cannot be a frame; only then `parse` reads it through a `Reader`,
//! whose every read is fallible so no input can make it panic.

use super::bcd::{BcdError, decode_bcd};

/// What `check` concluded about the bytes received so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check<E> {
    /// A whole frame of this many bytes is at the start of the buffer.
    Complete(usize),
    /// Not enough bytes yet; not an error.
    NeedMore,
    /// These bytes cannot start a valid frame.
    Invalid(E),
}

/// Why a field could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("frame ends inside a field")]
    Short,
    #[error(transparent)]
    Bcd(#[from] BcdError),
}

/// A cursor over one complete frame.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FieldError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(FieldError::Short)?;
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FieldError> {
        let (&b, tail) = self.buf.split_first().ok_or(FieldError::Short)?;
        self.buf = tail;
        Ok(b)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FieldError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(FieldError::Short)?;
        self.buf = tail;
        Ok(*head)
    }

    /// Binary, least significant byte first (§14).
    pub(crate) fn u16_le(&mut self) -> Result<u16, FieldError> {
        self.array::<2>().map(u16::from_le_bytes)
    }

    /// Packed BCD of `n` bytes, most significant first.
    pub(crate) fn bcd(&mut self, n: usize) -> Result<u64, FieldError> {
        Ok(decode_bcd(self.take(n)?)?)
    }

    /// A BCD2 game number (0000–9999, so it fits in u16).
    pub(crate) fn game(&mut self) -> Result<u16, FieldError> {
        self.bcd(2).map(|g| g as u16)
    }
}
