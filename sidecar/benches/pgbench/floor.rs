//! The floor under any proxy on this machine: a proxy that only copies bytes both ways (no
//! protocol, no policy), single-threaded like the sidecar. What it loses against a direct
//! connection is the extra hop itself (the kernel's TCP path twice more per round trip, and the
//! wakeups), which no proxy code can win back; the sidecar is judged against it in the floor
//! table (`BENCH_FLOOR=1`).

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

/// Starts the copying proxy in front of `upstream` on its own thread (with its own
/// single-threaded runtime, as the sidecar runs by default); returns the port it listens on.
/// It lives as long as the process.
pub(crate) fn start(upstream: u16) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("copy-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(relay(client, upstream));
                }
            });
        })
        .context("starting the copy proxy's thread")?;
    Ok(port)
}

async fn relay(mut client: TcpStream, upstream: u16) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    // As the sidecar sets them: a reply is sent when it is read, not batched.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
