//! The uplink: what the agent stored goes to the upstream over a mutual-TLS
//! WebSocket, and commands, configuration and updates come back.
//! `proto` is the sans-IO protocol (`docs/PROTOCOL.md`), `tls` the
//! certificates and TLS settings both ends share, `client` the agent's task.

pub mod proto;
