//! The sans-IO ADB core: bytes in, typed values out. No runtime, clock or
//! socket lives here; the same code serves the host and the TV simulator.

pub mod auth;
pub mod banner;
pub mod decode;
pub mod message;

/// One key shared by the unit tests: making a key costs time in a debug build.
#[cfg(test)]
pub(crate) fn test_key() -> auth::AdbKey {
    static KEY: std::sync::OnceLock<auth::AdbKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| auth::AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}
