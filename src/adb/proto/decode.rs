//! What every chunk-safe decoder here returns, and the one buffer helper they
//! share. Decoders take their input as `&mut &[u8]` and consume only what the
//! current frame needs, so a buffer never holds more than one frame and the
//! rest of the input stays with the caller for the next call.

/// The outcome of feeding bytes to a decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<T, E> {
    /// The input is used up inside a frame; not an error.
    NeedMore,
    /// One whole frame. Input after it is left unread.
    Done(T),
    /// The bytes cannot be a frame. Decoders keep this outcome: the stream
    /// has lost sync and there is no way to find the next frame.
    Invalid(E),
}

/// Moves bytes from `input` into `buf` until it holds `want` bytes; true once
/// it does.
pub(crate) fn fill(buf: &mut Vec<u8>, want: usize, input: &mut &[u8]) -> bool {
    let missing = want.saturating_sub(buf.len());
    let (now, rest) = input.split_at(missing.min(input.len()));
    buf.extend_from_slice(now);
    *input = rest;
    buf.len() >= want
}

/// A little-endian u32 at `at`, or 0 where the buffer is short (callers read
/// only buffers that `fill` has completed).
pub(crate) fn le_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_takes_only_what_is_missing() {
        let mut buf = vec![1];
        let mut input: &[u8] = &[2, 3, 4, 5];
        assert!(fill(&mut buf, 3, &mut input));
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(input, [4, 5]);
        let mut short: &[u8] = &[9];
        assert!(!fill(&mut buf, 5, &mut short));
        assert_eq!(buf, [1, 2, 3, 9]);
        assert!(short.is_empty());
    }

    #[test]
    fn le_u32_is_little_endian_and_total() {
        assert_eq!(le_u32(&[0x78, 0x56, 0x34, 0x12, 0xFF], 0), 0x1234_5678);
        assert_eq!(le_u32(&[1, 2, 3], 0), 0);
        assert_eq!(le_u32(&[1, 2, 3, 4], 2), 0);
    }
}
