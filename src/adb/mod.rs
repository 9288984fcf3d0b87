//! Android TVs over ADB on TCP.

pub mod tv;
