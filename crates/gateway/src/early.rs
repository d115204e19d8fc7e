//! Connections to instances that let an early answer through. An instance
//! may answer before it has read the whole request body (413 for a body over
//! its own limit, 415, 401…) and close the connection, so that writing the
//! rest of the body fails with a broken pipe or a reset. hyper's client
//! stops at the first write error, before reading the answer that is already
//! waiting in the socket, and the client would get a 502 for the instance's
//! 413. Here the rest of the body is dropped instead and hyper goes on to
//! read the answer, as nginx does; when there is none, the read fails and so
//! does the request, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `HttpConnector`, with each connection wrapped in [`Lenient`].
#[derive(Clone)]
pub struct Connector(pub HttpConnector);

impl tower_service::Service<Uri> for Connector {
    type Response = Lenient;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Lenient, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            Ok(Lenient {
                io: connecting.await?,
                peer_gone: false,
            })
        })
    }
}

/// A connection whose writes, once the peer stopped taking them, are
/// dropped rather than failed, leaving the reads to tell what happened.
pub struct Lenient {
    io: TokioIo<TcpStream>,
    peer_gone: bool,
}

fn peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Lenient {
    /// `result`, or `instead` once the peer is found gone.
    fn forgive<T>(&mut self, result: io::Result<T>, instead: T) -> io::Result<T> {
        match result {
            Err(error) if peer_gone(&error) => {
                tracing::debug!(%error, "the instance stopped reading the request; its answer is read");
                self.peer_gone = true;
                Ok(instead)
            }
            other => other,
        }
    }
}

impl Read for Lenient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Lenient {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.peer_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, buf));
        Poll::Ready(self.forgive(result, buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.peer_gone {
            return Poll::Ready(Ok(len));
        }
        let result = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs));
        Poll::Ready(self.forgive(result, len))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.io).poll_flush(cx));
        Poll::Ready(self.forgive(result, ()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for Lenient {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
