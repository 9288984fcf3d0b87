//! The sans-IO ADB core: bytes in, typed values out. No runtime, clock or
//! socket lives here; the same code serves the host (`adb::transport`) and
//! the TV simulator.
//!
//! - [`message`]: the 24-byte header and payload, a chunk-safe decoder.
//! - [`banner`]: CNXN banners and features.
//! - [`auth`]: RSA keys, token signatures, Android's public-key format.
//! - [`connection`]: the host side: handshake, auth and streams.
//! - [`device`]: the device side, for the simulator.
//! - [`shell`]: `shell,v2`/`shell:`/`exec:` services and the shell v2 framing.
//! - [`sync`]: the `sync:` file protocol.

pub mod auth;
pub mod banner;
pub mod connection;
pub mod decode;
pub mod device;
pub mod message;
pub mod shell;
pub mod stream;
pub mod sync;

pub use auth::{AdbKey, AndroidPublicKey, AuthError};
pub use banner::{Banner, Features, PeerState};
pub use connection::{Config, Connection, ConnectionError, Event, Peer, State};
pub use decode::Decoded;
pub use device::{Device, DeviceConfig, DeviceError, DeviceEvent, DeviceState};
pub use message::{AuthType, Command, Message, MessageDecoder, MessageError};
pub use shell::{
    ShellCollector, ShellDecoder, ShellError, ShellMode, ShellOutput, ShellPacket, ShellRequest,
    WindowSize,
};
pub use stream::{LocalId, StreamError, StreamErrorKind, UseError};
pub use sync::{
    Pull, PulledFile, SyncError, SyncExpect, SyncReply, SyncReplyDecoder, SyncRequest,
    SyncRequestDecoder,
};

/// One key shared by the unit tests: making a key costs time in a debug build.
#[cfg(test)]
pub(crate) fn test_key() -> auth::AdbKey {
    static KEY: std::sync::OnceLock<auth::AdbKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| auth::AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}

/// Another key, for "the first key is not trusted" cases.
#[cfg(test)]
pub(crate) fn second_test_key() -> auth::AdbKey {
    static KEY: std::sync::OnceLock<auth::AdbKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| auth::AdbKey::generate(&mut rand::rngs::SysRng).expect("key"))
        .clone()
}
