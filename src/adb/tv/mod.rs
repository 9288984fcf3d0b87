//! `adb::tv`: Android TV telemetry and control on top of the ADB host.

pub mod control;
pub mod task;
pub mod telemetry;
