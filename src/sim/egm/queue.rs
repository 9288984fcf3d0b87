//! The exception queue of one simulated EGM (§6 of the protocol document).
//!
//! Priority exceptions are not queued: each is a pending condition, held at
//! most once, and sent before any queued one. Queued exceptions keep their
//! order in a bounded FIFO; on overrun the oldest is lost and the EGM reports
//! 70 (exception buffer overflow), as the spec's minimum of 20 entries says.
//! An exception leaves only when the host's next poll implies the ACK of the
//! reply that carried it; the EGM model decides that, this type only holds.

use std::collections::VecDeque;

use crate::sas::proto::{Event, ExceptionCode};

/// Spec minimum queue depth (SPEC-SUM §2.2.1); MON holds 25.
pub const DEFAULT_CAPACITY: usize = 20;

/// One raised exception with its per-EGM sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub event: Event,
}

/// What became of a pushed exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// A priority exception with this code is already pending.
    Duplicate,
    /// Queued, and the queue was full: this sequence number was dropped.
    Overflow {
        dropped: u64,
    },
}

#[derive(Debug)]
pub struct ExceptionQueue {
    capacity: usize,
    priority: VecDeque<Pending>,
    queued: VecDeque<Pending>,
}

impl ExceptionQueue {
    /// `capacity` of at least 1; the model's config check enforces it.
    pub fn new(capacity: usize) -> Self {
        ExceptionQueue {
            capacity: capacity.max(1),
            priority: VecDeque::new(),
            queued: VecDeque::new(),
        }
    }

    /// Adds an exception. `in_flight` is the one the EGM has sent and waits
    /// to have acknowledged: overflow never drops it, so an ACK or a repeat
    /// of the reply always finds what it refers to.
    pub fn push(&mut self, pending: Pending, priority: bool, in_flight: Option<u64>) -> Pushed {
        if priority {
            if self
                .priority
                .iter()
                .any(|p| p.event.code == pending.event.code)
            {
                return Pushed::Duplicate;
            }
            self.priority.push_back(pending);
            return Pushed::Queued;
        }
        let mut result = Pushed::Queued;
        if self.queued.len() >= self.capacity {
            let victim = self
                .queued
                .iter()
                .position(|p| Some(p.seq) != in_flight)
                .and_then(|i| self.queued.remove(i));
            if let Some(v) = victim {
                result = Pushed::Overflow { dropped: v.seq };
            }
        }
        self.queued.push_back(pending);
        result
    }

    /// What the next general poll reports: priority first.
    pub fn peek(&self) -> Option<&Pending> {
        self.priority.front().or_else(|| self.queued.front())
    }

    /// Removes an acknowledged exception; false if it is not held.
    pub fn remove(&mut self, seq: u64) -> bool {
        for q in [&mut self.priority, &mut self.queued] {
            if let Some(i) = q.iter().position(|p| p.seq == seq) {
                q.remove(i);
                return true;
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.priority.len() + self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a priority exception with this code is pending.
    pub fn has_priority(&self, code: ExceptionCode) -> bool {
        self.priority.iter().any(|p| p.event.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::proto::EventData;

    fn p(seq: u64, code: u8) -> Pending {
        Pending {
            seq,
            event: Event {
                code: ExceptionCode(code),
                data: EventData::None,
            },
        }
    }

    #[test]
    fn priority_first_then_fifo() {
        let mut q = ExceptionQueue::new(4);
        q.push(p(1, 0x11), false, None);
        q.push(p(2, 0x12), false, None);
        assert_eq!(q.push(p(3, 0x70), true, None), Pushed::Queued);
        assert_eq!(q.push(p(4, 0x70), true, None), Pushed::Duplicate);
        assert!(q.has_priority(ExceptionCode(0x70)));
        assert_eq!(q.peek().map(|p| p.seq), Some(3));
        assert!(q.remove(3));
        assert_eq!(q.peek().map(|p| p.seq), Some(1));
        assert!(!q.remove(3));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn overflow_drops_oldest_but_not_in_flight() {
        let mut q = ExceptionQueue::new(2);
        q.push(p(1, 0x11), false, None);
        q.push(p(2, 0x12), false, None);
        assert_eq!(
            q.push(p(3, 0x13), false, Some(1)),
            Pushed::Overflow { dropped: 2 }
        );
        assert_eq!(
            q.push(p(4, 0x14), false, None),
            Pushed::Overflow { dropped: 1 }
        );
        assert_eq!(q.peek().map(|p| p.seq), Some(3));
        assert_eq!(q.len(), 2);
    }
}
