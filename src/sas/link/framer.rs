//! Frames by idle gap, for media that cannot carry the wakeup bit (§1.3):
//! a quiet longer than the gap ends a frame. The EGM simulator finds polls
//! this way; tests check the line's chunking against it.

use std::time::{Duration, Instant};

use super::Chunk;

/// Bytes that arrived without a gap longer than the framer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Arrival of the first and the last chunk.
    pub start: Instant,
    pub end: Instant,
    pub bytes: Vec<u8>,
    /// Indices in `bytes` that came with the wakeup bit (serial only).
    pub wakeup: Vec<usize>,
}

#[derive(Debug)]
pub struct GapFramer {
    gap: Duration,
    current: Option<Frame>,
}

impl GapFramer {
    pub fn new(gap: Duration) -> GapFramer {
        GapFramer { gap, current: None }
    }

    /// Adds a chunk. Returns the frame before it if the chunk came after a
    /// gap (the quiet signal may not have been seen yet).
    pub fn push(&mut self, chunk: &Chunk) -> Option<Frame> {
        let done = match &self.current {
            Some(f) if chunk.at.saturating_duration_since(f.end) > self.gap => self.current.take(),
            _ => None,
        };
        let frame = self.current.get_or_insert_with(|| Frame {
            start: chunk.at,
            end: chunk.at,
            bytes: Vec::new(),
            wakeup: Vec::new(),
        });
        let base = frame.bytes.len();
        frame.wakeup.extend(chunk.wakeup.iter().map(|i| base + i));
        frame.bytes.extend_from_slice(&chunk.bytes);
        frame.end = chunk.at;
        done
    }

    /// The line was quiet for the gap: the frame so far is complete.
    pub fn quiet(&mut self) -> Option<Frame> {
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(at: Instant, bytes: &[u8], wakeup: &[usize]) -> Chunk {
        Chunk {
            at,
            bytes: bytes.to_vec(),
            wakeup: wakeup.to_vec(),
        }
    }

    #[test]
    fn splits_at_gaps_and_quiet() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = GapFramer::new(ms(5));
        assert_eq!(f.push(&chunk(t0, &[1, 2], &[])), None);
        assert_eq!(f.push(&chunk(t0 + ms(3), &[3], &[0])), None);
        let first = f.push(&chunk(t0 + ms(10), &[4], &[])).expect("gap ends it");
        assert_eq!(first.bytes, [1, 2, 3]);
        assert_eq!(first.wakeup, [2]);
        assert_eq!((first.start, first.end), (t0, t0 + ms(3)));
        let second = f.quiet().expect("quiet ends it");
        assert_eq!(second.bytes, [4]);
        assert_eq!(f.quiet(), None);
    }
}
