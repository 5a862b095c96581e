//! TCP exchanges bounded by one deadline as a whole, for the DNS fallback to TCP and the peer
//! fetches of `/cluster`.
//!
//! A plain socket timeout bounds each read on its own, so a server trickling one byte at a time
//! would restart it with every byte; here every read and write gets only the time left.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The time left before `deadline`, or a `TimedOut` error when none is (a zero socket timeout
/// would mean "block forever" to the OS, and std refuses it).
pub fn remaining(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
}

/// Whether `e` is a timeout: a socket's own shows as `WouldBlock` (EAGAIN) on Linux, the
/// deadline's as `TimedOut`.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// A TCP connection whose connect, reads and writes all end by one deadline.
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    pub fn connect(addr: SocketAddr, deadline: Instant) -> io::Result<DeadlineStream> {
        let stream = TcpStream::connect_timeout(&addr, remaining(deadline)?)?;
        Ok(DeadlineStream { stream, deadline })
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.stream
                .set_read_timeout(Some(remaining(self.deadline)?))?;
            match self.stream.read(buf) {
                // A socket with a receive timeout is not restarted after a signal handler
                // (signal(7)), even with SA_RESTART: a SIGTERM must not fail the exchange.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                read => return read,
            }
        }
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream
            .set_write_timeout(Some(remaining(self.deadline)?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        let err = remaining(Instant::now()).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(remaining(Instant::now() + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_trickling_peer_is_cut_off_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut stream = DeadlineStream::connect(addr, deadline).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        // One byte every 50 ms: each read alone would be quick, the whole never ends.
        let trickle = std::thread::spawn(move || {
            for _ in 0..40 {
                if peer.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut buf = [0u8; 1024];
        let err = stream.read_exact(&mut buf).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(Instant::now() >= deadline);
        drop(stream);
        trickle.join().unwrap();
    }
}
