//! ADB over TCP, spoken natively: sitelink is the host and dials the TV's
//! adbd itself, without the `adb` binary or its server.
//!
//! - [`proto`]: the sans-IO core (messages, handshake, auth, streams, shell
//!   and sync services), shared by the host and the TV simulator.
//! - [`key`]: the site's `adbkey` / `adbkey.pub` files, in the format
//!   Android's own `adb` writes, so a technician's `adb` can use the same key.
//! - [`tv`]: Android TV telemetry and control on top of the host.

pub mod key;
pub mod proto;
pub mod transport;
pub mod tv;
