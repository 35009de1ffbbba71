//! The worker process's event loop, the same for every strategy.
//!
//! A worker is one mio `Poll` (one epoll instance) over: its client
//! connections, a signalfd for SIGTERM/SIGINT, the control channel to the
//! master, and whatever its strategy's [`Intake`] (see [`crate::strategy`])
//! registers to obtain new connections (a listener, or the channel the master
//! passes descriptors on).
//! Strategies differ only in their intake; everything a request costs once it
//! has arrived is identical, so differences in the measurements come from how
//! connections are shared, not from how they are served.
//!
//! # Stopping
//!
//! SIGTERM (or SIGINT) makes the worker stop taking new connections
//! ([`Intake::stop`]: what that means is each strategy's business; the intake
//! hands over any connection it still had to take), tell the master it is
//! draining, and finish what it has: every connection is marked closing (see
//! [`crate::conn`]: `Connection: close` on its next response, idle ones closed
//! after a short grace). The worker exits once no connection is open and the
//! intake says it has quiesced (nothing more can arrive), or at
//! [`DRAIN_GRACE`], whichever comes first. The master sends the same SIGTERM
//! to stop the server and to retire one worker in a rolling restart.
//!
//! # At `--max-conns`
//!
//! With `max_conns` connections open the worker stops taking new ones until
//! one closes ([`Intake::set_paused`]), like nginx's `worker_connections`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::channel::Frame;
use crate::config::WorkerEnv;
use crate::conn::{Conn, Next};
use crate::signals::TermSignals;
use crate::stats::WorkerCounters;
use crate::strategy::{Accepted, Intake, INTAKE_TOKEN_BASE};

const SIGNAL: Token = Token(usize::MAX - 1);
const CONTROL: Token = Token(usize::MAX - 2);

/// How long a stopping worker lets requests in progress finish.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Runs the worker until SIGTERM/SIGINT (then drains for up to
/// [`DRAIN_GRACE`]) or until the master's end of the control channel closes.
pub fn run<I: Intake>(env: WorkerEnv, mut intake: I, control: UnixStream) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let signals = TermSignals::open()?;
    poll.registry().register(
        &mut SourceFd(&signals.as_raw_fd()),
        SIGNAL,
        Interest::READABLE,
    )?;

    // Ready only once the intake is registered (its listener in our epoll,
    // its acceptor blocked in accept()): a worker that said ready too early
    // would let the others take the first burst of connections, and with
    // keep-alive keep them for the whole run. The intake may keep the channel
    // (master-pass), so the frame goes out on a duplicate of it.
    let ready = control.try_clone()?;
    let mut control = match intake.register(&poll, control)? {
        Some(c) => {
            c.set_nonblocking(true)?;
            let mut c = mio::net::UnixStream::from_std(c);
            poll.registry()
                .register(&mut c, CONTROL, Interest::READABLE)?;
            Some(c)
        }
        None => None,
    };
    write_all_nonblocking(&ready, &Frame::Ready.encode())?;
    drop(ready);

    let mut lp = Loop {
        env,
        conns: Slab::new(),
        timers: BinaryHeap::new(),
        next_timer_id: 0,
        stopping: false,
    };
    let mut events = Events::with_capacity(256);
    let mut accepted = Vec::new();
    let mut stopping_since: Option<Instant> = None;
    let mut paused = false;
    let max_conns = env.max_conns.max(1);

    loop {
        let now = Instant::now();
        if let Some(since) = stopping_since {
            if (lp.conns.is_empty() && intake.quiesced()) || now >= since + DRAIN_GRACE {
                return Ok(());
            }
        } else {
            let full = lp.conns.len() >= max_conns;
            if full != paused {
                paused = full;
                if full {
                    WorkerCounters::bump(&env.counters.max_conns_pauses);
                }
                intake.set_paused(&poll, full)?;
            }
        }
        let mut timeout = lp
            .timers
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now));
        if let Some(cap) = intake.before_poll(&poll)? {
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        if let Some(since) = stopping_since {
            let left = (since + DRAIN_GRACE).saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            match event.token() {
                SIGNAL => {
                    if signals.drain()? && stopping_since.is_none() {
                        stopping_since = Some(Instant::now());
                        intake.stop(&poll, &mut accepted)?;
                        if let Some(c) = control.as_mut() {
                            // The master is reading; an 8-byte frame fits.
                            write_all_nonblocking(c, &Frame::Draining.encode())?;
                        }
                        lp.begin_stop(&poll, &mut intake)?;
                    }
                }
                CONTROL => {
                    // The master never writes here for these strategies; end
                    // of stream means the master is gone (PR_SET_PDEATHSIG
                    // normally kills us first).
                    let mut buf = [0u8; 64];
                    if let Some(c) = control.as_mut() {
                        match c.read(&mut buf) {
                            Ok(0) => return Ok(()),
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Token(t) if t >= INTAKE_TOKEN_BASE => {
                    intake.on_event(event, &poll, &mut accepted)?
                }
                Token(_) => {}
            }
        }
        // A connection counts as this worker's the moment the intake hands it
        // over (for master-pass: when it is acknowledged), not when it is
        // registered below: a worker killed in between has taken it, and its
        // `connections - requests` is what it took and never answered.
        env.counters
            .connections
            .fetch_add(accepted.len() as u64, Relaxed);
        // The intake's events come first and are closed off before any
        // connection is served, as nginx handles its posted accept events and
        // releases the accept mutex before it processes the other events.
        intake.after_events(&poll)?;
        for event in events.iter() {
            if event.token().0 < INTAKE_TOKEN_BASE {
                lp.on_event(event, &poll, &mut intake)?;
            }
        }
        // Connections that arrive while stopping are served like the rest
        // (closing after one response); the drain deadline bounds them.
        for a in accepted.drain(..) {
            lp.add(a, &poll, &mut intake)?;
        }
        lp.fire_timers(&poll, &mut intake)?;
    }
}

/// A timer heap entry: (deadline, connection key, timer id).
type TimerEntry = Reverse<(Instant, usize, u64)>;

struct Loop {
    env: WorkerEnv,
    conns: Slab<Conn>,
    /// One live entry per connection at most (stale ones are skipped): a
    /// deadline that moves later is re-armed only when its entry fires.
    timers: BinaryHeap<TimerEntry>,
    next_timer_id: u64,
    stopping: bool,
}

impl Loop {
    fn add<I: Intake>(&mut self, a: Accepted, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let std_stream = std::net::TcpStream::from(a.fd);
        // Responses go out in one write; no reason to wait for Nagle (nginx's
        // tcp_nodelay and Node's http server default to the same).
        let _ = std_stream.set_nodelay(true);
        let mut stream = TcpStream::from_std(std_stream);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let conn = entry.insert(Conn::new(stream, a.tag));
        if self.stopping {
            conn.set_closing();
        }
        self.env.counters.open_connections.fetch_add(1, Relaxed);
        self.drive(key, poll, intake)
    }

    /// A connection's readiness event: what it says about the socket, then
    /// drive the connection.
    fn on_event<I: Intake>(
        &mut self,
        event: &mio::event::Event,
        poll: &Poll,
        intake: &mut I,
    ) -> io::Result<()> {
        let key = event.token().0;
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.on_readable(event.is_read_closed());
            }
        }
        self.drive(key, poll, intake)
    }

    fn drive<I: Intake>(&mut self, key: usize, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let next = conn.drive(&self.env);
        self.settle(key, next, poll, intake)
    }

    /// After the connection moved: close it, or arm its deadline.
    fn settle<I: Intake>(
        &mut self,
        key: usize,
        next: io::Result<Next>,
        poll: &Poll,
        intake: &mut I,
    ) -> io::Result<()> {
        match next {
            Ok(Next::Wait) => {
                self.arm(key);
                Ok(())
            }
            Ok(Next::Close) | Err(_) => self.close(key, poll, intake),
        }
    }

    /// Pushes a heap entry for the connection's deadline unless an entry at
    /// or before it is live already.
    fn arm(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(at) = conn.deadline(&self.env.timeouts) else {
            return;
        };
        if conn.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        self.next_timer_id += 1;
        conn.timer_id = self.next_timer_id;
        conn.armed = Some(at);
        self.timers.push(Reverse((at, key, self.next_timer_id)));
    }

    fn close<I: Intake>(&mut self, key: usize, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let mut conn = self.conns.remove(key);
        // Deregister before close: with master-pass the master may still hold
        // a copy of this socket, and an epoll registration lives as long as
        // the open file description, not the descriptor.
        let _ = poll.registry().deregister(&mut conn.stream);
        // Counted before the close: a client that sees its connection end
        // (and opens the next one) finds this worker's count up to date.
        WorkerCounters::bump(&self.env.counters.closed);
        drop(conn.stream);
        intake.connection_closed();
        self.env.counters.open_connections.fetch_sub(1, Relaxed);
        if let Some(tag) = conn.tag {
            intake.on_closed(tag, poll)?;
        }
        Ok(())
    }

    /// The worker is stopping: every connection closes after its next
    /// response, or once idle for the stop grace (its deadline may be earlier
    /// now, so it is re-armed; one already past fires at once).
    fn begin_stop<I: Intake>(&mut self, poll: &Poll, intake: &mut I) -> io::Result<()> {
        self.stopping = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.conns[key].set_closing();
            self.arm(key);
        }
        self.fire_timers(poll, intake)
    }

    fn fire_timers<I: Intake>(&mut self, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let now = Instant::now();
        while let Some(Reverse((at, key, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let due = match self.conns.get_mut(key) {
                // Not stale (superseded by an earlier entry, or the key's
                // connection closed and the key reused).
                Some(conn) if conn.timer_id == id => {
                    conn.armed = None;
                    conn.deadline(&self.env.timeouts)
                }
                _ => continue,
            };
            match due {
                None => {}
                Some(due) if due > now => self.arm(key),
                Some(_) => {
                    let next = self.conns[key].on_deadline(&self.env);
                    self.settle(key, next, poll, intake)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a small frame on a socket that may be non-blocking (the intake may
/// have set O_NONBLOCK on the shared file description): an 8-byte frame on
/// an empty channel never blocks, but a full one is waited out, not failed.
fn write_all_nonblocking<W: Write>(mut sock: W, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sock.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
