//! Stand-ins for the world outside the agent, speaking what the real thing
//! speaks, and the demo that runs them all with the agent. Never needed by
//! the daemon at run time.

pub mod demo;
pub mod egm;
pub mod tv;
