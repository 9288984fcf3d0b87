//! The line's timing (§4 of the protocol document) and the reconnect backoff.

use std::time::Duration;

use crate::sas::proto::LinkConfig;

/// An EGM starts replying within 20 ms of the last poll byte (§4).
pub const REPLY_WINDOW: Duration = Duration::from_millis(20);

/// At most 5 ms between two bytes of one message (§4); a longer quiet ends
/// a frame on media that cannot carry the wakeup bit (§1.3).
pub const INTER_BYTE_GAP: Duration = Duration::from_millis(5);

/// Polls to one EGM at least 200 ms apart unless LP A0 allows 40 ms (§4).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What a USB adapter adds to both windows: ftdi_sio holds received bytes
/// for its 16 ms latency timer by default (§4).
pub const ADAPTER_SLACK: Duration = Duration::from_millis(16);

/// Wait after draining the address byte, before switching to space parity:
/// one character time (0.573 ms) plus margin, because pl2303 and ch341 report
/// the drain done while the byte is still in the chip (§1.1). Small enough to
/// keep the address-to-command gap well under 5 ms.
pub const WAKEUP_SETTLE: Duration = Duration::from_millis(1);

/// Timing of one line. The defaults are the document's values; a site
/// overrides them for slow adapters or a device server across a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTiming {
    pub reply_window: Duration,
    pub inter_byte_gap: Duration,
    pub poll_interval: Duration,
    /// Added to the reply window and the inter-byte gap.
    pub adapter_slack: Duration,
    pub wakeup_settle: Duration,
    /// A write that cannot finish in this time is an error (a PTY nobody
    /// reads, a TCP peer that stopped reading).
    pub write_timeout: Duration,
    /// First reconnect delay; it doubles per failed attempt up to
    /// `reconnect_max`, with jitter so lines that fail together do not retry
    /// together.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl Default for LinkTiming {
    fn default() -> Self {
        LinkTiming {
            reply_window: REPLY_WINDOW,
            inter_byte_gap: INTER_BYTE_GAP,
            poll_interval: MIN_POLL_INTERVAL,
            adapter_slack: ADAPTER_SLACK,
            wakeup_settle: WAKEUP_SETTLE,
            write_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

impl LinkTiming {
    /// From the last byte sent to the first byte of the reply.
    pub fn reply_timeout(&self) -> Duration {
        self.reply_window + self.adapter_slack
    }

    /// Quiet that ends a frame.
    pub fn frame_gap(&self) -> Duration {
        self.inter_byte_gap + self.adapter_slack
    }

    /// The per-address link configuration with this line's timing, so the
    /// state machine and the line agree on when a reply is over.
    pub fn apply(&self, config: LinkConfig) -> LinkConfig {
        LinkConfig {
            poll_interval: self.poll_interval,
            reply_timeout: self.reply_timeout(),
            inter_byte_timeout: self.frame_gap(),
            ..config
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` waits between half
/// and all of `min * 2^n`, capped at `max`. `unit` is a random number in
/// [0, 1); it is an argument so the bounds can be tested.
pub fn backoff_delay(min: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let base = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = base / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_values() {
        let t = LinkTiming::default();
        assert_eq!(t.reply_window, Duration::from_millis(20));
        assert_eq!(t.inter_byte_gap, Duration::from_millis(5));
        assert_eq!(t.poll_interval, Duration::from_millis(200));
        assert_eq!(t.reply_timeout(), Duration::from_millis(36));
        assert_eq!(t.frame_gap(), Duration::from_millis(21));
        let c = t.apply(LinkConfig::default());
        assert_eq!(c.reply_timeout, t.reply_timeout());
        assert_eq!(c.inter_byte_timeout, t.frame_gap());
        assert_eq!(c.poll_interval, MIN_POLL_INTERVAL);
        assert_eq!(c.down_after, LinkConfig::default().down_after);
    }

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(10));
        assert_eq!(backoff_delay(min, max, 0, 0.0), Duration::from_millis(125));
        assert_eq!(backoff_delay(min, max, 0, 1.0), min);
        assert_eq!(backoff_delay(min, max, 2, 0.0), Duration::from_millis(500));
        for attempt in [6, 7, 31, u32::MAX] {
            for unit in [0.0, 0.5, 0.999, 7.0, -1.0] {
                let d = backoff_delay(min, max, attempt, unit);
                assert!(d >= max / 2 && d <= max, "{attempt} {unit}: {d:?}");
            }
        }
    }
}
