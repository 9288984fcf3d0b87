//! ADB authentication (§2): RSA-2048 keys, token signatures and Android's own
//! public-key format. Pure computation, no files: `adb::key` keeps the keys
//! on disk.
//!
//! Both sides live here. The host signs tokens ([`AdbKey::sign_token`]) and
//! sends its public key ([`AndroidPublicKey::auth_payload`]); the device side
//! (the TV simulator) reads that payload ([`AndroidPublicKey::parse_line`])
//! and checks signatures ([`AndroidPublicKey::verify`]).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::rand_core::TryCryptoRng;
use rsa::traits::PublicKeyParts as _;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha1::Sha1;

/// Bytes in a device token (`TOKEN_SIZE`); the token is signed as if it
/// were a SHA-1 digest, so it must be exactly the digest's size.
pub const TOKEN_SIZE: usize = 20;
/// Android accepts only 2048-bit keys (`ANDROID_PUBKEY_MODULUS_SIZE`).
pub const KEY_BITS: usize = 2048;
/// Bytes in the binary `RSAPublicKey` struct.
pub const PUBLIC_KEY_BLOB_LEN: usize = 524;

const WORDS: usize = KEY_BITS / 32;
const MODULUS_BYTES: usize = KEY_BITS / 8;
/// Comments longer than this are cut so the AUTH payload stays well under
/// the 4096 bytes old devices accept before CNXN (§1.3).
const MAX_COMMENT: usize = 256;

/// Why a key, token or signature could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the key has {bits} bits; Android accepts only {KEY_BITS}-bit RSA keys")]
    KeySize { bits: usize },
    #[error("the public exponent does not fit in 32 bits")]
    Exponent,
    #[error("token has {len} bytes; a device token has {TOKEN_SIZE}")]
    TokenSize { len: usize },
    #[error("not an RSA private key in PEM (PKCS#8 or PKCS#1): {0}")]
    Pem(String),
    #[error("public key is not base64: {0}")]
    Base64(String),
    #[error("public key has {len} bytes; Android's RSAPublicKey has {PUBLIC_KEY_BLOB_LEN}")]
    BlobSize { len: usize },
    #[error("public key says {words} modulus words; a 2048-bit key has {WORDS}")]
    BlobWords { words: u32 },
    #[error("RSA: {0}")]
    Rsa(String),
}

fn rsa_err(e: rsa::Error) -> AuthError {
    AuthError::Rsa(e.to_string())
}

/// The host's key pair: an RSA-2048 private key and its Android public key.
/// Clones share one key.
#[derive(Clone)]
pub struct AdbKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    private: PrivateKey,
    public: AndroidPublicKey,
}

impl fmt::Debug for AdbKey {
    // Never the private parts; the fingerprint is what a technician compares.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdbKey({})", self.public_key().fingerprint())
    }
}

impl AdbKey {
    /// A new 2048-bit key with exponent 65537, like `adb keygen`.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<AdbKey, AuthError> {
        AdbKey::from_private_key(PrivateKey::new(rng, KEY_BITS).map_err(rsa_err)?)
    }

    pub fn from_private_key(private: PrivateKey) -> Result<AdbKey, AuthError> {
        let public = AndroidPublicKey::from_rsa(private.as_public_key())?;
        Ok(AdbKey {
            inner: Arc::new(KeyInner { private, public }),
        })
    }

    /// Reads `adbkey`: PKCS#8 (`BEGIN PRIVATE KEY`, what adb writes) or the
    /// older PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<AdbKey, AuthError> {
        let private = match PrivateKey::from_pkcs8_pem(pem) {
            Ok(k) => k,
            Err(pkcs8) => {
                PrivateKey::from_pkcs1_pem(pem).map_err(|_| AuthError::Pem(pkcs8.to_string()))?
            }
        };
        AdbKey::from_private_key(private)
    }

    /// The private key as PKCS#8 PEM, the format of Android's `adbkey`.
    pub fn to_pem(&self) -> Result<rsa::pkcs8::der::zeroize::Zeroizing<String>, AuthError> {
        self.inner
            .private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::Pem(e.to_string()))
    }

    pub fn public_key(&self) -> &AndroidPublicKey {
        &self.inner.public
    }

    /// AUTH SIGNATURE for a device token: PKCS#1 v1.5 over the token taken as
    /// an already computed SHA-1 digest (DigestInfo prefix + token), since
    /// adbd verifies with `RSA_verify(NID_sha1, token, …)`. Hashing the token
    /// first would give a signature every TV rejects (§2.1).
    pub fn sign_token(&self, token: &[u8]) -> Result<Vec<u8>, AuthError> {
        if token.len() != TOKEN_SIZE {
            return Err(AuthError::TokenSize { len: token.len() });
        }
        self.inner
            .private
            .pkcs1v15_sign_prehash::<Sha1>(token)
            .map_err(rsa_err)
    }
}

/// A public key in Android's `RSAPublicKey` form (§2.2), with the RSA key it
/// stands for.
#[derive(Clone, PartialEq, Eq)]
pub struct AndroidPublicKey {
    blob: Box<[u8; PUBLIC_KEY_BLOB_LEN]>,
    key: PublicKey,
}

impl fmt::Debug for AndroidPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AndroidPublicKey({})", self.fingerprint())
    }
}

impl AndroidPublicKey {
    /// Builds the 524-byte struct: word count, `n0inv`, `n`, `rr`, `e`, all
    /// little-endian and zero-padded (unpadded encoders make 523-byte blobs
    /// that adbd rejects).
    pub fn from_rsa(key: &PublicKey) -> Result<AndroidPublicKey, AuthError> {
        let bits = key.n().bit_width_vartime() as usize;
        if bits != KEY_BITS {
            return Err(AuthError::KeySize { bits });
        }
        let e = exponent(key)?;
        let n = words_le(&key.n_bytes());
        let mut blob = Box::new([0u8; PUBLIC_KEY_BLOB_LEN]);
        let mut at = 0;
        let mut put = |word: u32| {
            if let Some(slot) = blob.get_mut(at..at + 4) {
                slot.copy_from_slice(&word.to_le_bytes());
            }
            at += 4;
        };
        put(WORDS as u32);
        put(n0inv(n[0]));
        n.iter().for_each(|&w| put(w));
        rr(&n).iter().for_each(|&w| put(w));
        put(e);
        Ok(AndroidPublicKey {
            blob,
            key: key.clone(),
        })
    }

    /// Reads the struct as adbd does: length, `n` and `e` (`n0inv` and `rr`
    /// are only a speed-up for the verifier and are not checked).
    pub fn from_blob(bytes: &[u8]) -> Result<AndroidPublicKey, AuthError> {
        let blob: [u8; PUBLIC_KEY_BLOB_LEN] = bytes
            .try_into()
            .map_err(|_| AuthError::BlobSize { len: bytes.len() })?;
        let word =
            |at: usize| u32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
        let words = word(0);
        if words as usize != WORDS {
            return Err(AuthError::BlobWords { words });
        }
        let n = BoxedUint::from_le_slice_vartime(&blob[8..8 + MODULUS_BYTES]);
        let e = BoxedUint::from(word(PUBLIC_KEY_BLOB_LEN - 4));
        let key = PublicKey::new(n, e).map_err(rsa_err)?;
        let bits = key.n().bit_width_vartime() as usize;
        if bits != KEY_BITS {
            return Err(AuthError::KeySize { bits });
        }
        Ok(AndroidPublicKey {
            blob: Box::new(blob),
            key,
        })
    }

    /// Reads `base64 [comment]`: a line of `adbkey.pub` or `adb_keys`, or an
    /// AUTH RSAPUBLICKEY payload (which ends in NUL). Returns the comment too.
    pub fn parse_line(line: &[u8]) -> Result<(AndroidPublicKey, String), AuthError> {
        let end = line.iter().position(|&b| b == 0).unwrap_or(line.len());
        let text = String::from_utf8_lossy(line.get(..end).unwrap_or_default());
        let text = text.trim();
        let (b64, comment) = text.split_once([' ', '\t']).unwrap_or((text, ""));
        let blob = BASE64
            .decode(b64)
            .map_err(|e| AuthError::Base64(e.to_string()))?;
        Ok((
            AndroidPublicKey::from_blob(&blob)?,
            comment.trim().to_string(),
        ))
    }

    pub fn blob(&self) -> &[u8; PUBLIC_KEY_BLOB_LEN] {
        &self.blob
    }

    pub fn rsa(&self) -> &PublicKey {
        &self.key
    }

    /// `base64 comment`: the content of `adbkey.pub` and of a line in the
    /// TV's `adb_keys`. The comment (adb: `user@host`) is cut to printable
    /// ASCII on one line.
    pub fn to_line(&self, comment: &str) -> String {
        let comment: String = comment
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(MAX_COMMENT)
            .collect();
        let mut line = BASE64.encode(self.blob.as_slice());
        let comment = comment.trim();
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(comment);
        }
        line
    }

    /// The AUTH RSAPUBLICKEY payload: the line and the NUL adbd needs.
    pub fn auth_payload(&self, comment: &str) -> Vec<u8> {
        let mut payload = self.to_line(comment).into_bytes();
        payload.push(0);
        payload
    }

    /// What the TV shows under "Allow USB debugging?": MD5 of the struct as
    /// `AA:BB:…` hex, so the installer can compare it with our log.
    pub fn fingerprint(&self) -> String {
        let digest = Md5::digest(self.blob.as_slice());
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// The device-side check of an AUTH SIGNATURE against a token it sent.
    pub fn verify(&self, token: &[u8], signature: &[u8]) -> bool {
        token.len() == TOKEN_SIZE
            && self
                .key
                .pkcs1v15_verify_prehash::<Sha1>(token, signature)
                .is_ok()
    }
}

fn exponent(key: &PublicKey) -> Result<u32, AuthError> {
    let bytes = key.e_bytes();
    if bytes.len() > 4 {
        return Err(AuthError::Exponent);
    }
    Ok(bytes.iter().fold(0u32, |e, &b| (e << 8) | u32::from(b)))
}

/// A 2048-bit number from big-endian bytes as 64 little-endian u32 words;
/// shorter input is zero-padded, longer input keeps its low 256 bytes.
fn words_le(be: &[u8]) -> [u32; WORDS] {
    let mut words = [0u32; WORDS];
    for (i, &b) in be.iter().rev().take(MODULUS_BYTES).enumerate() {
        words[i / 4] |= u32::from(b) << (8 * (i % 4));
    }
    words
}

/// −n⁻¹ mod 2³² by Newton's iteration: x ← x(2 − n·x) doubles the correct
/// low bits, and x = n is right to 3 bits for odd n, so four steps give 48.
fn n0inv(n0: u32) -> u32 {
    let mut x = n0;
    for _ in 0..4 {
        x = x.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(x)));
    }
    x.wrapping_neg()
}

/// (2²⁰⁴⁸)² mod n, by doubling 1 modulo n 4096 times. n has its top bit set
/// (checked by the caller), so 2r < 2n and one subtraction reduces it.
fn rr(n: &[u32; WORDS]) -> [u32; WORDS] {
    let mut r = [0u32; WORDS];
    r[0] = 1;
    for _ in 0..2 * KEY_BITS {
        let mut carry = 0u32;
        for w in r.iter_mut() {
            let next = *w >> 31;
            *w = (*w << 1) | carry;
            carry = next;
        }
        if carry == 1 || !less_than(&r, n) {
            let mut borrow = false;
            for (w, &m) in r.iter_mut().zip(n) {
                let (d, b1) = w.overflowing_sub(m);
                let (d, b2) = d.overflowing_sub(u32::from(borrow));
                *w = d;
                borrow = b1 || b2;
            }
        }
    }
    r
}

fn less_than(a: &[u32; WORDS], b: &[u32; WORDS]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::proto::test_key;

    fn blob_word(blob: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(blob[4 * i..4 * i + 4].try_into().unwrap())
    }

    #[test]
    fn blob_fields_follow_android_pubkey() {
        let key = test_key();
        let blob = key.public_key().blob();
        assert_eq!(blob.len(), 524);
        assert_eq!(blob_word(blob, 0), 64);
        // n, little-endian, is the key's modulus.
        let mut n_be = blob[8..264].to_vec();
        n_be.reverse();
        assert_eq!(&n_be[..], &key.public_key().rsa().n_bytes()[..]);
        // n0inv * n[0] ≡ -1 (mod 2^32).
        let n0 = blob_word(blob, 2);
        let n0inv = blob_word(blob, 1);
        assert_eq!(n0.wrapping_mul(n0inv), u32::MAX);
        // rr = 2^4096 mod n, checked with the bignum library.
        let n = key.public_key().rsa().n();
        let two_4096 = BoxedUint::one_with_precision(4160).shl(4096);
        let expected = two_4096.rem_vartime(n).to_le_bytes();
        assert_eq!(&blob[264..520], &expected[..256]);
        assert!(expected[256..].iter().all(|&b| b == 0));
        assert_eq!(blob_word(blob, 130), 65537);
    }

    #[test]
    fn n0inv_small_cases() {
        assert_eq!(n0inv(1), u32::MAX);
        for n in [3u32, 0xFFFF_FFFF, 0x1234_5677, 65537] {
            assert_eq!(n.wrapping_mul(n0inv(n)), u32::MAX, "{n:#x}");
        }
    }

    #[test]
    fn rr_on_a_known_modulus() {
        // n = 2^2048 - 1: 2^2048 ≡ 1, so rr = 1.
        let n = [u32::MAX; WORDS];
        let mut one = [0u32; WORDS];
        one[0] = 1;
        assert_eq!(rr(&n), one);
        // n = 2^2047 + 1: 2^2047 ≡ -1, 2^4096 = 4·(2^2047)^2 ≡ 4.
        let mut n = [0u32; WORDS];
        n[0] = 1;
        n[WORDS - 1] = 0x8000_0000;
        let mut four = [0u32; WORDS];
        four[0] = 4;
        assert_eq!(rr(&n), four);
    }

    #[test]
    fn signature_is_pkcs1_over_the_raw_token() {
        let key = test_key();
        let token: Vec<u8> = (1..=20).collect();
        let sig = key.sign_token(&token).unwrap();
        assert_eq!(sig.len(), 256);
        assert!(key.public_key().verify(&token, &sig));
        // The signed block must be the DigestInfo for SHA-1 followed by the
        // token itself, not its hash: check it with the unprefixed scheme,
        // which compares the whole `prefix || token` after the padding.
        let prefix = [
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00, 0x04,
            0x14,
        ];
        let rsa = key.public_key().rsa();
        let unprefixed = || rsa::Pkcs1v15Sign::new_unprefixed();
        assert!(
            rsa.verify(unprefixed(), &[&prefix[..], &token].concat(), &sig)
                .is_ok()
        );
        let hashed = Sha1::digest(&token);
        assert!(
            rsa.verify(unprefixed(), &[&prefix[..], &hashed].concat(), &sig)
                .is_err()
        );
    }

    #[test]
    fn wrong_token_or_key_fails_verification() {
        let key = test_key();
        let token = [7u8; 20];
        let sig = key.sign_token(&token).unwrap();
        assert!(!key.public_key().verify(&[8u8; 20], &sig));
        assert!(!key.public_key().verify(&token[..19], &sig));
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert!(!key.public_key().verify(&token, &bad));
        assert_eq!(
            key.sign_token(&[0; 32]),
            Err(AuthError::TokenSize { len: 32 })
        );
    }

    #[test]
    fn public_key_line_and_payload_round_trip() {
        let key = test_key();
        let line = key.public_key().to_line("tech@pi-site\n");
        assert!(line.ends_with(" tech@pi-site"));
        // 524 bytes of base64 are 700 characters.
        assert_eq!(line.find(' '), Some(700));
        let payload = key.public_key().auth_payload("tech@pi-site");
        assert_eq!(payload.len(), 700 + 1 + 12 + 1);
        assert_eq!(payload.last(), Some(&0));
        let (parsed, comment) = AndroidPublicKey::parse_line(&payload).unwrap();
        assert_eq!(&parsed, key.public_key());
        assert_eq!(comment, "tech@pi-site");
        let (from_line, _) = AndroidPublicKey::parse_line(line.as_bytes()).unwrap();
        assert_eq!(from_line.fingerprint(), key.public_key().fingerprint());
    }

    #[test]
    fn fingerprint_is_md5_of_the_blob() {
        let key = test_key();
        let fp = key.public_key().fingerprint();
        assert_eq!(fp.len(), 16 * 3 - 1);
        let expected: Vec<String> = Md5::digest(key.public_key().blob().as_slice())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(fp, expected.join(":"));
    }

    #[test]
    fn bad_blobs_are_typed_errors() {
        let key = test_key();
        let blob = key.public_key().blob();
        assert_eq!(
            AndroidPublicKey::from_blob(&blob[..523]),
            Err(AuthError::BlobSize { len: 523 })
        );
        let mut wrong_words = *blob;
        wrong_words[0] = 32;
        assert_eq!(
            AndroidPublicKey::from_blob(&wrong_words),
            Err(AuthError::BlobWords { words: 32 })
        );
        assert!(matches!(
            AndroidPublicKey::parse_line(b"!!!notbase64 x"),
            Err(AuthError::Base64(_))
        ));
        let mut even = *blob;
        even[8] &= 0xFE; // an even modulus is no RSA key
        assert!(matches!(
            AndroidPublicKey::from_blob(&even),
            Err(AuthError::Rsa(_))
        ));
    }

    #[test]
    fn pem_round_trip_is_pkcs8() {
        let key = test_key();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = AdbKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(matches!(
            AdbKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(AuthError::Pem(_))
        ));
    }

    #[test]
    fn pkcs1_pem_is_accepted_too() {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let key = test_key();
        let pem = key.inner.private.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(
            AdbKey::from_pem(&pem).unwrap().public_key(),
            key.public_key()
        );
    }
}
