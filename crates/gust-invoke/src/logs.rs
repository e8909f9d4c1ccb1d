//! Collecting a runtime's stdout and stderr.
//!
//! A reader task per runtime process appends output to the environment's buffer. When an
//! invocation ends, the invoke path asks the reader to drain the pipe first: everything the
//! function wrote before it posted its result is then in the buffer, so its log is complete.
//! (An environment restored from a SnapStart snapshot writes to a loopback socket instead of
//! a pipe; the reader treats both alike.)

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Output kept per environment between two invocations' collection points.
const BUFFER_CAP: usize = 256 * 1024;

/// An environment's captured output.
#[derive(Debug, Default)]
pub struct LogBuffer {
    data: Vec<u8>,
    /// Bytes dropped from the front because the buffer was full.
    dropped: u64,
}

impl LogBuffer {
    fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > BUFFER_CAP {
            let cut = self.data.len() - BUFFER_CAP / 2;
            self.data.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// Takes everything collected so far.
    pub fn take(&mut self) -> Vec<u8> {
        self.dropped = 0;
        std::mem::take(&mut self.data)
    }
}

pub type SharedLog = Arc<Mutex<LogBuffer>>;

pub fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, LogBuffer> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Handle on one process's reader task.
pub struct OutputReader {
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl OutputReader {
    /// Starts reading `fd` (the read end of the runtime's output pipe, or a connected
    /// socket) into `log`.
    pub fn start(fd: OwnedFd, log: SharedLog, function: String) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: the AsyncFd owns `fd`, which stays open and the same until it is dropped.
        let receiver =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)?;
        let (flush, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(read_loop(receiver, log, requests, function));
        Ok(Self { flush, task })
    }

    /// Waits until everything written to the pipe so far is in the buffer.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.flush.send(ack).is_ok() {
            let _ = done.await;
        }
    }
}

impl Drop for OutputReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn keep(log: &SharedLog, bytes: &[u8], function: &str) {
    tracing::trace!(target: "gust::function", function, "{}", String::from_utf8_lossy(bytes).trim_end());
    lock(log).append(bytes);
}

/// Reads everything the descriptor holds right now, asking the kernel directly (the reactor
/// may not have reported bytes written a moment ago, and a flush must not miss them). Returns
/// whether more may come, and whether it read to the point of blocking.
fn drain(fd: &OwnedFd, chunk: &mut [u8], log: &SharedLog, function: &str) -> (bool, bool) {
    loop {
        match rustix::io::read(fd, &mut *chunk) {
            Ok(0) => return (false, false),
            Ok(n) => keep(log, &chunk[..n], function),
            Err(rustix::io::Errno::AGAIN) => return (true, true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return (false, false),
        }
    }
}

async fn read_loop(
    receiver: AsyncFd<OwnedFd>,
    log: SharedLog,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    function: String,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut open = true;
    loop {
        tokio::select! {
            ready = receiver.readable(), if open => {
                let Ok(mut guard) = ready else {
                    open = false;
                    continue;
                };
                let (more, blocked) = drain(receiver.get_ref(), &mut chunk, &log, &function);
                open = more;
                if blocked {
                    guard.clear_ready();
                }
            }
            request = requests.recv() => {
                let Some(ack) = request else { return };
                if open {
                    open = drain(receiver.get_ref(), &mut chunk, &log, &function).0;
                }
                let _ = ack.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn flush_sees_everything_written_before_it() {
        let (reader, mut writer) = io::pipe().unwrap();
        let log = SharedLog::default();
        let capture = OutputReader::start(OwnedFd::from(reader), log.clone(), "f".into()).unwrap();
        for i in 0..100 {
            writeln!(writer, "line {i}").unwrap();
        }
        capture.flush().await;
        let text = String::from_utf8(lock(&log).take()).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert!(text.ends_with("line 99\n"));
        drop(writer);
        capture.flush().await;
        assert!(lock(&log).take().is_empty());
    }

    #[test]
    fn the_buffer_keeps_the_newest_output() {
        let mut buffer = LogBuffer::default();
        buffer.append(&vec![b'a'; BUFFER_CAP]);
        buffer.append(b"tail");
        let data = buffer.take();
        assert!(data.len() <= BUFFER_CAP);
        assert!(data.ends_with(b"atail"));
    }
}
