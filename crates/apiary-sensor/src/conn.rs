//! A TCP connection as services see it: reads and writes that record RX/TX
//! events and enforce the per-connection limits (bytes read, idle time, a
//! client that will not read what we send). Idle time is watched through the
//! connection's [`Slot`] (see [`crate::deadline`]), which also carries the
//! overall duration limit enforced around the whole handler, in `server`.
//!
//! The stream is boxed so that a service can switch it to TLS mid-way
//! ([`Conn::start_tls`], for HTTPS) and keep speaking through the same
//! recording reads and writes, which then see the plaintext. Services built on
//! a library that wants the socket itself (SSH on russh) use [`Conn::relay`]:
//! bytes are pumped between the socket and the library through an in-memory
//! pipe, recorded and limited on the way.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::deadline::Slot;
use crate::facts::Fact;
use crate::record::Session;

/// Size of one read: also the largest RX event a read produces.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// Where [`Conn::fill`] reads land before being appended to `pending`.
    /// One per thread rather than one per connection: a read that has to
    /// wait holds no buffer (10,000 idle connections would otherwise hold
    /// 40 MB), and no connection allocates 4 KiB (for glibc a "large"
    /// chunk, whose allocation and release took the slow paths).
    static READ_SCRATCH: RefCell<[u8; READ_CHUNK]> = const { RefCell::new([0; READ_CHUNK]) };
}

/// Runs `io` (a read or write) under the connection's idle limit: if it has
/// to wait, the slot learns when the wait started, and the sweep ends the
/// connection if it lasts too long. A read or write that completes at once
/// (most of them, at a busy sensor) costs nothing here.
async fn idle_bounded<T>(slot: &Slot, io: impl Future<Output = T>) -> T {
    let mut io = pin!(io);
    let mut waiting = false;
    let out = std::future::poll_fn(|cx| {
        let p = io.as_mut().poll(cx);
        if p.is_pending() && !waiting {
            waiting = true;
            slot.start_waiting();
        }
        p
    })
    .await;
    if waiting {
        slot.done_waiting();
    }
    out
}

/// Why a connection was closed by the sensor rather than by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Idle,
    Bytes,
    Line,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Idle => "idle_timeout",
            Limit::Bytes => "max_bytes",
            Limit::Line => "max_line",
        }
    }
}

/// What a connection reads and writes: a TCP socket, or TLS over one.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub struct Conn {
    stream: Box<dyn Stream>,
    pub session: Session,
    max_bytes: usize,
    read_total: usize,
    /// Received but not yet consumed by the service.
    pending: Vec<u8>,
    /// The connection's limits as the listener's sweep sees them.
    slot: Arc<Slot>,
    eof: bool,
    /// Still plain TCP (no TLS started).
    plain: bool,
    /// Set when a limit ended the connection, for the closing INFO event.
    pub limit: Option<Limit>,
}

fn limit_err(l: Limit) -> io::Error {
    io::Error::other(l.as_str())
}

impl Conn {
    /// A connection whose idle limit is its `slot`'s.
    pub fn new(stream: impl Stream + 'static, session: Session, max_bytes: usize, slot: Arc<Slot>) -> Self {
        Conn {
            stream: Box::new(stream),
            session,
            max_bytes,
            read_total: 0,
            pending: Vec::new(),
            slot,
            eof: false,
            plain: true,
            limit: None,
        }
    }

    fn hit(&mut self, l: Limit) -> io::Error {
        self.limit = Some(l);
        limit_err(l)
    }

    /// Reads once from the socket into `pending`; `Ok(false)` at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.read_total >= self.max_bytes {
            return Err(self.hit(Limit::Bytes));
        }
        let want = READ_CHUNK.min(self.max_bytes - self.read_total);
        // Each poll reads into the thread's scratch buffer and appends what
        // came to `pending` before returning: a read that is not ready
        // consumed nothing (`poll_read`'s contract), so a later poll, maybe
        // on another thread, may use another buffer.
        let start = self.pending.len();
        let (stream, pending) = (&mut self.stream, &mut self.pending);
        let read = std::future::poll_fn(|cx| {
            READ_SCRATCH.with_borrow_mut(|buf| {
                let mut rb = ReadBuf::new(&mut buf[..want]);
                match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        pending.extend_from_slice(rb.filled());
                        Poll::Ready(Ok(rb.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        });
        match idle_bounded(&self.slot, read).await? {
            0 => {
                self.eof = true;
                Ok(false)
            }
            n => {
                self.read_total += n;
                self.session.rx(&self.pending[start..]).await;
                Ok(true)
            }
        }
    }

    /// Whatever has arrived (at least one byte), or `None` at EOF.
    pub async fn read_some(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.pending.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    /// Whether a whole line is already buffered: line protocols batch their
    /// answers to pipelined commands into one write, as real servers do.
    pub fn has_line(&self) -> bool {
        self.pending.contains(&b'\n')
    }

    /// One line without its `\n` (and `\r`), at most `max` bytes; `None` at
    /// EOF. A longer line ends the connection: no protocol we speak has one.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.pending[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            scanned = self.pending.len();
            if scanned > max {
                return Err(self.hit(Limit::Line));
            }
            if !self.fill().await? {
                // A last line without newline still counts.
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.pending)));
            }
        }
    }

    /// Exactly `n` bytes, or `None` if the client closed first.
    pub async fn read_exact(&mut self, n: usize) -> io::Result<Option<Vec<u8>>> {
        while self.pending.len() < n {
            if !self.fill().await? {
                return Ok(None);
            }
        }
        Ok(Some(self.pending.drain(..n).collect()))
    }

    /// Sends and records; a client that stops reading counts as idle.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        idle_bounded(&self.slot, self.stream.write_all(data)).await?;
        self.session.tx(data).await;
        Ok(())
    }

    pub async fn info(&self, fact: Fact) {
        self.session.info(&fact).await;
    }

    /// Runs a TLS server handshake (bounded by the idle timeout) and from then
    /// on reads and writes the plaintext. Handshake bytes are not recorded as
    /// RX/TX; the returned SNI (if any) is what is worth keeping of them.
    pub async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> io::Result<Option<String>> {
        let plain: Box<dyn Stream> = Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
        let raw = std::mem::replace(&mut self.stream, plain);
        let tls = match tokio::time::timeout(self.slot.idle(), acceptor.accept(raw)).await {
            Ok(r) => r?,
            Err(_) => return Err(self.hit(Limit::Idle)),
        };
        let sni = tls.get_ref().1.server_name().map(str::to_owned);
        self.stream = Box::new(tls);
        self.plain = false;
        Ok(sni)
    }

    /// Pumps bytes both ways between the client and `inner` (one end of an
    /// in-memory pipe whose other end a protocol library serves) until either
    /// side closes, recording RX/TX and enforcing the byte and idle limits.
    /// `inspect` sees every received chunk and may turn it into facts (e.g.
    /// the SSH client's version line, which precedes the encryption).
    pub async fn relay<S>(&mut self, inner: S, mut inspect: impl FnMut(&[u8]) -> Option<Fact> + Send) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send,
    {
        let (idle, max_bytes) = (self.slot.idle(), self.max_bytes);
        let mut read_total = self.read_total;
        let limit = {
            let (mut in_r, mut in_w) = tokio::io::split(inner);
            let (mut sock_r, mut sock_w) = tokio::io::split(&mut self.stream);
            let session = &self.session;
            // Whatever a service read before handing over goes first.
            let pending = std::mem::take(&mut self.pending);
            let inbound = async {
                if !pending.is_empty() && in_w.write_all(&pending).await.is_err() {
                    return None;
                }
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    if read_total >= max_bytes {
                        return Some(Limit::Bytes);
                    }
                    let want = READ_CHUNK.min(max_bytes - read_total);
                    let n = match tokio::time::timeout(idle, sock_r.read(&mut buf[..want])).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return None,
                        Ok(Ok(n)) => n,
                        Err(_) => return Some(Limit::Idle),
                    };
                    read_total += n;
                    session.rx(&buf[..n]).await;
                    if let Some(f) = inspect(&buf[..n]) {
                        session.info(&f).await;
                    }
                    if in_w.write_all(&buf[..n]).await.is_err() {
                        return None;
                    }
                }
            };
            let outbound = async {
                let mut buf = vec![0u8; 4 * READ_CHUNK];
                loop {
                    let n = match in_r.read(&mut buf).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => n,
                    };
                    match tokio::time::timeout(idle, sock_w.write_all(&buf[..n])).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return None,
                        Err(_) => return Some(Limit::Idle),
                    }
                    session.tx(&buf[..n]).await;
                }
            };
            tokio::select! {
                l = inbound => l,
                l = outbound => l,
            }
        };
        self.read_total = read_total;
        match limit {
            Some(l) => Err(self.hit(l)),
            None => Ok(()),
        }
    }

    /// Closes our side after sending what was written.
    ///
    /// A plain TCP connection whose client has already closed its side (we
    /// read its EOF) is left to the `close` that dropping the socket does:
    /// with nothing unread, that sends the same FIN after the same data, and
    /// the separate `shutdown` call would only cost a system call per
    /// connection. TLS still shuts down (it sends `close_notify` first), and
    /// so does any connection the client may still be sending on.
    pub async fn shutdown(&mut self) {
        if self.plain && self.eof {
            return;
        }
        // Boxed: the timeout's timer is large and this path is the rare one;
        // inline, it would enlarge every connection's task.
        let _ = Box::pin(tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown())).await;
    }
}
