//! Outbound network for functions that ask for it (`egress`): a veth pair between the host and
//! the environment's network namespace, a default route through it, and source NAT on the
//! host. Everything else stays closed: nothing from the sandbox range may reach the host
//! itself (its services on any address) or another sandbox.
//!
//! Built on netlink directly, with no `ip` or `nft` programs and no C libraries: rtnetlink
//! creates and deletes the veth pairs, nfnetlink installs one nftables table per server, and
//! the classic interface ioctls set addresses and routes.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The sandboxes' address range, 10.N.0.0/16 with N in 192–239 chosen by process id so that
/// two Gust servers on one host (as in the tests) use different ranges: one /30 per
/// environment (host side .1, sandbox side .2).
fn range() -> [u8; 2] {
    [10, 192 + (std::process::id() % 48) as u8]
}
const SLOTS: u32 = 1 << 14;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink message under construction.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.bytes(data)
    }

    fn string(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    /// nftables' integers are big-endian.
    fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_be_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// A netlink socket of one protocol, in the namespace it was opened in.
struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open(protocol: i32) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 1 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends messages and waits for every acknowledgement; the first error wins.
    fn transact(&mut self, payload: &[u8], acks: usize) -> io::Result<()> {
        // SAFETY: send(2) of a buffer we own.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut seen = 0;
        let mut buf = vec![0u8; 16384];
        while seen < acks {
            // SAFETY: recv(2) into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0usize;
            let n = n as usize;
            while at + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
                if len < 16 || at + len > n {
                    break;
                }
                if kind == libc::NLMSG_ERROR as u16 && len >= 20 {
                    let code =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    seen += 1;
                }
                at += (len + 3) & !3;
            }
        }
        Ok(())
    }
}

/// An nftables message (family IPv4) with the standard header.
fn nft(kind: u16, flags: u16, seq: u32) -> Message {
    let mut m = Message::new((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq);
    m.bytes(&[NFPROTO_IPV4, 0, 0, 0]);
    m
}

/// A batch delimiter: nftables changes go in one transaction.
fn batch(kind: u16, seq: u32) -> Vec<u8> {
    let mut m = Message::new(kind, libc::NLM_F_REQUEST as u16, seq);
    // nfgenmsg: family unspecified, version 0, the subsystem (big-endian).
    m.buf.extend_from_slice(&[0, 0]);
    m.buf.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    m.finish()
}

/// Expression builders for rules.
fn expression(m: &mut Message, name: &str, data: impl FnOnce(&mut Message)) {
    m.begin(1); // NFTA_LIST_ELEM
    m.string(1, name); // NFTA_EXPR_NAME
    m.begin(2); // NFTA_EXPR_DATA
    data(m);
    m.end();
    m.end();
}

/// Loads the IPv4 source (offset 12) or destination (16) address into register 1, masked to
/// the sandbox /16, and compares it with the range.
fn match_range(m: &mut Message, offset: u32, equal: bool) {
    let range = range();
    expression(m, "payload", |m| {
        m.be32(1, 1).be32(2, 1).be32(3, offset).be32(4, 4);
    });
    expression(m, "bitwise", |m| {
        m.be32(1, 1).be32(2, 1).be32(3, 4);
        m.begin(4).attr(1, &[255, 255, 0, 0]).end();
        m.begin(5).attr(1, &[0, 0, 0, 0]).end();
    });
    expression(m, "cmp", |m| {
        m.be32(1, 1).be32(2, if equal { 0 } else { 1 });
        m.begin(3).attr(1, &[range[0], range[1], 0, 0]).end();
    });
}

fn drop_verdict(m: &mut Message) {
    expression(m, "immediate", |m| {
        m.be32(1, 0); // the verdict register
        m.begin(2).begin(2).be32(1, 0).end().end(); // NF_DROP
    });
}

/// Addresses of one environment's link.
fn addresses(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let range = range();
    let base = u32::from(Ipv4Addr::new(range[0], range[1], 0, 0)) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// An IPv4 socket address with port 0, as the interface and route ioctls take it.
fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(ip).to_be();
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes).
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// A datagram socket for interface ioctls, in the calling thread's network namespace.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Configures an interface's address, netmask and state with the classic ioctls, in the
/// calling thread's network namespace.
fn configure_interface(name: &str, address: Ipv4Addr) -> io::Result<()> {
    let socket = ioctl_socket()?;
    let request = |set: &dyn Fn(&mut libc::ifreq), op: libc::c_ulong| -> io::Result<()> {
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        set(&mut req);
        // SAFETY: the ioctl reads the ifreq we own.
        if unsafe { libc::ioctl(socket.as_raw_fd(), op, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    request(
        &|r| r.ifr_ifru.ifru_addr = sockaddr(address),
        libc::SIOCSIFADDR,
    )?;
    request(
        &|r| r.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::new(255, 255, 255, 252)),
        libc::SIOCSIFNETMASK,
    )?;
    request(
        &|r| r.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short,
        libc::SIOCSIFFLAGS,
    )
}

/// Adds a default route through `gateway` in the calling thread's network namespace.
fn default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let socket = ioctl_socket()?;
    // SAFETY: rtentry is plain data; all-zero is valid.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads the rtentry we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &mut route) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One environment's outbound link; deleted with [`Egress::detach`].
pub struct Link {
    slot: u32,
    host_name: String,
}

impl Link {
    /// The host's and the sandbox's addresses on this link.
    pub fn addresses(&self) -> (Ipv4Addr, Ipv4Addr) {
        addresses(self.slot)
    }
}

/// Address slots in use in this process (shared by every launcher in it).
static SLOTS_IN_USE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static NEXT_TABLE: AtomicU32 = AtomicU32::new(0);
/// The table belongs to the netlink socket that made it: the kernel removes it when the
/// socket closes, so Gust's rules never outlive it, even after `kill -9`.
const NFT_TABLE_F_OWNER: u32 = 2;

/// The server's egress setup: its nftables table (held by the socket that made it).
pub struct Egress {
    table: String,
    owner: Mutex<Option<Netlink>>,
}

impl Default for Egress {
    fn default() -> Self {
        Self::new()
    }
}

impl Egress {
    pub fn new() -> Self {
        let n = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
        Self {
            table: format!("gust_{}_{n}", std::process::id()),
            owner: Mutex::new(None),
        }
    }

    /// Installs the table on first use: masquerade for traffic leaving the range, and drops
    /// for traffic from the range to the host itself or to another sandbox. Also turns IPv4
    /// forwarding on.
    fn install(&self) -> io::Result<()> {
        let mut owner = self.owner.lock().unwrap_or_else(|p| p.into_inner());
        if owner.is_some() {
            return Ok(());
        }
        let mut nl = Netlink::open(NETLINK_NETFILTER)?;
        let create = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_ACK) as u16;
        let mut payload = batch(NFNL_MSG_BATCH_BEGIN, nl.next_seq());
        let mut acks = 0;
        let mut push = |m: Message, payload: &mut Vec<u8>| {
            payload.extend(m.finish());
            acks += 1;
        };
        let mut table = nft(NFT_MSG_NEWTABLE, create, nl.next_seq());
        table.string(1, &self.table).be32(2, NFT_TABLE_F_OWNER);
        push(table, &mut payload);
        for (name, kind, hook, priority) in [
            ("postrouting", "nat", 4u32, 100u32),
            ("input", "filter", 1, 0),
            ("forward", "filter", 2, 0),
        ] {
            let mut chain = nft(NFT_MSG_NEWCHAIN, create, nl.next_seq());
            chain.string(1, &self.table).string(3, name);
            chain.begin(4).be32(1, hook).be32(2, priority).end();
            chain.be32(5, 1).string(7, kind); // policy accept
            push(chain, &mut payload);
        }
        let append = create | libc::NLM_F_APPEND as u16;
        // postrouting: from the range to outside it → masquerade.
        let mut rule = nft(NFT_MSG_NEWRULE, append, nl.next_seq());
        rule.string(1, &self.table)
            .string(2, "postrouting")
            .begin(4);
        match_range(&mut rule, 12, true);
        match_range(&mut rule, 16, false);
        expression(&mut rule, "masq", |_| {});
        rule.end();
        push(rule, &mut payload);
        // input: from the range to the host → drop.
        let mut rule = nft(NFT_MSG_NEWRULE, append, nl.next_seq());
        rule.string(1, &self.table).string(2, "input").begin(4);
        match_range(&mut rule, 12, true);
        drop_verdict(&mut rule);
        rule.end();
        push(rule, &mut payload);
        // forward: from the range to the range → drop.
        let mut rule = nft(NFT_MSG_NEWRULE, append, nl.next_seq());
        rule.string(1, &self.table).string(2, "forward").begin(4);
        match_range(&mut rule, 12, true);
        match_range(&mut rule, 16, true);
        drop_verdict(&mut rule);
        rule.end();
        push(rule, &mut payload);
        payload.extend(batch(NFNL_MSG_BATCH_END, nl.next_seq()));
        nl.transact(&payload, acks)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        tracing::info!(
            table = %self.table,
            "egress: nftables table installed (masquerade for {}.{}.0.0/16), IPv4 forwarding on",
            range()[0],
            range()[1]
        );
        *owner = Some(nl);
        Ok(())
    }

    /// Connects an environment's network namespace to the outside.
    pub fn attach(&self, netns: &OwnedFd) -> io::Result<Link> {
        self.install()?;
        let slot = {
            let mut slots = SLOTS_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
            let slot = (0..SLOTS)
                .find(|s| !slots.contains(s))
                .ok_or_else(|| io::Error::other("no free egress address"))?;
            slots.insert(slot);
            slot
        };
        let link = Link {
            slot,
            host_name: format!("gx{}x{slot}", std::process::id() % 10_000),
        };
        match self.connect(netns, &link) {
            Ok(()) => Ok(link),
            Err(e) => {
                self.detach(link);
                Err(e)
            }
        }
    }

    fn connect(&self, netns: &OwnedFd, link: &Link) -> io::Result<()> {
        let (host, sandbox) = addresses(link.slot);
        let mut nl = Netlink::open(libc::NETLINK_ROUTE)?;
        let seq = nl.next_seq();
        let flags =
            (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK) as u16;
        let mut m = Message::new(libc::RTM_NEWLINK, flags, seq);
        m.bytes(&[0u8; 16]); // ifinfomsg
        m.string(libc::IFLA_IFNAME, &link.host_name);
        m.begin(libc::IFLA_LINKINFO);
        m.string(libc::IFLA_INFO_KIND, "veth");
        m.begin(libc::IFLA_INFO_DATA);
        m.begin(1); // VETH_INFO_PEER: an ifinfomsg, then the peer's attributes
        m.bytes(&[0u8; 16]);
        m.string(libc::IFLA_IFNAME, "eth0");
        m.attr(
            libc::IFLA_NET_NS_FD,
            &(netns.as_raw_fd() as u32).to_ne_bytes(),
        );
        m.end().end().end();
        nl.transact(&m.finish(), 1)?;
        configure_interface(&link.host_name, host)?;
        let netns = netns.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns(2) moves only this short-lived thread.
                    if unsafe { libc::setns(netns, libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    configure_interface("eth0", sandbox)?;
                    default_route(host)
                })
                .join()
                .map_err(|_| io::Error::other("the egress thread panicked"))?
        })
    }

    /// Deletes an environment's link (both ends) and frees its addresses.
    pub fn detach(&self, link: Link) {
        if let Ok(mut nl) = Netlink::open(libc::NETLINK_ROUTE) {
            let seq = nl.next_seq();
            let mut m = Message::new(
                libc::RTM_DELLINK,
                (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
                seq,
            );
            m.bytes(&[0u8; 16]);
            m.string(libc::IFLA_IFNAME, &link.host_name);
            let _ = nl.transact(&m.finish(), 1);
        }
        SLOTS_IN_USE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&link.slot);
    }
}
