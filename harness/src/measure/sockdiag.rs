//! Listening sockets on a port and their accept queues, from
//! NETLINK_SOCK_DIAG (`inet_diag`).
//!
//! One dump request per address family asks for TCP sockets in state LISTEN
//! only (`idiag_states = 1 << TCP_LISTEN`) with the local port in the
//! request's `inet_diag_sockid`: the kernel then walks the listening hash
//! alone and skips listeners on other ports itself (no bytecode filter
//! needed); the established table, with its TIME_WAIT sockets, is not
//! walked at all. Reading `/proc/net/tcp` instead formats every socket of
//! the machine, which after close-mode load runs (tens of thousands of
//! TIME_WAIT sockets) costs tens of milliseconds of system CPU a read.
//! The port is checked again on the answers here all the same.
//!
//! For a listener `idiag_rqueue` is the accept queue's current length,
//! `idiag_wqueue` its backlog and `idiag_inode` the socket's inode, the
//! number `/proc/net/tcp` and `/proc/PID/fd` show.
//!
//! Cost, measured by hand (2-CPU VM shared with other work, kernel 6.18,
//! debug build), with 43,600 TIME_WAIT sockets present, made by three
//! `target/debug/lab-server --strategy reuseport --workers 2 --listen
//! 127.0.0.1:PORT` (PORT 18080, 18081, 18082) and, at the same time, one
//! `target/debug/loadgen --target 127.0.0.1:PORT --mode close -c 32 -d 25s`
//! against each; then at once `cargo run -p harness --example
//! sockdiag_cost 18080` (`harness/examples/sockdiag_cost.rs`), and
//! `time (for i in $(seq 20); do cat /proc/net/tcp >/dev/null; done)`:
//!
//! - 1000 samples here (IPv4 and IPv6 dumps each): 33 ms wall, 27 ms sys,
//!   4 ms user, about 33 µs a sample (44 µs with 29,000 TIME_WAIT: the
//!   cost does not grow with them);
//! - 20 samples the old way (`/proc/net/tcp` and `tcp6` read and parsed):
//!   10.3 s wall, 1.9 s sys, 7.4 s user (the debug build's parsing), about
//!   96 ms sys a sample; 20 `cat /proc/net/tcp`: 1.36 s sys, 68 ms a read.
//!
//! At the 50 ms sampling interval that is under 0.1% of one CPU instead of
//! more than all of one.
//!
//! The request and the answers are laid out by hand in native byte order
//! (as the kernel reads and writes them), ports and addresses in network
//! byte order; the socket comes from `nix`, so there is no `unsafe` here.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// `SOCK_DIAG_BY_FAMILY`: the request type of `inet_diag_req_v2`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const REQUEST_DUMP: u16 = 0x1 | 0x300;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = 3;
/// `TCP_LISTEN` in the kernel's TCP state numbering.
const TCP_LISTEN: u8 = 10;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR: usize = 16;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_V2: usize = 56;
/// `sizeof(struct inet_diag_msg)`.
const DIAG_MSG: usize = 72;
/// How long one answer may take before the query gives up.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Socket inode.
    pub inode: u64,
    /// Connections waiting in its accept queue (`idiag_rqueue`).
    pub queue: u64,
    /// Its backlog, the most the accept queue holds (`idiag_wqueue`).
    pub backlog: u64,
}

/// A NETLINK_SOCK_DIAG socket, kept open for repeated queries.
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens the netlink socket; fails where the kernel has no sock_diag.
    pub fn open() -> io::Result<SockDiag> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0),
        )?;
        Ok(SockDiag {
            fd,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// The TCP listeners, IPv4 and IPv6, whose local port is `port`.
    pub fn listeners(&mut self, port: u16) -> io::Result<Vec<Listener>> {
        let mut out = self.dump(AddressFamily::Inet, port)?;
        out.extend(self.dump(AddressFamily::Inet6, port)?);
        Ok(out)
    }

    /// One dump of `family`'s listeners on `port`.
    fn dump(&mut self, family: AddressFamily, port: u16) -> io::Result<Vec<Listener>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = request(family as u8, port, seq);
        sendto(
            self.fd.as_raw_fd(),
            &req,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut out = Vec::new();
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag: empty answer",
                ));
            }
            if parse(&self.buf[..n], seq, port, &mut out)? {
                return Ok(out);
            }
        }
    }
}

/// The bytes of a dump request: `nlmsghdr` then `inet_diag_req_v2` asking
/// for TCP sockets of `family` in state LISTEN with local port `port`.
fn request(family: u8, port: u16, seq: u32) -> [u8; NLMSG_HDR + REQ_V2] {
    let mut b = [0u8; NLMSG_HDR + REQ_V2];
    // struct nlmsghdr
    b[0..4].copy_from_slice(&((NLMSG_HDR + REQ_V2) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&REQUEST_DUMP.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
    // struct inet_diag_req_v2
    let r = &mut b[NLMSG_HDR..];
    r[0] = family; // sdiag_family
    r[1] = libc::IPPROTO_TCP as u8; // sdiag_protocol
                                    // idiag_ext 0 (no extensions), pad 0
    r[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // idiag_states
                                                                  // struct inet_diag_sockid: idiag_sport (network order); the rest 0
                                                                  // (a zero dport is what lets the kernel walk the listening hash).
    r[8..10].copy_from_slice(&port.to_be_bytes());
    b
}

/// Reads one datagram of answers to request `seq` into `out` (listeners on
/// `port` only); `Ok(true)` once the dump is done.
fn parse(mut data: &[u8], seq: u32, port: u16, out: &mut Vec<Listener>) -> io::Result<bool> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return Err(bad("truncated message"));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let msg_seq = u32_at(data, 8);
        let body = &data[NLMSG_HDR..len];
        // Messages are padded to 4 bytes.
        data = &data[((len + 3) & !3).min(data.len())..];
        if msg_seq != seq {
            continue; // left over from an earlier, abandoned query
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = if body.len() >= 4 {
                    -(u32_at(body, 0) as i32)
                } else {
                    0
                };
                if errno == 0 {
                    continue; // an acknowledgement, not an error
                }
                return Err(io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < DIAG_MSG {
                    return Err(bad("short inet_diag_msg"));
                }
                // struct inet_diag_msg: family, state, timer, retrans, then
                // inet_diag_sockid (sport at 4), expires 52, rqueue 56,
                // wqueue 60, uid 64, inode 68; attributes follow.
                let state = body[1];
                let sport = u16::from_be_bytes([body[4], body[5]]);
                if state != TCP_LISTEN || sport != port {
                    continue;
                }
                out.push(Listener {
                    inode: u32_at(body, 68).into(),
                    queue: u32_at(body, 56).into(),
                    backlog: u32_at(body, 60).into(),
                });
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::kernel::{listen_rows, ListenRow};
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    /// A listener with `backlog` on `addr`, optionally with SO_REUSEPORT.
    fn listener(addr: SocketAddr, backlog: i32, reuseport: bool) -> TcpListener {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        if reuseport {
            s.set_reuse_port(true).unwrap();
        }
        s.bind(&addr.into()).unwrap();
        s.listen(backlog).unwrap();
        s.into()
    }

    /// The inode `/proc/self/fd` names for this socket (`socket:[INODE]`).
    fn inode_of(l: &TcpListener) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        let link = link.to_string_lossy();
        link.strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a socket: {link}"))
    }

    /// The listeners on `port`, queried until `done` holds (connections
    /// reach the accept queue when the handshake's last ACK is processed,
    /// which may lag `connect`'s return) or a second has passed.
    fn settle(port: u16, done: impl Fn(&[Listener]) -> bool) -> Vec<Listener> {
        let mut diag = SockDiag::open().expect("NETLINK_SOCK_DIAG");
        let until = Instant::now() + Duration::from_secs(1);
        loop {
            let got = diag.listeners(port).unwrap();
            if done(&got) || Instant::now() > until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Five clients queued on one listener on `ip`, then all accepted: the
    /// netlink answer matches the fd's inode, `/proc/net/tcp{,6}`'s row and
    /// the backlog; and the sampler saw the same.
    fn queue_of_one_listener(ip: &str, proc_file: &str) {
        let l = listener(format!("{ip}:0").parse().unwrap(), 7, false);
        let addr = l.local_addr().unwrap();
        let inode = inode_of(&l);
        let sampler =
            crate::measure::kernel::QueueSampler::start(addr.port(), Duration::from_millis(5));
        let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let got = settle(addr.port(), |g| g.iter().any(|l| l.queue == 5));
        assert_eq!(
            got,
            vec![Listener {
                inode,
                queue: 5,
                backlog: 7
            }]
        );
        let proc = listen_rows(&std::fs::read_to_string(proc_file).unwrap(), addr.port());
        assert_eq!(proc, vec![ListenRow { inode, queue: 5 }], "{proc_file}");
        std::thread::sleep(Duration::from_millis(30)); // a few samples at 5
        let accepted: Vec<TcpStream> = (0..5).map(|_| l.accept().unwrap().0).collect();
        let got = settle(addr.port(), |g| g.iter().all(|l| l.queue == 0));
        assert_eq!(
            got,
            vec![Listener {
                inode,
                queue: 0,
                backlog: 7
            }]
        );
        std::thread::sleep(Duration::from_millis(30));
        let samples = sampler.finish();
        assert_eq!(samples.listeners.len(), 1, "{samples:?}");
        assert_eq!(samples.listeners[0].inode, inode);
        assert_eq!(samples.listeners[0].max, 5, "{samples:?}");
        drop((clients, accepted));
    }

    #[test]
    fn an_ipv4_listener_reports_its_inode_and_accept_queue() {
        queue_of_one_listener("127.0.0.1", "/proc/net/tcp");
    }

    #[test]
    fn an_ipv6_listener_reports_its_inode_and_accept_queue() {
        queue_of_one_listener("[::1]", "/proc/net/tcp6");
    }

    #[test]
    fn reuseport_listeners_on_one_port_each_report_their_own_queue() {
        let a = listener("127.0.0.1:0".parse().unwrap(), 64, true);
        let addr = a.local_addr().unwrap();
        let b = listener(addr, 64, true);
        let n = 24;
        let clients: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let got = settle(addr.port(), |g| g.iter().map(|l| l.queue).sum::<u64>() == n);
        let queue_of = |l: &TcpListener| {
            let inode = inode_of(l);
            got.iter()
                .find(|g| g.inode == inode)
                .unwrap_or_else(|| panic!("listener {inode} missing from {got:?}"))
                .queue
        };
        let (qa, qb) = (queue_of(&a), queue_of(&b));
        assert_eq!(got.len(), 2, "{got:?}");
        // What each listener holds is what it can accept.
        let drain = |l: &TcpListener| {
            l.set_nonblocking(true).unwrap();
            std::iter::from_fn(|| l.accept().ok()).count() as u64
        };
        assert_eq!((qa, qb), (drain(&a), drain(&b)), "{got:?}");
        assert_eq!(qa + qb, n);
        drop(clients);
    }

    #[test]
    fn other_ports_and_closed_listeners_are_not_reported() {
        let l = listener("127.0.0.1:0".parse().unwrap(), 4, false);
        let port = l.local_addr().unwrap().port();
        let _other = listener("127.0.0.1:0".parse().unwrap(), 4, false);
        let mut diag = SockDiag::open().unwrap();
        assert_eq!(diag.listeners(port).unwrap().len(), 1);
        drop(l);
        assert_eq!(diag.listeners(port).unwrap(), vec![]);
    }

    #[test]
    fn answers_to_other_requests_and_errors_are_told_apart() {
        let msg = |kind: u16, seq: u32, body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&[0; 4]);
            m.extend_from_slice(body);
            m
        };
        let mut diag = [0u8; DIAG_MSG + 8]; // with an attribute after it
        diag[1] = TCP_LISTEN;
        diag[4..6].copy_from_slice(&8080u16.to_be_bytes());
        diag[56..60].copy_from_slice(&3u32.to_ne_bytes());
        diag[60..64].copy_from_slice(&128u32.to_ne_bytes());
        diag[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        let mut data = msg(SOCK_DIAG_BY_FAMILY, 6, &diag); // stale
        data.extend(msg(SOCK_DIAG_BY_FAMILY, 7, &diag));
        let mut out = Vec::new();
        assert!(!parse(&data, 7, 8080, &mut out).unwrap());
        assert_eq!(
            out,
            vec![Listener {
                inode: 4242,
                queue: 3,
                backlog: 128
            }]
        );
        assert!(parse(&msg(NLMSG_DONE, 7, &[0; 4]), 7, 8080, &mut out).unwrap());
        let err = parse(
            &msg(NLMSG_ERROR, 7, &(-libc::EINVAL).to_ne_bytes()),
            7,
            8080,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
