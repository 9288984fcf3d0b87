//! The ack window: which batches are in flight, what the next batch starts
//! after, what an `ack` or `reject` lets the agent trim, what is resent after
//! a reconnect. Pure state; time comes in as an argument.
//!
//! The store is the buffer: a batch in flight is only its bounds, and a
//! resend is a fresh read of the outbox after the acknowledged point.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One batch sent and not yet acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    pub first: u64,
    pub last: u64,
    pub records: usize,
    pub sent_at: Instant,
}

/// What an `ack` or `reject` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settled {
    /// The new acknowledged point, if it moved: the store may trim up to it.
    pub acked: Option<u64>,
    /// Records of the batches settled (acknowledged or set aside).
    pub records: usize,
}

/// The upstream broke the rules; the connection should be closed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("ack up to {up_to}, beyond the last record sent ({sent})")]
    AckBeyondSent { up_to: u64, sent: u64 },
    #[error("reject of {first}..={last}, which is not the oldest batch in flight")]
    RejectNotOldest { first: u64, last: u64 },
}

#[derive(Clone, Debug)]
pub struct Window {
    limit: usize,
    acked: u64,
    in_flight: VecDeque<InFlight>,
}

impl Window {
    /// A window of at most `limit` batches (at least 1), with everything up
    /// to `acked` already stored upstream.
    pub fn new(limit: usize, acked: u64) -> Window {
        Window {
            limit: limit.max(1),
            acked,
            in_flight: VecDeque::new(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.in_flight.iter()
    }

    pub fn in_flight_records(&self) -> usize {
        self.in_flight.iter().map(|b| b.records).sum()
    }

    /// Where the next batch starts (records with a greater sequence number),
    /// or `None` while the window is full.
    pub fn read_after(&self) -> Option<u64> {
        if self.in_flight.len() >= self.limit {
            return None;
        }
        Some(self.in_flight.back().map_or(self.acked, |b| b.last))
    }

    /// A new connection: nothing is in flight any more, and the upstream says
    /// it holds everything up to `upstream_acked`. The agent takes that as
    /// acknowledged as far as it holds records (`highest`). Returns the new
    /// acknowledged point if it moved.
    pub fn resume(&mut self, upstream_acked: u64, highest: u64) -> Option<u64> {
        self.in_flight.clear();
        let take = upstream_acked.min(highest);
        (take > self.acked).then(|| {
            self.acked = take;
            take
        })
    }

    /// The connection is gone: what was in flight is sent again from the
    /// acknowledged point after the next `resume`.
    pub fn disconnected(&mut self) {
        self.in_flight.clear();
    }

    /// A batch went out. The caller read it with `read_after`.
    pub fn sent(&mut self, first: u64, last: u64, records: usize, now: Instant) {
        self.in_flight.push_back(InFlight {
            first,
            last,
            records,
            sent_at: now,
        });
    }

    /// `ack up_to`: everything up to it is stored. Acks are cumulative, so a
    /// stale one changes nothing.
    pub fn ack(&mut self, up_to: u64) -> Result<Settled, WindowError> {
        let sent = self.in_flight.back().map_or(self.acked, |b| b.last);
        if up_to > sent {
            return Err(WindowError::AckBeyondSent { up_to, sent });
        }
        Ok(self.settle(up_to))
    }

    /// `reject first..=last`: that batch is set aside, and everything before
    /// it is stored (the upstream takes batches in order).
    pub fn reject(&mut self, first: u64, last: u64) -> Result<Settled, WindowError> {
        match self.in_flight.front() {
            Some(b) if b.first == first && b.last == last => Ok(self.settle(last)),
            _ => Err(WindowError::RejectNotOldest { first, last }),
        }
    }

    fn settle(&mut self, up_to: u64) -> Settled {
        let mut settled = Settled::default();
        while let Some(b) = self.in_flight.front() {
            if b.last > up_to {
                break;
            }
            settled.records += b.records;
            self.in_flight.pop_front();
        }
        if up_to > self.acked {
            self.acked = up_to;
            settled.acked = Some(up_to);
        }
        settled
    }

    /// When the oldest batch in flight has waited `timeout` for its answer.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.in_flight.front().map(|b| b.sent_at + timeout)
    }

    /// Whether the oldest batch has waited longer than `timeout` at `now`:
    /// the connection is as good as dead.
    pub fn overdue(&self, now: Instant, timeout: Duration) -> bool {
        self.deadline(timeout).is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_trims_and_resends_from_the_acked_point() {
        let t = Instant::now();
        let mut w = Window::new(2, 10);
        assert_eq!(w.read_after(), Some(10));
        w.sent(11, 20, 10, t);
        assert_eq!(w.read_after(), Some(20));
        w.sent(21, 30, 10, t);
        assert_eq!(w.read_after(), None, "window full");
        let s = w.ack(20).expect("ack");
        assert_eq!(
            s,
            Settled {
                acked: Some(20),
                records: 10
            }
        );
        assert_eq!(w.read_after(), Some(30));
        w.disconnected();
        assert_eq!(w.resume(20, 30), None);
        assert_eq!(w.read_after(), Some(20), "batch 21..=30 is sent again");
    }

    #[test]
    fn resume_takes_what_the_upstream_holds_but_not_beyond_the_agent() {
        let mut w = Window::new(4, 5);
        assert_eq!(w.resume(50, 40), Some(40));
        assert_eq!(w.acked(), 40);
        assert_eq!(w.resume(10, 40), None, "never backwards");
    }

    #[test]
    fn rules_broken_by_the_upstream_are_errors() {
        let t = Instant::now();
        let mut w = Window::new(4, 0);
        w.sent(1, 5, 5, t);
        assert_eq!(
            w.ack(6),
            Err(WindowError::AckBeyondSent { up_to: 6, sent: 5 })
        );
        w.sent(6, 9, 4, t);
        assert!(w.reject(6, 9).is_err(), "only the oldest may be rejected");
        assert_eq!(
            w.reject(1, 5),
            Ok(Settled {
                acked: Some(5),
                records: 5
            })
        );
        assert_eq!(w.ack(3), Ok(Settled::default()), "a stale ack is harmless");
    }

    #[test]
    fn a_partial_ack_keeps_the_batch_until_its_end() {
        let t = Instant::now();
        let mut w = Window::new(4, 0);
        w.sent(1, 10, 10, t);
        assert_eq!(
            w.ack(4),
            Ok(Settled {
                acked: Some(4),
                records: 0
            })
        );
        assert_eq!(w.in_flight().count(), 1);
        assert_eq!(w.read_after(), Some(10));
    }

    #[test]
    fn overdue_after_the_timeout() {
        let t = Instant::now();
        let mut w = Window::new(4, 0);
        let d = Duration::from_secs(5);
        assert!(!w.overdue(t + d * 10, d), "nothing in flight");
        w.sent(1, 1, 1, t);
        assert!(!w.overdue(t + Duration::from_secs(4), d));
        assert!(w.overdue(t + d, d));
    }
}
