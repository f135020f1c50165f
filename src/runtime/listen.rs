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

/// A listening SO_REUSEPORT socket on `addr`: it binds beside a [`Reservation`] (which never
/// listens) and beside the other cores' sockets. A coordinator with `balance_connections` makes
/// one and gives every core a copy (`runtime::accept`).
pub fn listening_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Binds one listener per core on `addr` (all with SO_REUSEPORT, joined in core order) and
/// steers each new connection to the listener of the core pinned to the CPU that processed its
/// SYN, with a classic-BPF `SO_ATTACH_REUSEPORT_CBPF` program.
///
/// Why: for a connection from a process on this host (a coordinator core talking to a storage
/// node, as in `pairdb dev`), that CPU is the connecting thread's own, so the connection is served
/// on the same CPU that opened it and a request's fan-out never wakes the other CPU. On a VM a
/// cross-CPU wake-up is an inter-processor interrupt and a VM exit: measured here, it doubled the
/// CPU time of an operation at moderate load (docs/PERFORMANCE.md). Connections whose SYN was
/// processed on a CPU without a listener fall back to the kernel's hash.
///
/// `core_cpus[i]` is the CPU of core `i`. Returns the concrete address (port 0 resolved) and the
/// listening sockets in core order.
pub fn bind_steered(
    addr: SocketAddr,
    core_cpus: &[usize],
) -> std::io::Result<(SocketAddr, Vec<Socket>)> {
    let mut sockets = Vec::with_capacity(core_cpus.len().max(1));
    let mut bound = addr;
    for _ in 0..core_cpus.len().max(1) {
        let socket = listening_socket(bound)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("bound address is not an IP socket"))?;
        }
        sockets.push(socket);
    }
    if core_cpus.len() > 1 {
        attach_cpu_steering(&sockets[0], core_cpus)?;
    }
    Ok((bound, sockets))
}

/// The program: load the CPU number; for each core, if it is that core's CPU return the core's
/// index (its socket's position in the group); otherwise return an out-of-range index, which makes
/// the kernel fall back to its hash.
fn attach_cpu_steering(socket: &Socket, core_cpus: &[usize]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // linux/filter.h: ancillary data offsets of classic BPF.
    const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
    const SKF_AD_CPU: u32 = 36;
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let mut program =
        vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, SKF_AD_OFF + SKF_AD_CPU)];
    for (core, &cpu) in core_cpus.iter().enumerate() {
        program.push(libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: cpu as u32,
        });
        program.push(stmt(libc::BPF_RET | libc::BPF_K, core as u32));
    }
    program.push(stmt(libc::BPF_RET | libc::BPF_K, u32::MAX));
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steered_listeners_share_one_concrete_port() {
        let (addr, sockets) = bind_steered("127.0.0.1:0".parse().unwrap(), &[0, 1]).unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(sockets.len(), 2);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap().as_socket(), Some(addr));
        }
        // The group accepts connections (whichever listener the program picks).
        let _client = std::net::TcpStream::connect(addr).unwrap();
    }
}
