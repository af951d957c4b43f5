//! Accepted connections: TCP_NODELAY, and a bound on how long a new
//! connection may stay silent. [`incoming`] (plaintext) or [`tls_incoming`]
//! is what the gRPC server serves from.
//!
//! A plaintext connection that has not sent HTTP/2's 24-byte client
//! preface within `--handshake-timeout` of being accepted is closed (its
//! reads fail, so the server drops it): a peer that connects and says
//! nothing, or half the preface, holds no socket for long. A connection
//! that speaks HTTP/1.1 instead (gRPC-Web, Connect) must send its first
//! request's head, up to its blank line, within the same bound. With TLS, the
//! bytes are encrypted: there the TLS handshake itself has the same bound.
//! Each handshake uses the TLS configuration in force when the connection
//! was accepted ([`SharedTls`]), so a reloaded certificate serves every
//! new connection while open ones keep theirs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::reload::SharedTls;

/// Handshakes under way are not awaited by the accept loop; this many
/// finished ones may wait for the server to take them.
const HANDSHAKEN_BACKLOG: usize = 64;

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connections `listener` accepts, with TCP_NODELAY (small answers go
/// out at once rather than waiting for the peer's delayed ACK). Each must
/// send the HTTP/2 preface, or an HTTP/1.1 request head, within
/// `handshake_timeout`.
pub fn incoming(listener: TcpListener, handshake_timeout: Duration) -> impl Stream<Item = io::Result<Handshaking>> {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| accepted.map(|stream| Handshaking::new(stream, Some(handshake_timeout))))
}

/// The TLS connections `listener` accepts, with TCP_NODELAY; a connection
/// that has not finished the TLS handshake within `handshake_timeout` is
/// closed. Handshakes run side by side, each with the configuration `tls`
/// holds when its connection is accepted. Dropping the stream stops
/// accepting.
pub fn tls_incoming(listener: TcpListener, handshake_timeout: Duration, tls: SharedTls) -> TlsIncoming {
    let (ready, connections) = mpsc::channel(HANDSHAKEN_BACKLOG);
    let accepting = tokio::spawn(async move {
        let mut accepted = TcpIncoming::from(listener).with_nodelay(Some(true));
        while let Some(stream) = accepted.next().await {
            let stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    if ready.send(Err(err)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(arc_swap::Guard::into_inner(tls.current()));
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(connection)) => {
                        let _ = ready.send(Ok(connection)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake not finished within the handshake timeout"),
                }
            });
        }
    });
    TlsIncoming { connections, accepting }
}

/// What [`tls_incoming`] gives: connections that finished the handshake.
#[derive(Debug)]
pub struct TlsIncoming {
    connections: mpsc::Receiver<io::Result<TlsStream<TcpStream>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().connections.poll_recv(cx)
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        // The listener goes with the accept loop, so the port is free again.
        self.accepting.abort();
    }
}

/// What ends an HTTP/1.1 request's head: a blank line.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// A TCP connection whose reads fail if the HTTP/2 preface, or the head
/// of a first HTTP/1.1 request, has not arrived by its deadline.
#[derive(Debug)]
pub struct Handshaking {
    stream: TcpStream,
    /// Until the handshake is in: the deadline, and how far it came.
    waiting: Option<(Pin<Box<Sleep>>, Progress)>,
}

/// How much of its handshake a connection has sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// This many bytes of the HTTP/2 preface.
    Preface(usize),
    /// Not HTTP/2: within an HTTP/1.1 request head, this many bytes of its
    /// closing blank line seen in a row.
    Head(usize),
}

impl Progress {
    /// Follows `arrived`; `None` once the handshake is complete.
    fn follow(self, arrived: &[u8]) -> Option<Self> {
        match self {
            Progress::Preface(read) => {
                let expected = &PREFACE[read..];
                let compared = arrived.len().min(expected.len());
                if arrived[..compared] != expected[..compared] {
                    // Not HTTP/2: hyper reads it as HTTP/1.1 (or refuses it).
                    Progress::Head(0).follow(arrived)
                } else if compared == expected.len() {
                    None
                } else {
                    Some(Progress::Preface(read + compared))
                }
            }
            Progress::Head(mut matched) => {
                for &byte in arrived {
                    matched = if byte == HEAD_END[matched] { matched + 1 } else { usize::from(byte == HEAD_END[0]) };
                    if matched == HEAD_END.len() {
                        return None;
                    }
                }
                Some(Progress::Head(matched))
            }
        }
    }
}

impl Handshaking {
    fn new(stream: TcpStream, timeout: Option<Duration>) -> Self {
        Self { stream, waiting: timeout.map(|timeout| (Box::pin(tokio::time::sleep(timeout)), Progress::Preface(0))) }
    }
}

impl AsyncRead for Handshaking {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some((deadline, progress)) = this.waiting.as_mut() else {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                match progress.follow(&buf.filled()[before..]) {
                    Some(further) => *progress = further,
                    None => this.waiting = None,
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "neither the HTTP/2 preface nor an HTTP/1.1 request head arrived within the handshake timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Handshaking {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for Handshaking {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A connected pair: the server's end checked, the client's raw.
    async fn pair(timeout: Duration) -> (Handshaking, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let client = TcpStream::connect(listener.local_addr().expect("bound")).await.expect("connects");
        let (server, _) = listener.accept().await.expect("accepts");
        (Handshaking::new(server, Some(timeout)), client)
    }

    // Real time: a paused clock would run out while the socket is read.
    #[tokio::test]
    async fn a_preface_sent_in_pieces_ends_the_wait() {
        let (mut server, mut client) = pair(Duration::from_secs(10)).await;
        let mut received = Vec::new();
        for piece in PREFACE.chunks(5) {
            client.write_all(piece).await.expect("writes");
            let mut buf = [0; 64];
            let n = server.read(&mut buf).await.expect("reads");
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(received, PREFACE);
        assert!(server.waiting.is_none());
    }

    #[test]
    fn an_http1_request_head_ends_the_handshake_at_its_blank_line_wherever_it_is_split() {
        let head = b"POST /sessiond.v1.SessionService/GetSession HTTP/1.1\r\nHost: x\r\n\r\n{}";
        let end = head.len() - 2;
        for split in 1..head.len() {
            let (a, b) = head.split_at(split);
            let after_a = Progress::Preface(0).follow(a);
            if split >= end {
                assert_eq!(after_a, None, "split at {split}");
                continue;
            }
            let progress = after_a.expect("the head is not complete yet");
            assert_eq!(progress.follow(b), None, "split at {split}");
        }
        assert_eq!(Progress::Preface(0).follow(b"GET / HTTP/1.1\r\nHost: x\r\n"), Some(Progress::Head(2)));
    }

    #[tokio::test]
    async fn half_an_http1_head_fails_the_read_at_the_deadline() {
        let (mut server, mut client) = pair(Duration::from_millis(200)).await;
        client.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.expect("writes");
        let mut buf = [0; 64];
        assert!(server.read(&mut buf).await.expect("reads what came") > 0);
        let err = server.read(&mut buf).await.expect_err("the rest never comes");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn half_a_preface_fails_the_read_at_the_deadline() {
        let (mut server, mut client) = pair(Duration::from_millis(200)).await;
        client.write_all(&PREFACE[..12]).await.expect("writes");
        let mut buf = [0; 64];
        assert_eq!(server.read(&mut buf).await.expect("reads what came"), 12);
        let err = server.read(&mut buf).await.expect_err("the rest never comes");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
