//! A release: the binary plus a signed JSON manifest. The signature is
//! ed25519 over `canonical(version, arch, size, sha256)`, so the manifest's
//! JSON layout (key order, spaces) does not matter; the format is in
//! docs/OPERATIONS.md.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The prefix of a public key in `trusted_keys` and in `release keygen`'s output.
pub const PUBLIC_PREFIX: &str = "ed25519:";
/// The prefix of a private key file's one line.
const PRIVATE_PREFIX: &str = "ed25519-private:";
/// The first line of the signed bytes: a signature for anything else is useless here.
const DOMAIN: &str = "sitelink-release-v1";

/// The architecture names of the .deb, for the running target.
pub fn running_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else if cfg!(target_arch = "arm") {
        "armhf"
    } else {
        std::env::consts::ARCH
    }
}

/// `{version, arch, size, sha256, key_id, signature}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub arch: String,
    pub size: u64,
    /// Of the binary, lower-case hex.
    pub sha256: String,
    /// Which trusted key signed it (`key_id` of that key).
    pub key_id: String,
    /// ed25519 over `canonical`, base64.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a sitelink release manifest: {error}")]
    BadManifest { path: PathBuf, error: String },
    #[error(
        "{path}: not a private key file (one line `{PRIVATE_PREFIX}BASE64` from `sitelink release keygen`)"
    )]
    BadPrivateKey { path: PathBuf },
    #[error(
        "{0}: a key must be `{PUBLIC_PREFIX}` and 32 bytes in base64, as `sitelink release keygen` prints"
    )]
    BadPublicKey(String),
    #[error(
        "version `{0}` is not MAJOR.MINOR.PATCH (digits, optionally -PRERELEASE of letters, digits, dots)"
    )]
    BadVersion(String),
    #[error("{path}: exists; remove it or choose another directory")]
    Exists { path: PathBuf },
    #[error("{manifest}: refused: {why}")]
    Refused { manifest: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The bytes that are signed.
pub fn canonical(version: &str, arch: &str, size: u64, sha256: &str) -> Vec<u8> {
    format!("{DOMAIN}\nversion={version}\narch={arch}\nsize={size}\nsha256={sha256}\n").into_bytes()
}

/// A short name for a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn public_line(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", B64.encode(key.as_bytes()))
}

/// Parses `ed25519:BASE64`.
pub fn parse_public(text: &str) -> Result<VerifyingKey, ReleaseError> {
    let bad = || ReleaseError::BadPublicKey(text.to_string());
    let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
    let bytes: [u8; 32] = B64
        .decode(b64)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// Whether a version string is MAJOR.MINOR.PATCH[-PRE]; it becomes a
/// directory name, so nothing else (no `/`, no `..`) may pass.
pub fn check_version(v: &str) -> Result<(), ReleaseError> {
    let bad = || ReleaseError::BadVersion(v.to_string());
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(pre) = pre
        && (pre.is_empty()
            || pre.len() > 32
            || !pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
    {
        return Err(bad());
    }
    Ok(())
}

/// Orders versions: numerically by MAJOR.MINOR.PATCH; a pre-release is
/// before its release, and pre-releases compare as text. Both must pass
/// `check_version`.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> (Vec<u64>, Option<&str>) {
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        let nums = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        (nums, pre)
    }
    let (an, ap) = key(a);
    let (bn, bp) = key(b);
    an.cmp(&bn).then_with(|| match (ap, bp) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

/// SHA-256 and size of a file, streamed.
pub fn digest_file(path: &Path) -> Result<(u64, String), ReleaseError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// `release keygen`: DIR/release.key (0600) and DIR/release.pub; the
/// public line to put in `trusted_keys`.
pub fn keygen(dir: &Path) -> Result<String, ReleaseError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let private = dir.join("release.key");
    let public = dir.join("release.pub");
    for p in [&private, &public] {
        if p.exists() {
            return Err(ReleaseError::Exists { path: p.clone() });
        }
    }
    // ThreadRng: a CSPRNG seeded from the OS.
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(io(&private))?;
    writeln!(f, "{PRIVATE_PREFIX}{}", B64.encode(seed)).map_err(io(&private))?;
    f.sync_all().map_err(io(&private))?;
    let line = public_line(&key.verifying_key());
    std::fs::write(&public, format!("{line}\n")).map_err(io(&public))?;
    Ok(line)
}

fn read_private(path: &Path) -> Result<SigningKey, ReleaseError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = || ReleaseError::BadPrivateKey {
        path: path.to_path_buf(),
    };
    let b64 = text.trim().strip_prefix(PRIVATE_PREFIX).ok_or_else(bad)?;
    let seed: [u8; 32] = B64
        .decode(b64)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `release sign`: writes the manifest for `binary`.
pub fn sign(
    key_file: &Path,
    binary: &Path,
    version: &str,
    arch: &str,
    out: &Path,
) -> Result<Manifest, ReleaseError> {
    check_version(version)?;
    let key = read_private(key_file)?;
    let (size, sha256) = digest_file(binary)?;
    let signature = key.sign(&canonical(version, arch, size, &sha256));
    let manifest = Manifest {
        version: version.to_string(),
        arch: arch.to_string(),
        size,
        sha256,
        key_id: key_id(&key.verifying_key()),
        signature: B64.encode(signature.to_bytes()),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| ReleaseError::BadManifest {
        path: out.to_path_buf(),
        error: e.to_string(),
    })?;
    std::fs::write(out, format!("{text}\n")).map_err(io(out))?;
    Ok(manifest)
}

pub fn read_manifest(path: &Path) -> Result<Manifest, ReleaseError> {
    let text = std::fs::read(path).map_err(io(path))?;
    parse_manifest(path, &text)
}

pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, ReleaseError> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ReleaseError::BadManifest {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    check_version(&m.version).map_err(|e| ReleaseError::BadManifest {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    Ok(m)
}

/// What a manifest is checked against.
pub struct Policy<'a> {
    pub trusted: &'a [VerifyingKey],
    /// The version running now (the OTA one, else the package's).
    pub running: &'a str,
    pub allow_downgrade: bool,
    pub max_bytes: u64,
}

/// Checks the manifest alone: arch, key, signature, size limit, version.
/// Every refusal names the manifest and says what to do.
pub fn check_manifest(
    manifest_path: &Path,
    m: &Manifest,
    policy: &Policy<'_>,
) -> Result<(), ReleaseError> {
    let refuse = |why: String| ReleaseError::Refused {
        manifest: manifest_path.to_path_buf(),
        why,
    };
    if m.arch != running_arch() {
        return Err(refuse(format!(
            "the release is for {} but this machine is {}: use the {} release",
            m.arch,
            running_arch(),
            running_arch()
        )));
    }
    let Some(key) = policy.trusted.iter().find(|k| key_id(k) == m.key_id) else {
        return Err(refuse(format!(
            "signed by key {}, which is not in [update] trusted_keys ({} trusted): add its public key, or sign with a trusted one",
            m.key_id,
            policy.trusted.len()
        )));
    };
    let sig_bytes: [u8; 64] = B64
        .decode(&m.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            refuse("the signature is not 64 bytes of base64: sign the release again".into())
        })?;
    let sig = Signature::from_bytes(&sig_bytes);
    key.verify(&canonical(&m.version, &m.arch, m.size, &m.sha256), &sig)
        .map_err(|_| {
            refuse(format!(
                "bad signature (key {}): the manifest was altered or signed for another binary; fetch it again or sign again",
                m.key_id
            ))
        })?;
    if m.size > policy.max_bytes {
        return Err(refuse(format!(
            "the binary is {} bytes, over [update] max_bytes ({}): raise max_bytes if this is expected",
            m.size, policy.max_bytes
        )));
    }
    if compare_versions(&m.version, policy.running) != std::cmp::Ordering::Greater
        && !policy.allow_downgrade
    {
        return Err(refuse(format!(
            "version {} is not newer than the running {}: set [update] allow_downgrade = true to go back",
            m.version, policy.running
        )));
    }
    Ok(())
}

/// Checks the binary against a checked manifest: size first (a truncated
/// download), then the hash.
pub fn check_binary(binary: &Path, m: &Manifest) -> Result<(), ReleaseError> {
    let (size, sha256) = digest_file(binary)?;
    if size != m.size {
        return Err(ReleaseError::Refused {
            manifest: binary.to_path_buf(),
            why: format!(
                "{size} bytes but the manifest says {}: the file is truncated or not this release; fetch it again",
                m.size
            ),
        });
    }
    if sha256 != m.sha256 {
        return Err(ReleaseError::Refused {
            manifest: binary.to_path_buf(),
            why: format!(
                "SHA-256 {sha256} but the manifest says {}: the file is corrupt or not this release; fetch it again",
                m.sha256
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_order_and_validate() {
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.0-rc.1", "1.0.0"), Ordering::Less);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Ordering::Equal);
        for bad in ["1.0", "../1.0.0", "1.0.0/x", "1.0.0-", "a.b.c", "1.0.0-x/y"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        check_version("0.2.0-beta.1").expect("valid");
    }

    #[test]
    fn public_keys_round_trip_and_bad_ones_are_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        assert_eq!(parse_public(&public_line(&key)).expect("parses"), key);
        assert!(parse_public("ed25519:AAAA").is_err());
        assert!(parse_public("rsa:AAAA").is_err());
    }
}
