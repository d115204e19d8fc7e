//! A TCP proxy in front of a shared server, which a test can cut or freeze:
//! the connections through it break, or stay open without a byte passing,
//! while the server and everyone else's connections to it are untouched.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Listens on a loopback port of its own and forwards to `upstream`.
pub struct Proxy {
    port: u16,
    upstream: String,
    /// Cancelled by [`Proxy::cut`]: stops listening and drops every connection.
    open: CancellationToken,
    /// False while frozen: nothing is forwarded in either direction.
    flowing: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            upstream: upstream.to_owned(),
            open: CancellationToken::new(),
            flowing: Arc::new(watch::Sender::new(true)),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection and refuses new ones, as a dead server would.
    pub fn cut(&mut self) {
        self.open.cancel();
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        self.open = CancellationToken::new();
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    /// Holds every byte in either direction, connections left open, as a
    /// server that stopped answering would; [`Proxy::thaw`] lets them pass.
    pub fn freeze(&self) {
        self.flowing.send_replace(false);
    }

    pub fn thaw(&self) {
        self.flowing.send_replace(true);
    }

    fn serve(&self, listener: TcpListener) {
        let (open, flowing, upstream) = (
            self.open.clone(),
            self.flowing.clone(),
            self.upstream.clone(),
        );
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = open.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [(client_read, server_write), (server_read, client_write)] {
                    let (open, flowing) = (open.clone(), flowing.subscribe());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = open.cancelled() => {}
                            _ = pump(from, to, flowing) => {}
                        }
                    });
                }
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.open.cancel();
    }
}

/// Copies `from` to `to` while `flowing` says so.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flowing: watch::Receiver<bool>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if flowing.wait_for(|flowing| *flowing).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}
