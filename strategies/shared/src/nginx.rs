//! The two pieces of nginx 1.22.1's accept path that its twins copy, as pure
//! functions (the intakes in [`crate::epoll_exclusive`] and
//! [`crate::accept_mutex`] call them; the tests below pin the arithmetic).
//!
//! - Load back-off, `ngx_accept_disabled` (`src/event/ngx_event_accept.c`,
//!   `ngx_event_accept`): right after each successful `accept4`, before the
//!   new connection takes a slot, nginx sets
//!   `ngx_accept_disabled = connection_n / 8 - free_connection_n`, i.e. it is
//!   positive once more than 7/8 of `worker_connections` are in use. Here
//!   `connection_n` is the worker's `--max-conns` (default 4096, the
//!   harness's `worker_connections`) and `free_connection_n` is `--max-conns`
//!   minus the connections the worker has open (the one just accepted not
//!   yet among them). nginx also counts its own listening socket and the
//!   channel from its master as used connections, so it backs off two
//!   connections earlier than the twins; the twins count client connections
//!   only, as `--max-conns` does.
//! - Reordering the exclusive waiters, `ngx_reorder_accept_events` (same
//!   file, nginx >= 1.21.6, called at the end of `ngx_event_accept`): with
//!   `EPOLLEXCLUSIVE` the listener's connection counts its accepts
//!   (`c->requests++`), and when the count *before* this accept is a multiple
//!   of 16 (the worker's 1st, 17th, 33rd... accept), or while
//!   `ngx_accept_disabled > 0`, nginx deletes the listener from its epoll and
//!   adds it again with `EPOLLEXCLUSIVE`. The kernel wakes the first idle
//!   exclusive waiter in the order they were added, so this moves the worker
//!   to the back of that queue. An `accept4` that fails (`EAGAIN` included)
//!   returns before the reorder and does not count.

/// nginx re-adds its listener on every this many accepts.
pub const REORDER_EVERY: u64 = 16;

/// `ngx_accept_disabled` after an accept: `connection_n / 8 -
/// free_connection_n`, with `connection_n` the worker's `--max-conns` and
/// `open` the connections it had open before this one. Positive: back off.
pub fn accept_disabled(max_conns: usize, open: usize) -> i64 {
    let max = max_conns as i64;
    max / 8 - (max - open as i64)
}

/// Whether nginx's `ngx_reorder_accept_events` re-adds the listener after an
/// accept: `accepts_before` is how many accepts this worker made before this
/// one, `disabled` the [`accept_disabled`] this accept computed.
pub fn reorders(accepts_before: u64, disabled: i64) -> bool {
    accepts_before.is_multiple_of(REORDER_EVERY) || disabled > 0
}

/// How many reorders a worker makes in `accepts` accepts while never backing
/// off: its 1st, 17th, 33rd... accept, `ceil(accepts / 16)`.
pub fn periodic_reorders(accepts: u64) -> u64 {
    accepts.div_ceil(REORDER_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_starts_past_seven_eighths_of_max_conns() {
        // nginx's default worker_connections: 4096 / 8 = 512 free at least.
        assert_eq!(accept_disabled(4096, 0), 512 - 4096);
        assert_eq!(accept_disabled(4096, 3584), 0);
        assert_eq!(accept_disabled(4096, 3585), 1);
        assert_eq!(accept_disabled(4096, 4095), 511);
        // 64: positive from the accept with 57 already open.
        assert_eq!(accept_disabled(64, 56), 0);
        assert_eq!(accept_disabled(64, 57), 1);
        assert_eq!(accept_disabled(64, 63), 7);
        // Fewer than 8: 0 / 8 - free, positive only when nothing is free.
        assert_eq!(accept_disabled(4, 3), -1);
        assert_eq!(accept_disabled(4, 4), 0);
    }

    #[test]
    fn reorders_on_the_first_accept_every_sixteenth_and_while_backing_off() {
        let which: Vec<u64> = (0..40).filter(|&n| reorders(n, -5)).collect();
        assert_eq!(which, [0, 16, 32]);
        assert!(reorders(5, 1));
        assert!(!reorders(5, 0));
        for accepts in 0..100 {
            let counted = (0..accepts).filter(|&n| reorders(n, -1)).count() as u64;
            assert_eq!(periodic_reorders(accepts), counted, "{accepts} accepts");
        }
        assert_eq!(periodic_reorders(1), 1);
        assert_eq!(periodic_reorders(16), 1);
        assert_eq!(periodic_reorders(17), 2);
    }
}
