//! Network namespaces with the environment's Runtime API listener already inside.
//!
//! A new network namespace costs about a millisecond and much more at the tail, so a factory
//! thread keeps a few ready: each has its loopback up and a listener bound to 127.0.0.1:9001,
//! which Gust accepts on from the host while nothing in the host's namespace can connect to it
//! (and nothing in the sandbox can reach the host's loopback).

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread;

use crate::RUNTIME_API_ADDRESS;

/// A network namespace and the listener bound inside it.
pub struct NetworkSlot {
    pub listener: TcpListener,
    /// Keeps the namespace alive and lets the runtime join it.
    pub netns: OwnedFd,
}

type Reply = mpsc::Sender<io::Result<NetworkSlot>>;

/// Hands out ready network namespaces and makes new ones in the background.
pub struct NetworkFactory {
    requests: mpsc::Sender<Reply>,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the descriptor is owned and closed below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS writes `ifr_flags` of the ifreq we own.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: SIOCGIFFLAGS has just set the union's `ifru_flags` member.
    unsafe { request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `ifr_name` and `ifr_flags` of the ifreq we own.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) })?;
    Ok(())
}

fn current_netns() -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
}

/// Makes a namespace in the calling thread, then returns the thread to `home`.
fn create(home: &OwnedFd) -> io::Result<NetworkSlot> {
    // SAFETY: unshare(2) only changes the calling thread's network namespace.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    let made = (|| {
        loopback_up()?;
        let listener = TcpListener::bind(RUNTIME_API_ADDRESS)?;
        listener.set_nonblocking(true)?;
        Ok(NetworkSlot {
            listener,
            netns: current_netns()?,
        })
    })();
    // SAFETY: `home` is a namespace descriptor this thread opened before unsharing.
    check(unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) })?;
    made
}

/// Brings up loopback in the network namespace of process `pid` and binds a listener at each
/// of `addresses` there. Returns the namespace and the listeners.
pub fn listeners_in(pid: u32, addresses: &[&str]) -> io::Result<(OwnedFd, Vec<TcpListener>)> {
    let netns = OwnedFd::from(File::open(format!("/proc/{pid}/ns/net"))?);
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) moves only this thread, which ends right after.
                check(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) })?;
                loopback_up()?;
                let listeners = addresses
                    .iter()
                    .map(|address| {
                        let listener = TcpListener::bind(address)?;
                        listener.set_nonblocking(true)?;
                        Ok(listener)
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(listeners)
            })
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
    })
    .map(|listeners| (netns, listeners))
}

impl NetworkFactory {
    /// Starts the factory thread, which keeps `ready` namespaces waiting.
    pub fn start(ready: usize) -> io::Result<Self> {
        let (requests, incoming) = mpsc::channel::<Reply>();
        let (started, outcome) = mpsc::channel();
        thread::Builder::new()
            .name("gust-netns".into())
            .spawn(move || {
                let home = match current_netns() {
                    Ok(fd) => fd,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                // One trial run proves the host lets Gust make namespaces.
                match create(&home) {
                    Ok(slot) => {
                        let _ = started.send(Ok(()));
                        serve(home, incoming, ready, vec![slot]);
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            })?;
        outcome
            .recv()
            .map_err(|_| io::Error::other("the namespace thread did not start"))??;
        Ok(Self { requests })
    }

    /// A ready namespace (made now if none is waiting).
    pub fn take(&self) -> io::Result<NetworkSlot> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(reply)
            .map_err(|_| io::Error::other("the namespace thread has stopped"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the namespace thread has stopped"))?
    }
}

fn serve(home: OwnedFd, incoming: mpsc::Receiver<Reply>, ready: usize, mut pool: Vec<NetworkSlot>) {
    loop {
        let waiting = match incoming.try_recv() {
            Ok(request) => Some(request),
            Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => None,
        };
        let request = match waiting {
            Some(request) => request,
            None => {
                // Idle: top the pool up before sleeping.
                if pool.len() < ready {
                    match create(&home) {
                        Ok(slot) => {
                            pool.push(slot);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not prepare a network namespace")
                        }
                    }
                }
                match incoming.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                }
            }
        };
        let slot = match pool.pop() {
            Some(slot) => Ok(slot),
            None => create(&home),
        };
        let _ = request.send(slot);
    }
}
