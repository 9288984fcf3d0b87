//! sitelink: a headless site agent. Devices produce records; every record is
//! committed to the local store before anything else happens to it; the uplink
//! drains the store and brings commands back to the devices.
//!
//! The design is in `docs/ARCHITECTURE.md`.

pub mod adb;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod generator;
pub mod hub;
pub mod ota;
pub mod pki;
pub mod relay;
pub mod sas;
pub mod sim;
pub mod status;
pub mod store;
pub mod uplink;
