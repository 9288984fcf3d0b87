//! Unescaping of received bytes when the port reads with `INPCK|PARMRK` in
//! space parity (§1.2): a byte that arrived with the 9th (wakeup) bit set
//! fails parity and is delivered as `FF 00 b`; a real `FF` as `FF FF`.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Plain,
    Escape,
    Marked,
}

/// Undoes PARMRK marking across reads: an escape may be split anywhere.
#[derive(Clone, Debug, Default)]
pub struct ParmrkDecoder {
    state: State,
}

impl ParmrkDecoder {
    /// Appends the decoded bytes of `input` to `bytes`, and the index in
    /// `bytes` of each byte that carried the wakeup bit to `wakeup`.
    pub fn push(&mut self, input: &[u8], bytes: &mut Vec<u8>, wakeup: &mut Vec<usize>) {
        for &b in input {
            self.state = match (self.state, b) {
                (State::Plain, 0xFF) => State::Escape,
                (State::Plain, b) => {
                    bytes.push(b);
                    State::Plain
                }
                (State::Escape, 0xFF) => {
                    bytes.push(0xFF);
                    State::Plain
                }
                (State::Escape, 0x00) => State::Marked,
                // Not a PARMRK sequence (the flag was off when the byte came
                // in): keep both bytes rather than lose data.
                (State::Escape, b) => {
                    bytes.extend([0xFF, b]);
                    State::Plain
                }
                (State::Marked, b) => {
                    wakeup.push(bytes.len());
                    bytes.push(b);
                    State::Plain
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], cut: usize) -> (Vec<u8>, Vec<usize>) {
        let mut d = ParmrkDecoder::default();
        let (mut bytes, mut wakeup) = (Vec::new(), Vec::new());
        for piece in input.chunks(cut) {
            d.push(piece, &mut bytes, &mut wakeup);
        }
        (bytes, wakeup)
    }

    #[test]
    fn unescapes_marks_and_literal_ff_in_any_chunking() {
        // A chirp from address 5 (marked), then an RTE frame holding FF.
        let wire = [0xFF, 0x00, 0x05, 0x01, 0xFF, 0xFF, 0x6F, 0xED, 0x3E];
        for cut in 1..=wire.len() {
            assert_eq!(
                decode_in_pieces(&wire, cut),
                (vec![0x05, 0x01, 0xFF, 0x6F, 0xED, 0x3E], vec![0]),
                "pieces of {cut}"
            );
        }
    }

    #[test]
    fn marked_ff_and_zero_and_stray_escape() {
        assert_eq!(
            decode_in_pieces(&[0x01, 0xFF, 0x00, 0xFF, 0xFF, 0x00, 0x00], 2),
            (vec![0x01, 0xFF, 0x00], vec![1, 2])
        );
        assert_eq!(
            decode_in_pieces(&[0xFF, 0x41, 0x42], 1),
            (vec![0xFF, 0x41, 0x42], vec![])
        );
        // An escape at the very end waits for its next byte.
        assert_eq!(decode_in_pieces(&[0x10, 0xFF], 1), (vec![0x10], vec![]));
    }
}
