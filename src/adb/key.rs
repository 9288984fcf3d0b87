//! The site's ADB key on disk (§2.4): `adbkey` holds the RSA-2048 private key
//! as PKCS#8 PEM, `adbkey.pub` the Android public-key line, both exactly as
//! Android's `adb` writes them, so a technician can point their own `adb` at
//! the site key (`ADB_VENDOR_KEYS`). One key per site: a new key means
//! accepting it again on every TV, so the key is made once and kept.
//!
//! This is the only file I/O of the ADB code; the protocol core stays pure.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::proto::auth::{AdbKey, AuthError};

/// Android's file name for the private key; the public key is `adbkey.pub`.
pub const PRIVATE_KEY_FILE: &str = "adbkey";

/// Why the key files could not be used; every case names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read ADB key {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("ADB key {} is not usable: {reason}", path.display())]
    Invalid { path: PathBuf, reason: AuthError },
    #[error("cannot write ADB key {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate an ADB key for {}: {reason}", path.display())]
    Generate { path: PathBuf, reason: AuthError },
}

/// Whether [`load_or_generate`] found the key or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Loaded,
    /// A new key: every TV will ask "Allow USB debugging?" once.
    Generated,
}

/// `adbkey` → `adbkey.pub`, the name adb looks for beside the private key.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads the private key (PKCS#8 or PKCS#1 PEM).
pub fn load(private: &Path) -> Result<AdbKey, KeyError> {
    let pem = fs::read(private).map_err(|source| KeyError::Read {
        path: private.to_path_buf(),
        source,
    })?;
    let invalid = |reason| KeyError::Invalid {
        path: private.to_path_buf(),
        reason,
    };
    let pem = std::str::from_utf8(&pem).map_err(|_| invalid(AuthError::Pem("not text".into())))?;
    AdbKey::from_pem(pem).map_err(invalid)
}

/// Writes `adbkey` (mode 0600) and `adbkey.pub` beside it, each through a
/// temporary file and a rename so a crash never leaves half a key.
/// `comment` goes after the public key, adb uses `user@host`.
pub fn save(key: &AdbKey, private: &Path, comment: &str) -> Result<(), KeyError> {
    let pem = key.to_pem().map_err(|reason| KeyError::Invalid {
        path: private.to_path_buf(),
        reason,
    })?;
    write_atomically(private, pem.as_bytes(), 0o600)?;
    write_public(key, private, comment)
}

/// Loads the key, or makes and saves one if there is none. A missing
/// `adbkey.pub` is written again from the private key.
pub fn load_or_generate(private: &Path, comment: &str) -> Result<(AdbKey, KeyOrigin), KeyError> {
    match load(private) {
        Ok(key) => {
            if !public_key_path(private).exists() {
                write_public(&key, private, comment)?;
            }
            Ok((key, KeyOrigin::Loaded))
        }
        Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            let key =
                AdbKey::generate(&mut rand::rngs::SysRng).map_err(|reason| KeyError::Generate {
                    path: private.to_path_buf(),
                    reason,
                })?;
            save(&key, private, comment)?;
            Ok((key, KeyOrigin::Generated))
        }
        Err(e) => Err(e),
    }
}

fn write_public(key: &AdbKey, private: &Path, comment: &str) -> Result<(), KeyError> {
    // adb writes the line without a newline; adbd's parser takes either.
    let line = key.public_key().to_line(comment);
    write_atomically(&public_key_path(private), line.as_bytes(), 0o644)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        // The mode is set at creation, so the private key is never readable
        // by others, not even for a moment.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adb::proto::auth::AndroidPublicKey;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(PRIVATE_KEY_FILE);
        let (key, origin) = load_or_generate(&path, "sitelink@site-7").unwrap();
        assert_eq!(origin, KeyOrigin::Generated);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
        let line = fs::read(public_key_path(&path)).unwrap();
        assert_eq!(line.len(), 700 + 1 + "sitelink@site-7".len());
        let (public, comment) = AndroidPublicKey::parse_line(&line).unwrap();
        assert_eq!(&public, key.public_key());
        assert_eq!(comment, "sitelink@site-7");

        let (again, origin) = load_or_generate(&path, "sitelink@site-7").unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(again.public_key(), key.public_key());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_public_key_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PRIVATE_KEY_FILE);
        let (key, _) = load_or_generate(&path, "a@b").unwrap();
        fs::remove_file(public_key_path(&path)).unwrap();
        let (_, origin) = load_or_generate(&path, "a@b").unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        let line = fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(line, key.public_key().to_line("a@b"));
    }

    #[test]
    fn a_bad_key_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PRIVATE_KEY_FILE);
        fs::write(&path, "not a key").unwrap();
        let err = load_or_generate(&path, "a@b").unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not an RSA private key"), "{text}");
        // The bad file is left for a person to look at, not replaced.
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key");

        fs::write(&path, [0xFF, 0xFE]).unwrap();
        assert!(matches!(load(&path), Err(KeyError::Invalid { .. })));
    }

    #[test]
    fn an_unreadable_key_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails, not NotFound.
        let path = dir.path().join(PRIVATE_KEY_FILE);
        fs::create_dir(&path).unwrap();
        let err = load_or_generate(&path, "a@b").unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot read ADB key "));
    }

    #[test]
    fn saved_key_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.key");
        let key = crate::adb::proto::test_key();
        save(&key, &path, "x@y").unwrap();
        assert_eq!(load(&path).unwrap().public_key(), key.public_key());
        assert!(dir.path().join("site.key.pub").exists());
    }
}
