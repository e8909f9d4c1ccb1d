//! Collecting a runtime's stdout and stderr.
//!
//! A reader task per runtime process appends output to the environment's buffer. When an
//! invocation ends, the invoke path asks the reader to drain the pipe first: everything the
//! function wrote before it posted its result is then in the buffer, so its log is complete.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe;
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
    /// Starts reading `fd` (the read end of the runtime's output pipe) into `log`.
    pub fn start(fd: OwnedFd, log: SharedLog, function: String) -> io::Result<Self> {
        let receiver = pipe::Receiver::from_owned_fd(fd)?;
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

/// Reads what the reactor reported readable. Returns false at end of output.
fn drain_ready(
    receiver: &pipe::Receiver,
    chunk: &mut [u8],
    log: &SharedLog,
    function: &str,
) -> bool {
    loop {
        match receiver.try_read(chunk) {
            Ok(0) => return false,
            Ok(n) => keep(log, &chunk[..n], function),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Reads everything the pipe holds right now, asking the kernel directly: the reactor may not
/// have reported bytes written a moment ago, and a flush must not miss them.
fn drain_now(receiver: &pipe::Receiver, chunk: &mut [u8], log: &SharedLog, function: &str) -> bool {
    loop {
        match rustix::io::read(receiver.as_fd(), &mut *chunk) {
            Ok(0) => return false,
            Ok(n) => keep(log, &chunk[..n], function),
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

async fn read_loop(
    receiver: pipe::Receiver,
    log: SharedLog,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    function: String,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut open = true;
    loop {
        tokio::select! {
            ready = receiver.readable(), if open => {
                open = ready.is_ok() && drain_ready(&receiver, &mut chunk, &log, &function);
            }
            request = requests.recv() => {
                let Some(ack) = request else { return };
                if open {
                    open = drain_now(&receiver, &mut chunk, &log, &function);
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
