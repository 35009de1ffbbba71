//! What each twin copies of its reference server and where it differs: the
//! "copies / differs" notes the report prints beside the reference
//! comparisons (and the README's twins table repeats). A twin is the lab
//! strategy that stands beside a real server ([`crate::model::names::TWINS`]
//! pairs the names); its note says which version of which code it follows,
//! so that a difference in the numbers can be told from a difference in the
//! code.

/// One twin's note.
#[derive(Clone, Copy, Debug)]
pub struct TwinNote {
    /// The reference server (`node:rr`).
    pub reference: &'static str,
    /// The lab strategy that twins it (`master-pass`).
    pub ours: &'static str,
    /// The version installed here and the code the twin follows.
    pub follows: &'static str,
    /// What it copies.
    pub copies: &'static str,
    /// Each known difference.
    pub differs: &'static [&'static str],
}

/// Every twin, in report order.
pub const TWIN_NOTES: &[TwinNote] = &[
    TwinNote {
        reference: "node:rr",
        ours: "master-pass",
        follows: "Node v20.20.2 with libuv 1.46.0: libuv's uv__server_io (src/unix/stream.c), Node's RoundRobinHandle distribute/handoff/remove (lib/internal/cluster/round_robin_handle.js), the worker's reply (lib/internal/cluster/child.js) and the handle hand-off (lib/internal/child_process.js)",
        copies: "the listener level-triggered in the master's epoll, one accept4 per wakeup (never an EAGAIN accept); a FIFO of pending connections and of free workers, one unacknowledged descriptor per worker; two replies per descriptor (NODE_HANDLE_ACK, then the cluster's accepted); a descriptor in flight to a worker that dies is lost, not re-routed",
        differs: &[
            "8-byte binary frames on the channel, not JSON lines",
            "the master blocks in epoll_wait where Node's primary polls with a 0 ms timeout while it has work queued",
            "master and workers read their channels until EAGAIN (one more read per wakeup) where libuv stops after a short read",
            "a descriptor lost in flight is closed at once (the client sees the close); Node keeps it open until the client gives up",
            "out of descriptors, ours leaves connections queued; libuv's emfile trick accepts and closes them",
            "when the last worker is gone ours keeps the listener and what is pending for the replacement; Node closes both",
            "a worker registers a connection in its epoll once, for EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered; libuv registers it for EPOLLIN only, level-triggered, and adds EPOLLOUT while a write waits",
        ],
    },
    TwinNote {
        reference: "node:none",
        ours: "shared:epoll",
        follows: "Node v20.20.2 with libuv 1.46.0, cluster SCHED_NONE: every worker polls the one listening socket in its own libuv loop (uv__server_io, src/unix/stream.c)",
        copies: "the listener level-triggered in every worker's epoll without EPOLLEXCLUSIVE, one accept4 per wakeup; every idle worker wakes for each connection and the losers' accept returns EAGAIN",
        differs: &[
            "the workers inherit the listener across fork; Node's primary sends it to each worker over the IPC channel (SCM_RIGHTS): the same open file description either way",
            "requests are served by the lab's Rust code, not Node's http module",
            "a worker registers a connection in its epoll once, for EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered; libuv registers it for EPOLLIN only, level-triggered, and adds EPOLLOUT while a write waits",
        ],
    },
    TwinNote {
        reference: "nginx:epoll-exclusive",
        ours: "shared:epoll-exclusive",
        follows: "nginx 1.22.1 with accept_mutex off: ngx_event_accept and ngx_reorder_accept_events (src/event/ngx_event_accept.c), ngx_accept_disabled",
        copies: "the one inherited listener in every worker's epoll with EPOLLEXCLUSIVE, level-triggered, one accept4 per wakeup; EPOLL_CTL_DEL then EPOLL_CTL_ADD of the listener after the worker's 1st and every 16th accept, and after every accept while ngx_accept_disabled = connection_n/8 - free_connection_n is positive",
        differs: &[
            "connection_n is --max-conns and only client connections count as used (nginx also counts its listener and channel, so it backs off two connections sooner)",
            "at --max-conns the worker leaves the listener until a connection closes; nginx accepts and closes (\"worker_connections are not enough\")",
            "with one worker ours still uses EPOLLEXCLUSIVE and reorders; nginx does neither",
            "ours accepts with SOCK_CLOEXEC|SOCK_NONBLOCK; nginx with SOCK_NONBLOCK only (its connections are not close-on-exec)",
            "ours registers a new connection for EPOLLIN|EPOLLOUT|EPOLLRDHUP at once; nginx for EPOLLIN|EPOLLRDHUP and adds EPOLLOUT only when a write would block (edge-triggered both)",
        ],
    },
    TwinNote {
        reference: "nginx:accept-mutex",
        ours: "shared:accept-mutex",
        follows: "nginx 1.22.1 with accept_mutex on: ngx_process_events_and_timers and ngx_trylock_accept_mutex (src/event/ngx_event.c, ngx_event_accept.c)",
        copies: "a lock in shared memory tried once per loop turn; the holder adds the listener (level-triggered), handles its accept events, releases the lock, then serves; a loser removes it and waits at most accept_mutex_delay (500 ms); while ngx_accept_disabled > 0 the worker skips the try and counts it down",
        differs: &[
            "the same connection_n and pause at --max-conns as shared:epoll-exclusive",
            "after EMFILE nginx sets ngx_accept_disabled = 1 and releases the lock; ours leaves the listener alone for 100 ms",
            "nginx handles accept events inline while backing off; ours always before connections",
            "ours accepts with SOCK_CLOEXEC|SOCK_NONBLOCK; nginx with SOCK_NONBLOCK only (its connections are not close-on-exec)",
            "ours registers a new connection for EPOLLIN|EPOLLOUT|EPOLLRDHUP at once; nginx for EPOLLIN|EPOLLRDHUP and adds EPOLLOUT only when a write would block (edge-triggered both)",
            "nginx adds the listener with EPOLLIN|EPOLLRDHUP (as every read event, ngx_epoll_add_event); ours with EPOLLIN alone (EPOLLRDHUP never fires on a listening socket)",
        ],
    },
    TwinNote {
        reference: "nginx:reuseport",
        ours: "reuseport",
        follows: "nginx 1.22.1, listen ... reuseport: ngx_clone_listening and ngx_open_listening_sockets (src/core/ngx_connection.c), ngx_event_process_init (src/event/ngx_event.c), ngx_reap_children (src/os/unix/ngx_process_cycle.c)",
        copies: "the master opens one SO_REUSEPORT listener per worker before any fork and keeps them all; worker i polls socket i only, level-triggered, one accept4 per wakeup; a replacement takes its slot's socket, so a crash loses nothing queued",
        differs: &[
            "nginx's workers inherit every worker's socket and ignore the others; ours keep only their own (the kernel sees no difference: the master holds all)",
            "a rolling restart replaces one slot at a time, forking the replacement after the old worker exits; nginx's reload starts every new worker before the old ones quit (none is reset either way)",
            "ours binds the address once without SO_REUSEPORT first, so a port someone else holds is refused rather than joined",
            "ours accepts with SOCK_CLOEXEC|SOCK_NONBLOCK; nginx with SOCK_NONBLOCK only (its connections are not close-on-exec)",
            "ours registers a new connection for EPOLLIN|EPOLLOUT|EPOLLRDHUP at once; nginx for EPOLLIN|EPOLLRDHUP and adds EPOLLOUT only when a write would block (edge-triggered both)",
            "nginx adds the listener with EPOLLIN|EPOLLRDHUP (as every read event, ngx_epoll_add_event); ours with EPOLLIN alone (EPOLLRDHUP never fires on a listening socket)",
        ],
    },
    TwinNote {
        reference: "apache:prefork",
        ours: "shared:prefork",
        follows: "Apache httpd 2.4.71 (Debian), prefork MPM: child_main and stop_listening (server/mpm/prefork/prefork.c), checked against strace of its children here",
        copies: "single-threaded children blocking in accept4 on the one inherited listener (O_NONBLOCK off), with no poll before it and no accept mutex (one listener: SINGLE_LISTEN_UNSERIALIZED_ACCEPT); each connection, every keep-alive request on it, served to its end before the next accept, so N children serve at most N connections; a graceful stop closes the child's listener from the signal handler and lets the connection in hand finish",
        differs: &[
            "requests are served by the lab's code on a non-blocking socket waiting in poll(2); Apache's core reads and writes with its own timeouts and answers / through a mod_lua handler (which adds the X-Worker header)",
            "after a response with Connection: close Apache lingers (shutdown(SHUT_WR), then reads for up to 2 s); ours closes at once",
            "Apache's child checks its parent's pipe of death after each connection; ours is stopped by SIGTERM alone",
            "Apache's parent keeps spare children (MinSpareServers/MaxSpareServers, here pinned to exactly N); ours keeps exactly N",
            "Apache accepts a blocking connection and sets O_NONBLOCK with fcntl next; ours asks for SOCK_NONBLOCK in accept4",
            "Apache's child builds a pollset (an epoll holding the listener, EPOLLIN, level-triggered) that with one listener it never waits on; ours has no epoll (both block in accept)",
        ],
    },
];

/// The note of the twin pair with reference `reference`.
pub fn note_for(reference: &str) -> Option<&'static TwinNote> {
    TWIN_NOTES.iter().find(|n| n.reference == reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::{REFERENCES, STRATEGIES, TWINS};

    #[test]
    fn every_twin_pair_has_a_note_and_every_note_a_pair() {
        for (reference, ours) in TWINS {
            let n = note_for(reference).unwrap_or_else(|| panic!("{reference} has a note"));
            assert_eq!(n.ours, *ours, "{reference}");
        }
        assert_eq!(TWIN_NOTES.len(), TWINS.len());
        for n in TWIN_NOTES {
            assert!(REFERENCES.contains(&n.reference), "{}", n.reference);
            assert!(STRATEGIES.contains(&n.ours), "{}", n.ours);
            assert!(
                !n.differs.is_empty(),
                "{}: no twin copies exactly",
                n.reference
            );
        }
    }
}
