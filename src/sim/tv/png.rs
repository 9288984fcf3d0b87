//! A minimal PNG encoder for `screencap -p`: 8-bit RGB, no interlace, the
//! image data in *stored* (uncompressed) deflate blocks inside a zlib
//! stream. Any decoder reads it; a dependency would buy only compression,
//! which a simulated screen on loopback does not need.

/// PNG's 8-byte signature.
pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];

/// Largest stored deflate block (its length is a u16).
const STORED_MAX: usize = 0xFFFF;

/// Encodes `width` × `height` pixels given row by row as RGB triples by
/// `pixel(x, y)`.
pub fn encode_rgb(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    // Each row starts with its filter type, 0 (none).
    let row = 1 + 3 * width as usize;
    let mut raw = Vec::with_capacity(row * height as usize);
    for y in 0..height {
        raw.push(0);
        for x in 0..width {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut out = SIGNATURE.to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// length, type, data, CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // Callers' chunks are far below 4 GiB (a screen of a few hundred KiB).
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(STORED_MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 5 * blocks + 6);
    // CMF 0x78: deflate, 32 KiB window; FLG 0x01 makes CMF·256+FLG a multiple of 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(STORED_MAX).peekable();
    if chunks.peek().is_none() {
        // An empty image still needs one final block.
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        // chunks() yields at most STORED_MAX bytes.
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that cannot overflow b before the reduction.
    for block in data.chunks(5552) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// CRC-32 (ISO 3309, reflected, polynomial 0xEDB88320), as PNG chunks use.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut c = 0xFFFF_FFFFu32;
    for &byte in data {
        c = TABLE[((c ^ u32::from(byte)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        // Standard check values for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"123456789"), 0x091E_01DE);
        assert_eq!(adler32(b""), 1);
        // IEND's CRC is the same in every PNG.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn layout_of_a_small_image() {
        let png = encode_rgb(2, 1, |x, _| [x as u8, 0x80, 0xFF]);
        assert_eq!(png[..8], SIGNATURE);
        // IHDR: length 13, then the type.
        assert_eq!(png[8..16], [0, 0, 0, 13, b'I', b'H', b'D', b'R']);
        assert_eq!(png[16..24], [0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(
            png[png.len() - 12..],
            [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]
        );
        // IDAT: zlib header, one final stored block of 7 bytes, adler32.
        let idat = &png[33..];
        assert_eq!(idat[..8], [0, 0, 0, 2 + 5 + 7 + 4, b'I', b'D', b'A', b'T']);
        assert_eq!(idat[8..15], [0x78, 0x01, 1, 7, 0, !7, 0xFF]);
        assert_eq!(idat[15..22], [0, 0, 0x80, 0xFF, 1, 0x80, 0xFF]);
    }

    #[test]
    fn large_images_span_several_stored_blocks() {
        let data = vec![7u8; STORED_MAX * 2 + 3];
        let z = zlib_stored(&data);
        assert_eq!(z.len(), 2 + 3 * 5 + data.len() + 4);
        // First block not final, last block final with 3 bytes.
        assert_eq!(z[2], 0);
        let last = 2 + 2 * (5 + STORED_MAX);
        assert_eq!(z[last..last + 5], [1, 3, 0, 0xFC, 0xFF]);
        assert_eq!(
            zlib_stored(&[]),
            [0x78, 0x01, 1, 0, 0, 0xFF, 0xFF, 0, 0, 0, 1]
        );
    }
}
