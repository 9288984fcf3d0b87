//! The ack window against a model of the link: an outbox of records, batches
//! in transit to an upstream that stores (or rejects) them in order, answers
//! in transit back, and connections that drop whatever is in transit. Whatever
//! happens, the agent never counts as acknowledged a record the upstream does
//! not hold, and once the link stays up everything arrives.

use proptest::prelude::*;
use sitelink::uplink::proto::window::Window;
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

#[derive(Clone, Debug)]
enum Step {
    /// The agent sends a batch of at most this many records, if the window lets it.
    Send(usize),
    /// The upstream takes the oldest batch in transit; `true`: it rejects it.
    Upstream(bool),
    /// The oldest answer reaches the agent.
    Deliver,
    /// The connection drops; the agent reconnects and says hello.
    Drop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..40).prop_map(Step::Send),
        3 => prop::bool::weighted(0.1).prop_map(Step::Upstream),
        3 => Just(Step::Deliver),
        1 => Just(Step::Drop),
    ]
}

enum Answer {
    Ack(u64),
    Reject(u64, u64),
}

struct Link {
    outbox: Vec<u64>,
    window: Window,
    to_upstream: VecDeque<Vec<u64>>,
    to_agent: VecDeque<Answer>,
    stored: BTreeSet<u64>,
    rejected: BTreeSet<u64>,
    /// What the upstream has answered for, as its `welcome` would say.
    upstream_acked: u64,
}

impl Link {
    fn apply(&mut self, s: &Step) {
        match *s {
            Step::Send(n) => {
                let Some(after) = self.window.read_after() else {
                    return;
                };
                let batch: Vec<u64> = self
                    .outbox
                    .iter()
                    .copied()
                    .filter(|&q| q > after)
                    .take(n)
                    .collect();
                if let (Some(&first), Some(&last)) = (batch.first(), batch.last()) {
                    self.window.sent(first, last, batch.len(), Instant::now());
                    self.to_upstream.push_back(batch);
                }
            }
            Step::Upstream(reject) => {
                let Some(batch) = self.to_upstream.pop_front() else {
                    return;
                };
                let (first, last) = (batch[0], batch[batch.len() - 1]);
                if reject {
                    self.rejected.extend(&batch);
                    self.to_agent.push_back(Answer::Reject(first, last));
                } else {
                    self.stored.extend(&batch);
                    self.to_agent.push_back(Answer::Ack(last));
                }
                self.upstream_acked = self.upstream_acked.max(last);
            }
            Step::Deliver => {
                let Some(a) = self.to_agent.pop_front() else {
                    return;
                };
                let before = self.window.acked();
                let settled = match a {
                    Answer::Ack(up_to) => self.window.ack(up_to),
                    Answer::Reject(first, last) => self.window.reject(first, last),
                }
                .expect("an in-order upstream never breaks the window's rules");
                if let Some(acked) = settled.acked {
                    assert!(acked > before);
                }
            }
            Step::Drop => {
                self.to_upstream.clear();
                self.to_agent.clear();
                self.window.disconnected();
                let highest = self.outbox.last().copied().unwrap_or(0);
                self.window.resume(self.upstream_acked, highest);
            }
        }
    }

    fn check(&self, limit: usize) {
        let acked = self.window.acked();
        for q in self.outbox.iter().filter(|&&q| q <= acked) {
            assert!(
                self.stored.contains(q) || self.rejected.contains(q),
                "seq {q} counts as acknowledged but the upstream has not got it"
            );
        }
        let flights: Vec<_> = self.window.in_flight().collect();
        assert!(flights.len() <= limit);
        let mut prev = acked;
        for b in flights {
            assert!(
                b.first > prev && b.last >= b.first,
                "in flight out of order"
            );
            prev = b.last;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn nothing_is_acknowledged_unheld_and_everything_arrives(
        gaps in prop::collection::vec(1u64..5, 0..300),
        start in 0u64..3,
        limit in 1usize..6,
        steps in prop::collection::vec(step(), 0..200),
    ) {
        let mut seq = start << 32;
        let outbox: Vec<u64> = gaps.iter().map(|g| { seq += g; seq }).collect();
        let mut link = Link {
            outbox,
            window: Window::new(limit, start << 32),
            to_upstream: VecDeque::new(),
            to_agent: VecDeque::new(),
            stored: BTreeSet::new(),
            rejected: BTreeSet::new(),
            upstream_acked: 0,
        };
        link.window.resume(0, link.outbox.last().copied().unwrap_or(0));
        let mut acked = link.window.acked();
        for s in &steps {
            link.apply(s);
            link.check(limit);
            prop_assert!(link.window.acked() >= acked, "the acknowledged point went back");
            acked = link.window.acked();
        }
        // The link stays up from here: everything must get through.
        let highest = link.outbox.last().copied().unwrap_or(0);
        let mut turns = 0;
        while link.window.acked() < highest {
            turns += 1;
            prop_assert!(turns < 10_000, "the drain does not end");
            link.apply(&Step::Send(40));
            link.apply(&Step::Upstream(false));
            link.apply(&Step::Deliver);
            link.check(limit);
        }
        for q in &link.outbox {
            prop_assert!(link.stored.contains(q) || link.rejected.contains(q), "seq {} never arrived", q);
        }
    }
}
