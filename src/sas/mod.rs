//! SAS (Slot Accounting System 6.02/6.03): sitelink polls casino gaming
//! machines (EGMs) as the SAS host. The protocol facts are in
//! `docs/sas-protocol.md` of the shared documentation.
//!
//! `proto` is the sans-IO core (frames, CRC, tables, the per-address link
//! state); the serial line and the poll schedule build on it.

pub mod link;
pub mod poller;
pub mod proto;
