//! Creating listening sockets, with errors that say what to do.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// Options for a listening socket.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// `SO_REUSEPORT`: join (or start) a reuseport group on the address.
    pub reuse_port: bool,
    /// `O_NONBLOCK` on the socket (shared by every process holding it).
    pub nonblocking: bool,
    /// `listen()` backlog.
    pub backlog: i32,
}

/// Creates a TCP socket bound to `addr` (close-on-exec, `SO_REUSEADDR`).
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in
/// TIME_WAIT; on Linux it does not allow two listeners on one port (only
/// `SO_REUSEPORT` does that).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| explain_bind_error(addr, e))?;
    Ok(socket)
}

/// Creates, binds and listens.
pub fn listen(addr: SocketAddr, opts: ListenOptions) -> io::Result<Socket> {
    let socket = bind(addr, opts.reuse_port)?;
    socket.set_nonblocking(opts.nonblocking)?;
    socket.listen(opts.backlog)?;
    Ok(socket)
}

/// The address a bound socket got (the port the kernel picked for port 0).
pub fn local_addr(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listening socket has no IP address"))
}

/// Turns a bind failure into a message that says what to do.
pub fn explain_bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{addr} is in use: pass --listen {}:0 to pick a free port, or stop the process that holds it",
                addr.ip()
            ),
        ),
        Some(libc::EADDRNOTAVAIL) => io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr} is not an address of this machine: listen on 127.0.0.1 or another local address"),
        ),
        Some(libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("binding {addr} needs privileges (ports below 1024): pick a port of 1024 or above"),
        ),
        _ => io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")),
    }
}
