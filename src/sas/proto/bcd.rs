//! Packed BCD as SAS sends it: two digits per byte, most significant byte
//! first, nibbles above 9 rejected (MON NACKs them). Meters are BCD counters
//! of a fixed width, so they wrap: [`meter_delta`] turns a wrap into the
//! forward distance instead of a negative jump.

use std::fmt;

/// A packed BCD field that could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BcdError {
    /// A nibble above 9.
    #[error("byte {byte:02X} is not packed BCD")]
    BadDigit { byte: u8 },
    /// The value needs more digits than the field has.
    #[error("{value} does not fit in {width} BCD bytes")]
    TooLarge { value: u64, width: usize },
}

/// Reads a packed BCD number, most significant byte first. Up to 19 digits
/// fit; wider fields holding a larger value are `TooLarge`.
pub fn decode_bcd(bytes: &[u8]) -> Result<u64, BcdError> {
    let mut value: u64 = 0;
    for &byte in bytes {
        let (hi, lo) = (byte >> 4, byte & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(BcdError::BadDigit { byte });
        }
        value = value
            .checked_mul(100)
            .and_then(|v| v.checked_add(u64::from(hi * 10 + lo)))
            .ok_or(BcdError::TooLarge {
                value: u64::MAX,
                width: bytes.len(),
            })?;
    }
    Ok(value)
}

/// Appends `value` as `width` bytes of packed BCD.
pub fn encode_bcd(value: u64, width: usize, out: &mut Vec<u8>) -> Result<(), BcdError> {
    if bcd_capacity(width).is_some_and(|cap| u128::from(value) >= cap) {
        return Err(BcdError::TooLarge { value, width });
    }
    let start = out.len();
    out.resize(start + width, 0);
    let mut rest = value;
    for slot in out[start..].iter_mut().rev() {
        let pair = (rest % 100) as u8;
        *slot = (pair / 10) << 4 | (pair % 10);
        rest /= 100;
    }
    Ok(())
}

/// 10^(2·width), or `None` when it exceeds anything a u64 can hold anyway.
fn bcd_capacity(width: usize) -> Option<u128> {
    u32::try_from(width * 2)
        .ok()
        .and_then(|digits| 10u128.checked_pow(digits))
}

/// The increase of a meter from `prev` to `now` when the meter holds
/// `width_digits` decimal digits and wraps to zero after the largest value
/// (MON keeps only the low digits that fit). A reading lower than the previous
/// one is a wrap, never a negative delta; a deliberate reset is announced
/// separately by exception 7A and is the caller's business.
pub fn meter_delta(prev: u64, now: u64, width_digits: u32) -> u64 {
    match 10u128.checked_pow(width_digits) {
        Some(modulus) if modulus <= u128::from(u64::MAX) => {
            let (p, n) = (u128::from(prev) % modulus, u128::from(now) % modulus);
            // Both are below the modulus, so the result is too: it fits in u64.
            ((n + modulus - p) % modulus) as u64
        }
        // Wider than a u64: the counter cannot have wrapped within u64 range.
        _ => now.wrapping_sub(prev),
    }
}

/// Date and time as 7E/7F carry them: `MMDDYYYY` then `HHMMSS`, all BCD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// Bytes on the wire.
    pub const LEN: usize = 7;

    /// Whether the fields form a real calendar date and time of day (an EGM
    /// NACKs 7F otherwise).
    pub fn is_valid(&self) -> bool {
        let y = self.year;
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&self.day) && self.hour < 24 && self.minute < 60 && self.second < 60
    }

    /// Appends the 7 BCD bytes. Fails only on fields that exceed their digits
    /// (year > 9999, others > 99).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), BcdError> {
        for (v, w) in [
            (u64::from(self.month), 1),
            (u64::from(self.day), 1),
            (u64::from(self.year), 2),
            (u64::from(self.hour), 1),
            (u64::from(self.minute), 1),
            (u64::from(self.second), 1),
        ] {
            encode_bcd(v, w, out)?;
        }
        Ok(())
    }

    /// Reads the 7 BCD bytes; a bad nibble is an error, an impossible date is
    /// not (see [`DateTime::is_valid`]).
    pub fn decode(bytes: &[u8; Self::LEN]) -> Result<DateTime, BcdError> {
        // Each field is at most 4 digits, so the narrowing casts cannot truncate.
        let b = |i: usize| decode_bcd(&bytes[i..=i]).map(|v| v as u8);
        Ok(DateTime {
            month: b(0)?,
            day: b(1)?,
            year: decode_bcd(&bytes[2..4])? as u16,
            hour: b(4)?,
            minute: b(5)?,
            second: b(6)?,
        })
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first() {
        assert_eq!(decode_bcd(&[0x00, 0x12]), Ok(12));
        assert_eq!(decode_bcd(&[0x12, 0x34, 0x56, 0x78]), Ok(12_345_678));
        assert_eq!(decode_bcd(&[]), Ok(0));
        let mut out = vec![];
        encode_bcd(12_345_678, 4, &mut out).unwrap();
        assert_eq!(out, [0x12, 0x34, 0x56, 0x78]);
        let mut out = vec![];
        encode_bcd(12, 2, &mut out).unwrap();
        assert_eq!(out, [0x00, 0x12]);
    }

    #[test]
    fn rejects_bad_nibbles_and_overflow() {
        assert_eq!(decode_bcd(&[0x1A]), Err(BcdError::BadDigit { byte: 0x1A }));
        assert_eq!(decode_bcd(&[0xA1]), Err(BcdError::BadDigit { byte: 0xA1 }));
        assert!(matches!(
            decode_bcd(&[0x99; 10]),
            Err(BcdError::TooLarge { .. })
        ));
        let mut out = vec![];
        assert_eq!(
            encode_bcd(100_000_000, 4, &mut out),
            Err(BcdError::TooLarge {
                value: 100_000_000,
                width: 4
            })
        );
        assert!(out.is_empty());
        // A 10-byte field holds every u64.
        encode_bcd(u64::MAX, 10, &mut out).unwrap();
        assert_eq!(decode_bcd(&out), Ok(u64::MAX));
    }

    #[test]
    fn rollover_is_a_forward_delta() {
        assert_eq!(meter_delta(100, 150, 8), 50);
        assert_eq!(meter_delta(99_999_990, 5, 8), 15);
        assert_eq!(meter_delta(5, 5, 8), 0);
        assert_eq!(meter_delta(9_999_999_999, 1, 10), 2);
        assert_eq!(meter_delta(10, 12, 20), 2);
    }

    #[test]
    fn document_date_time() {
        // §14: `03 05 20 24 14 07 09` = 5 March 2024, 14:07:09.
        let bytes = [0x03, 0x05, 0x20, 0x24, 0x14, 0x07, 0x09];
        let dt = DateTime::decode(&bytes).unwrap();
        assert_eq!(
            dt,
            DateTime {
                year: 2024,
                month: 3,
                day: 5,
                hour: 14,
                minute: 7,
                second: 9
            }
        );
        assert!(dt.is_valid());
        assert_eq!(dt.to_string(), "2024-03-05 14:07:09");
        let mut out = vec![];
        dt.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert!(
            !DateTime {
                day: 30,
                month: 2,
                ..dt
            }
            .is_valid()
        );
        assert!(
            DateTime {
                day: 29,
                month: 2,
                ..dt
            }
            .is_valid()
        );
        assert!(!DateTime { hour: 24, ..dt }.is_valid());
    }
}
