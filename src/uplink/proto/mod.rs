//! The uplink protocol `sitelink.v1`, sans-IO: the messages each way (JSON
//! text frames, one serde enum per direction, tagged by `type`), their
//! decoding with room for message types a newer peer may send, the checks a
//! receiver makes, and the ack window (`window`). `docs/PROTOCOL.md` is the
//! public description; this module is its implementation.

pub mod window;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The WebSocket subprotocol of this version.
pub const SUBPROTOCOL: &str = "sitelink.v1";
/// The version number carried in `hello` and `welcome`.
pub const VERSION: u32 = 1;
/// The largest message (and frame) either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most records in one `batch`.
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// The largest `payload` of one record, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The longest `device`, `kind`, `class` or `boot_id`.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest sequence number: exact in every JSON implementation (2^53 - 1).
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// What the agent sends. Decoded by `decode_agent`, by its `type` first:
/// serde's tagged-enum decoding cannot hold a raw `payload`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello(Hello),
    Batch(Batch),
    Result(Outcome),
}

/// What the upstream sends. Decoded by `decode_upstream`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpstreamMessage {
    Welcome(Welcome),
    /// Everything this agent sent up to and including `up_to` is stored.
    Ack {
        up_to: u64,
    },
    /// The batch `first..=last` was malformed and is not stored; everything
    /// before it is stored (as by an `ack`). The agent sets it aside.
    Reject {
        first: u64,
        last: u64,
        error: String,
    },
    Command(Command),
    Config(ConfigPush),
    Update(UpdateOffer),
    /// A fatal problem; the upstream closes the connection after it.
    Error {
        error: String,
    },
}

#[derive(Deserialize)]
struct AckBody {
    up_to: u64,
}

#[derive(Deserialize)]
struct RejectBody {
    first: u64,
    last: u64,
    error: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// The agent's first message on every connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The highest protocol version the agent speaks.
    pub version: u32,
    /// Must be the id in the agent's client certificate.
    pub agent: String,
    /// The agent's software version.
    pub software: String,
    /// The agent machine's current boot.
    pub boot_id: String,
    /// The agent's wall clock, ms since the Unix epoch (may be wrong).
    pub clock_ms: i64,
    /// Whether the agent's clock is synchronised (NTP).
    pub clock_synced: bool,
    /// The agent's monotonic clock (ms since boot), the base of `est_time_ms`.
    pub mono_ms: i64,
    /// The highest sequence number the agent holds (0: none yet).
    pub highest_seq: u64,
    /// What the agent believes the upstream has acknowledged.
    pub acked_seq: u64,
}

/// The upstream's answer to `hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The version both sides use from now on (at most the agent's).
    pub version: u32,
    /// The upstream's software, for logs.
    pub upstream: String,
    /// The upstream's wall clock when it sent this, ms since the Unix epoch.
    pub clock_ms: i64,
    /// The upstream holds everything from this agent up to this sequence.
    pub acked_seq: u64,
}

/// Records, in ascending sequence order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The first record's sequence number.
    pub first: u64,
    /// The last record's sequence number.
    pub last: u64,
    pub records: Vec<WireRecord>,
}

/// One record as it travels.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireRecord {
    pub seq: u64,
    /// `event`, `accounting` or `metric` today; a receiver keeps others as they are.
    pub class: String,
    pub device: String,
    pub kind: String,
    /// Any JSON value.
    pub payload: Box<RawValue>,
    /// The agent's wall clock when taken, ms since the Unix epoch.
    pub time_ms: i64,
    /// The agent's monotonic clock when taken (ms since boot `boot_id`).
    pub mono_ms: i64,
    pub boot_id: String,
    /// Whether `time_ms` came from a synchronised clock.
    pub clock_synced: bool,
    /// For a record taken with an unsynchronised clock in the current boot:
    /// the time by the upstream's clock, reckoned from the `welcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_time_ms: Option<i64>,
}

impl PartialEq for WireRecord {
    fn eq(&self, o: &WireRecord) -> bool {
        self.seq == o.seq
            && self.class == o.class
            && self.device == o.device
            && self.kind == o.kind
            && self.payload.get() == o.payload.get()
            && self.time_ms == o.time_ms
            && self.mono_ms == o.mono_ms
            && self.boot_id == o.boot_id
            && self.clock_synced == o.clock_synced
            && self.est_time_ms == o.est_time_ms
    }
}

/// A device command from the upstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Chosen by the upstream; the `result` carries it back.
    pub id: String,
    pub device: String,
    pub action: String,
    #[serde(default)]
    pub args: Vec<String>,
}

/// A whole new configuration file for the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigPush {
    pub id: String,
    /// The TOML text.
    pub toml: String,
}

/// An offer of a new software version (applied by the OTA updater).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateOffer {
    pub id: String,
    /// Where the release binary can be fetched (http:// or https://).
    pub url: String,
    /// The signed manifest of that binary (`sitelink release sign`).
    pub manifest: crate::ota::release::Manifest,
}

/// How a request from the upstream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Done as asked.
    Done,
    /// Tried, and it did not work.
    Failed,
    /// Not tried: the request was wrong or is not supported.
    Rejected,
}

/// The answer to a `command`, `config`, `update` or unknown request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The request's `id`.
    pub id: String,
    pub status: Status,
    /// What happened: output, errors, a summary.
    pub detail: serde_json::Value,
}

/// A message as received: one this version knows, or one it does not.
#[derive(Debug, PartialEq)]
pub enum Incoming<M> {
    Known(M),
    /// A well-formed message of a type this version does not know: ignored,
    /// or answered `rejected` if it carries an `id`.
    Unknown {
        kind: String,
        id: Option<String>,
    },
}

/// A message that could not be taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("message of {0} bytes is over the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("not a JSON object with a string `type`: {0}")]
    NotAMessage(String),
    #[error("malformed `{kind}` message: {error}")]
    Malformed { kind: String, error: String },
}

/// What every message has: its type, and perhaps an id to answer.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

fn body<'de, T: Deserialize<'de>>(text: &'de str, kind: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
        kind: kind.to_string(),
        error: e.to_string(),
    })
}

fn envelope(text: &str) -> Result<Envelope, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| DecodeError::NotAMessage(e.to_string()))
}

fn unknown<M>(e: Envelope) -> Result<Incoming<M>, DecodeError> {
    let id = e.id.map(|v| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    Ok(Incoming::Unknown { kind: e.kind, id })
}

/// Decodes a message from the agent (the upstream's side).
pub fn decode_agent(text: &str) -> Result<Incoming<AgentMessage>, DecodeError> {
    let e = envelope(text)?;
    let m = match e.kind.as_str() {
        "hello" => AgentMessage::Hello(body(text, "hello")?),
        "batch" => AgentMessage::Batch(body(text, "batch")?),
        "result" => AgentMessage::Result(body(text, "result")?),
        _ => return unknown(e),
    };
    Ok(Incoming::Known(m))
}

/// Decodes a message from the upstream (the agent's side).
pub fn decode_upstream(text: &str) -> Result<Incoming<UpstreamMessage>, DecodeError> {
    let e = envelope(text)?;
    let k = e.kind.as_str();
    let m = match k {
        "welcome" => UpstreamMessage::Welcome(body(text, k)?),
        "ack" => UpstreamMessage::Ack {
            up_to: body::<AckBody>(text, k)?.up_to,
        },
        "reject" => {
            let b: RejectBody = body(text, k)?;
            UpstreamMessage::Reject {
                first: b.first,
                last: b.last,
                error: b.error,
            }
        }
        "command" => UpstreamMessage::Command(body(text, k)?),
        "config" => UpstreamMessage::Config(body(text, k)?),
        "update" => UpstreamMessage::Update(body(text, k)?),
        "error" => UpstreamMessage::Error {
            error: body::<ErrorBody>(text, k)?.error,
        },
        _ => return unknown(e),
    };
    Ok(Incoming::Known(m))
}

/// JSON text of a message; our own types always serialise.
pub fn encode<M: Serialize>(m: &M) -> String {
    serde_json::to_string(m).unwrap_or_else(|e| {
        // Only a map with non-string keys can fail, and we have none.
        format!("{{\"type\":\"error\",\"error\":{:?}}}", e.to_string())
    })
}

impl Batch {
    /// Whether the batch keeps the rules of `docs/PROTOCOL.md`; the reason if not.
    pub fn check(&self) -> Result<(), String> {
        let (Some(head), Some(tail)) = (self.records.first(), self.records.last()) else {
            return Err("a batch must hold at least one record".into());
        };
        if self.records.len() > MAX_BATCH_RECORDS {
            return Err(format!(
                "{} records, more than {MAX_BATCH_RECORDS}",
                self.records.len()
            ));
        }
        if head.seq != self.first || tail.seq != self.last {
            return Err(format!(
                "`first`/`last` are {}/{} but the records run from {} to {}",
                self.first, self.last, head.seq, tail.seq
            ));
        }
        let mut before = 0u64;
        for r in &self.records {
            if r.seq == 0 || r.seq > MAX_SEQ {
                return Err(format!("sequence number {} is out of range", r.seq));
            }
            if r.seq <= before {
                return Err(format!(
                    "sequence numbers must rise: {} follows {before}",
                    r.seq
                ));
            }
            before = r.seq;
            for (what, value) in [
                ("class", &r.class),
                ("device", &r.device),
                ("kind", &r.kind),
                ("boot_id", &r.boot_id),
            ] {
                if value.is_empty() || value.len() > MAX_NAME_BYTES {
                    return Err(format!(
                        "record {}: `{what}` must be 1 to {MAX_NAME_BYTES} bytes",
                        r.seq
                    ));
                }
            }
            if r.payload.get().len() > MAX_PAYLOAD_BYTES {
                return Err(format!(
                    "record {}: payload of {} bytes is over {MAX_PAYLOAD_BYTES}",
                    r.seq,
                    r.payload.get().len()
                ));
            }
        }
        Ok(())
    }
}

/// A payload for the wire: the stored JSON text as it is, or (for text that
/// is not JSON) that text as a JSON string.
pub fn payload(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap_or_else(|_| {
        let quoted = serde_json::Value::String(text.to_string()).to_string();
        // A JSON string is JSON; the default (`null`) is never reached.
        RawValue::from_string(quoted).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> WireRecord {
        WireRecord {
            seq,
            class: "event".into(),
            device: "egm-1".into(),
            kind: "door.open".into(),
            payload: payload("{\"door\":\"main\"}"),
            time_ms: 1_796_115_432_345,
            mono_ms: 12_345,
            boot_id: "b".into(),
            clock_synced: true,
            est_time_ms: None,
        }
    }

    #[test]
    fn messages_round_trip_with_their_type_tag() {
        let batch = AgentMessage::Batch(Batch {
            first: 4,
            last: 5,
            records: vec![record(4), record(5)],
        });
        let text = encode(&batch);
        assert!(
            text.starts_with("{\"type\":\"batch\",\"first\":4"),
            "{text}"
        );
        assert!(text.contains("\"payload\":{\"door\":\"main\"}"), "{text}");
        assert_eq!(decode_agent(&text), Ok(Incoming::Known(batch)));
        let ack = UpstreamMessage::Ack { up_to: 5 };
        assert_eq!(encode(&ack), "{\"type\":\"ack\",\"up_to\":5}");
        assert_eq!(decode_upstream(&encode(&ack)), Ok(Incoming::Known(ack)));
    }

    #[test]
    fn unknown_types_are_told_apart_from_malformed_known_ones() {
        assert_eq!(
            decode_upstream("{\"type\":\"reboot\",\"id\":\"r1\",\"when\":3}"),
            Ok(Incoming::Unknown {
                kind: "reboot".into(),
                id: Some("r1".into())
            })
        );
        assert_eq!(
            decode_agent("{\"type\":\"stats\"}"),
            Ok(Incoming::Unknown {
                kind: "stats".into(),
                id: None
            })
        );
        assert!(matches!(
            decode_upstream("{\"type\":\"ack\",\"up_to\":\"five\"}"),
            Err(DecodeError::Malformed { kind, .. }) if kind == "ack"
        ));
        assert!(matches!(
            decode_upstream("[1,2]"),
            Err(DecodeError::NotAMessage(_))
        ));
        assert!(matches!(
            decode_upstream("{\"id\":1}"),
            Err(DecodeError::NotAMessage(_))
        ));
    }

    #[test]
    fn newer_fields_are_ignored() {
        let text = "{\"type\":\"ack\",\"up_to\":7,\"window\":12}";
        assert_eq!(
            decode_upstream(text),
            Ok(Incoming::Known(UpstreamMessage::Ack { up_to: 7 }))
        );
    }

    #[test]
    fn batch_checks_order_bounds_and_sizes() {
        let ok = Batch {
            first: 1,
            last: 3,
            records: vec![record(1), record(3)],
        };
        assert_eq!(ok.check(), Ok(()));
        let unordered = Batch {
            first: 3,
            last: 2,
            records: vec![record(3), record(2)],
        };
        assert!(unordered.check().is_err_and(|e| e.contains("must rise")));
        let lying = Batch {
            first: 1,
            last: 9,
            records: vec![record(1)],
        };
        assert!(lying.check().is_err());
        let empty = Batch {
            first: 0,
            last: 0,
            records: vec![],
        };
        assert!(empty.check().is_err());
        let mut nameless = record(1);
        nameless.device.clear();
        let b = Batch {
            first: 1,
            last: 1,
            records: vec![nameless],
        };
        assert!(b.check().is_err_and(|e| e.contains("`device`")));
    }

    #[test]
    fn payloads_that_are_not_json_travel_as_strings() {
        assert_eq!(payload("{\"n\":1}").get(), "{\"n\":1}");
        assert_eq!(payload("plain text").get(), "\"plain text\"");
    }
}
