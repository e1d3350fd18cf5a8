//! Free loopback ports: ask the kernel for one (bind to port 0) and let it go.

/// A TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// True while something accepts connections on 127.0.0.1:`port`.
pub fn in_use(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}
