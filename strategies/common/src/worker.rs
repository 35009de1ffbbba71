//! The worker process's event loop, the same for every strategy.
//!
//! A worker is one mio `Poll` (one epoll instance) over: its client
//! connections, a signalfd for SIGTERM/SIGINT, the control channel to the
//! master, and whatever its strategy's [`Intake`] registers to obtain new
//! connections (a listener, or the channel the master passes descriptors on).
//! Strategies differ only in their intake; everything a request costs once it
//! has arrived is identical, so differences in the measurements come from how
//! connections are shared, not from how they are served.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::channel::Frame;
use crate::conn::{Conn, Next};
use crate::signals::TermSignals;
use crate::stats::{Shared, WorkerCounters};

/// Tokens at or above this value belong to the intake; below are connections.
pub const INTAKE_TOKEN_BASE: usize = usize::MAX / 2;
const SIGNAL: Token = Token(usize::MAX - 1);
const CONTROL: Token = Token(usize::MAX - 2);

/// How long a stopping worker lets requests in progress finish.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What a worker knows about itself.
#[derive(Clone, Copy)]
pub struct WorkerEnv {
    /// Worker index, 0..workers.
    pub slot: usize,
    /// This process's pid (the `X-Worker` header).
    pub pid: u32,
    /// This worker's counters in shared memory.
    pub counters: &'static WorkerCounters,
    /// Shared memory of the whole server (for the accept mutex).
    pub shared: Shared,
    /// Extra CPU burnt per request, µs: a deliberate slowdown for testing and
    /// calibrating regression checks (`--test-only-inject-cpu-us`); 0 normally.
    pub injected_cpu_us: u64,
}

/// A connection handed over by the intake.
pub struct Accepted {
    /// The connected socket, non-blocking and close-on-exec.
    pub fd: OwnedFd,
    /// For master-pass: the master's sequence number.
    pub tag: Option<u32>,
}

/// How a strategy brings new connections into a worker.
pub trait Intake {
    /// Registers the intake's sources in `poll` with tokens at or above
    /// [`INTAKE_TOKEN_BASE`]. Gets the control channel; returns it unless the
    /// intake uses it itself (master-pass).
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>>;

    /// Called before each `epoll_wait`; may cap its timeout.
    fn before_poll(&mut self, _poll: &Poll) -> io::Result<Option<Duration>> {
        Ok(None)
    }

    /// An event for one of the intake's tokens; new connections go to `out`.
    fn on_event(&mut self, event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()>;

    /// All events of one wakeup have been handled.
    fn after_events(&mut self, _poll: &Poll) -> io::Result<()> {
        Ok(())
    }

    /// A connection that came with `tag` was closed.
    fn on_closed(&mut self, _tag: u32, _poll: &Poll) -> io::Result<()> {
        Ok(())
    }

    /// The worker is shutting down: stop taking new connections.
    fn stop(&mut self, _poll: &Poll) -> io::Result<()> {
        Ok(())
    }
}

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
    };
    let mut events = Events::with_capacity(256);
    let mut accepted = Vec::new();
    let mut stopping_since: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if let Some(since) = stopping_since {
            if lp.conns.is_empty() || now >= since + DRAIN_GRACE {
                return Ok(());
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
                        intake.stop(&poll)?;
                        lp.close_idle(&poll, &mut intake)?;
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
        // The intake's events come first and are closed off before any
        // connection is served, as nginx handles its posted accept events and
        // releases the accept mutex before it processes the other events.
        intake.after_events(&poll)?;
        for event in events.iter() {
            if event.token().0 < INTAKE_TOKEN_BASE {
                lp.drive(event.token().0, &poll, &mut intake)?;
            }
        }
        // Connections that arrive while stopping are still served (a blocked
        // accept() cannot be called back); the drain deadline bounds them.
        for a in accepted.drain(..) {
            lp.add(a, &poll, &mut intake)?;
        }
        lp.fire_timers(&poll, &mut intake)?;
    }
}

struct Loop {
    env: WorkerEnv,
    conns: Slab<Conn>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
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
        entry.insert(Conn::new(stream, a.tag));
        WorkerCounters::bump(&self.env.counters.connections);
        self.env.counters.open_connections.fetch_add(1, Relaxed);
        self.drive(key, poll, intake)
    }

    fn drive<I: Intake>(&mut self, key: usize, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        match conn.drive(self.env.pid, self.env.counters, self.env.injected_cpu_us) {
            Ok(Next::Wait) => Ok(()),
            Ok(Next::Sleep(d)) => {
                conn.timer_generation += 1;
                self.timers
                    .push(Reverse((Instant::now() + d, key, conn.timer_generation)));
                Ok(())
            }
            Ok(Next::Close) | Err(_) => self.close(key, poll, intake),
        }
    }

    fn close<I: Intake>(&mut self, key: usize, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let mut conn = self.conns.remove(key);
        // Deregister before close: with master-pass the master may still hold
        // a copy of this socket, and an epoll registration lives as long as
        // the open file description, not the descriptor.
        let _ = poll.registry().deregister(&mut conn.stream);
        drop(conn.stream);
        self.env.counters.open_connections.fetch_sub(1, Relaxed);
        if let Some(tag) = conn.tag {
            intake.on_closed(tag, poll)?;
        }
        Ok(())
    }

    fn close_idle<I: Intake>(&mut self, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key, poll, intake)?;
        }
        Ok(())
    }

    fn fire_timers<I: Intake>(&mut self, poll: &Poll, intake: &mut I) -> io::Result<()> {
        let now = Instant::now();
        while let Some(Reverse((at, key, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(key) {
                if conn.timer_generation == generation {
                    conn.wake();
                    self.drive(key, poll, intake)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a small frame on a socket that may be non-blocking (the intake may
/// have set O_NONBLOCK on the shared file description): an 8-byte frame on
/// an empty channel never blocks, but a full one is waited out, not failed.
fn write_all_nonblocking(mut sock: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
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
