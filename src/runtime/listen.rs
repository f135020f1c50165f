//! Binding one port on every core.
//!
//! Each core opens its own listening socket on the same address with SO_REUSEPORT (glommio sets
//! it), so the kernel spreads incoming connections over the cores and a connection lives its
//! whole life on the core that accepted it. Port 0 would give every core a different port, so
//! [`reserve`] first resolves it to one concrete free port.

use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// A bound, non-listening SO_REUSEPORT socket that holds a concrete port until the cores have
/// bound it. A socket that does not listen never receives connections.
pub struct Reservation {
    _socket: Socket,
    /// The concrete address (port 0 resolved).
    pub addr: SocketAddr,
}

/// Resolves `addr` to a concrete port, free for the cores to bind with SO_REUSEPORT.
pub fn reserve(addr: SocketAddr) -> std::io::Result<Reservation> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound address is not an IP socket"))?;
    Ok(Reservation { _socket: socket, addr })
}
