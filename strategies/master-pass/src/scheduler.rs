//! Which worker gets the next connection: pure bookkeeping, no I/O, so it is
//! unit-tested with known sequences.

use std::collections::VecDeque;

/// Node.js cluster's `RoundRobinHandle`: `handles` (pending connections) and
/// `free` (workers without an unacknowledged connection), both FIFO.
///
/// In Node (lib/internal/cluster/round_robin_handle.js) `distribute()` queues
/// the connection and hands it to the first free worker; when that worker
/// acks, `handoff()` gives it the next pending connection or puts it back at
/// the end of `free`. Sequential connections therefore rotate strictly over
/// the workers in the order they became free.
#[derive(Debug)]
pub struct NodeRoundRobin<T> {
    pending: VecDeque<T>,
    free: VecDeque<usize>,
}

impl<T> Default for NodeRoundRobin<T> {
    fn default() -> Self {
        NodeRoundRobin {
            pending: VecDeque::new(),
            free: VecDeque::new(),
        }
    }
}

impl<T> NodeRoundRobin<T> {
    /// A connection arrived (or must be re-routed): queue it.
    pub fn push(&mut self, conn: T) {
        self.pending.push_back(conn);
    }

    /// Worker `slot` is free: it became ready, or acked its connection.
    pub fn free(&mut self, slot: usize) {
        if !self.free.contains(&slot) {
            self.free.push_back(slot);
        }
    }

    /// Worker `slot` is gone or busy: never pick it until it is free again.
    pub fn remove(&mut self, slot: usize) {
        self.free.retain(|&s| s != slot);
    }

    /// The next (worker, connection) pair, if there is a free worker and a
    /// pending connection. The worker leaves `free` until [`Self::free`].
    pub fn assign(&mut self) -> Option<(usize, T)> {
        if self.pending.is_empty() {
            return None;
        }
        let slot = self.free.pop_front()?;
        let conn = self.pending.pop_front().expect("checked non-empty");
        Some((slot, conn))
    }

    /// Puts a connection back at the head of the queue (the worker picked by
    /// `next` could not take it right now).
    pub fn unget(&mut self, conn: T) {
        self.pending.push_front(conn);
    }

    /// Connections waiting for a worker.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops every pending connection (the server is stopping).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.pending.drain(..)
    }
}

/// Blind rotation over the ready workers.
#[derive(Debug, Default)]
pub struct Rotation {
    last: Option<usize>,
}

impl Rotation {
    /// The first ready slot after the one picked last (wrapping).
    pub fn pick(&mut self, ready: &[usize]) -> Option<usize> {
        let next = match self.last {
            None => *ready.first()?,
            Some(last) => *ready.iter().find(|&&s| s > last).or(ready.first())?,
        };
        self.last = Some(next);
        Some(next)
    }
}

/// Fewest open connections; ties go round-robin so that an idle server
/// still spreads sequential connections.
#[derive(Debug, Default)]
pub struct LeastConnections {
    open: Vec<u64>,
    rotation: Rotation,
}

impl LeastConnections {
    /// The ready slot with the fewest open connections.
    pub fn pick(&mut self, ready: &[usize]) -> Option<usize> {
        let least = ready.iter().map(|&s| self.open_of(s)).min()?;
        let tied: Vec<usize> = ready
            .iter()
            .copied()
            .filter(|&s| self.open_of(s) == least)
            .collect();
        let slot = self.rotation.pick(&tied)?;
        Some(slot)
    }

    /// A connection was sent to `slot`.
    pub fn opened(&mut self, slot: usize) {
        if self.open.len() <= slot {
            self.open.resize(slot + 1, 0);
        }
        self.open[slot] += 1;
    }

    /// `slot` reported a close.
    pub fn closed(&mut self, slot: usize) {
        if let Some(n) = self.open.get_mut(slot) {
            *n = n.saturating_sub(1);
        }
    }

    /// `slot`'s worker is gone: its connections went with it.
    pub fn reset(&mut self, slot: usize) {
        if let Some(n) = self.open.get_mut(slot) {
            *n = 0;
        }
    }

    fn open_of(&self, slot: usize) -> u64 {
        self.open.get(slot).copied().unwrap_or(0)
    }
}

/// `master-pass:pipelined`: the worker with the fewest outstanding
/// connections (sent to it and not yet finished), skipping any at its credit
/// window; ties rotate, so that an idle server still spreads sequential
/// connections.
///
/// Pure: the caller supplies each candidate's outstanding count (the master
/// computes it from what it sent and the worker's `closed` counter in
/// shared memory) and says which slot it used ([`Self::picked`]), so that
/// a pick the caller could not use (the accept found the queue empty) does
/// not move the rotation.
#[derive(Debug)]
pub struct LeastOutstanding {
    window: u64,
    last: Option<usize>,
}

impl LeastOutstanding {
    /// A picker that gives no worker more than `window` outstanding
    /// connections.
    pub fn new(window: u64) -> Self {
        LeastOutstanding { window, last: None }
    }

    /// The credit window.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Among `(slot, outstanding)` candidates in slot order, the one with the
    /// fewest outstanding that is below the window; among equals, the first
    /// after the slot used last (wrapping). `None`: no candidate has credit.
    pub fn pick(&self, candidates: &[(usize, u64)]) -> Option<usize> {
        let least = candidates
            .iter()
            .map(|&(_, n)| n)
            .filter(|&n| n < self.window)
            .min()?;
        let tied = candidates.iter().filter(|&&(_, n)| n == least);
        let after_last = self
            .last
            .and_then(|last| tied.clone().find(|&&(s, _)| s > last));
        after_last.or_else(|| tied.clone().next()).map(|&(s, _)| s)
    }

    /// The caller gave a connection to `slot`.
    pub fn picked(&mut self, slot: usize) {
        self.last = Some(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rr_rotates_sequential_connections_in_free_order() {
        let mut rr = NodeRoundRobin::default();
        for s in [2, 0, 1] {
            rr.free(s);
        }
        let mut got = Vec::new();
        for c in 0..6 {
            rr.push(c);
            let (slot, conn) = rr.assign().unwrap();
            assert_eq!(conn, c);
            got.push(slot);
            rr.free(slot); // the ack
        }
        assert_eq!(got, [2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn node_rr_holds_connections_until_a_worker_acks() {
        let mut rr = NodeRoundRobin::default();
        rr.free(0);
        rr.push("a");
        rr.push("b");
        assert_eq!(rr.assign(), Some((0, "a")));
        assert_eq!(
            rr.assign(),
            None,
            "worker 0 has an unacknowledged connection"
        );
        assert_eq!(rr.pending(), 1);
        rr.free(0);
        assert_eq!(rr.assign(), Some((0, "b")));
    }

    #[test]
    fn node_rr_skips_removed_workers() {
        let mut rr = NodeRoundRobin::default();
        rr.free(0);
        rr.free(1);
        rr.remove(0);
        rr.push(());
        assert_eq!(rr.assign(), Some((1, ())));
    }

    #[test]
    fn rotation_wraps_and_skips_missing_slots() {
        let mut r = Rotation::default();
        let picks: Vec<_> = (0..5).map(|_| r.pick(&[0, 2, 3]).unwrap()).collect();
        assert_eq!(picks, [0, 2, 3, 0, 2]);
        assert_eq!(r.pick(&[]), None);
    }

    #[test]
    fn least_conn_prefers_fewest_then_rotates_ties() {
        let mut lc = LeastConnections::default();
        let ready = [0, 1, 2];
        lc.opened(0);
        lc.opened(0);
        lc.opened(1);
        assert_eq!(lc.pick(&ready), Some(2));
        lc.opened(2);
        assert_eq!(lc.pick(&ready), Some(1)); // 1 and 2 tie at 1; rotation after 2 wraps to 1
        lc.closed(0);
        lc.closed(0);
        assert_eq!(lc.pick(&ready), Some(0));
    }

    #[test]
    fn least_outstanding_prefers_the_fewest_outstanding() {
        let lo = LeastOutstanding::new(4);
        assert_eq!(lo.pick(&[(0, 3), (1, 1), (2, 2)]), Some(1));
        assert_eq!(lo.pick(&[]), None);
    }

    #[test]
    fn least_outstanding_rotates_ties_and_skips_slots_it_was_not_given() {
        let mut lo = LeastOutstanding::new(4);
        let mut got = Vec::new();
        for _ in 0..5 {
            let s = lo.pick(&[(0, 0), (2, 0), (3, 0)]).unwrap();
            lo.picked(s);
            got.push(s);
        }
        assert_eq!(got, [0, 2, 3, 0, 2]);
        // A pick not used does not move the rotation.
        assert_eq!(lo.pick(&[(0, 0), (2, 0), (3, 0)]), Some(3));
        assert_eq!(lo.pick(&[(0, 0), (2, 0), (3, 0)]), Some(3));
    }

    #[test]
    fn least_outstanding_skips_a_worker_at_its_window_and_gives_none_when_all_are_full() {
        let mut lo = LeastOutstanding::new(2);
        // Slot 0 is at its window although it is the only one left.
        assert_eq!(lo.pick(&[(0, 2), (1, 1)]), Some(1));
        lo.picked(1);
        assert_eq!(lo.pick(&[(0, 2), (1, 2)]), None);
        assert_eq!(lo.pick(&[(0, 2)]), None);
        // Credit frees: slot 0 finished one.
        assert_eq!(lo.pick(&[(0, 1), (1, 2)]), Some(0));
        assert_eq!(lo.window(), 2);
    }

    #[test]
    fn least_outstanding_fills_a_stalled_worker_only_to_its_window() {
        // Slot 0 never finishes; slot 1 finishes each connection before the
        // next arrives: slot 0 gets its first, then only ties would reach it.
        let mut lo = LeastOutstanding::new(3);
        let mut stalled = 0u64;
        for _ in 0..20 {
            let s = lo.pick(&[(0, stalled), (1, 0)]).unwrap();
            lo.picked(s);
            if s == 0 {
                stalled += 1;
            }
        }
        assert_eq!(stalled, 1);
    }
}
