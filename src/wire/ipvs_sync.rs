//! The IPVS connection synchronisation protocol, version 1 (Linux
//! `net/netfilter/ipvs/ip_vs_sync.c`): the 8-byte message header
//! ([`SyncMessage`], [`SyncHeaderRepr`]) and the connection entries that
//! follow it ([`SyncConn`], [`SyncConnRepr`]), IPv4 (36 bytes) and IPv6
//! (72 bytes) plus options, each padded to 4 bytes.
//!
//! Rules:
//! * Byte for byte as IPVS sends it (all fields big-endian), so a capture
//!   reads like kernel LVS's and a kernel backup understands rvs's NAT, DR
//!   and TUN entries.
//! * rvs's own data travels in an *optional* parameter (type bit
//!   [`OPT_F_PARAM`] set), which a kernel IPVS receiver skips:
//!   [`OPT_RVS_LOCAL`] carries the FULLNAT local address and port.
//! * [`SyncMessage::new_checked`] accepts only v1 (`version == 1`,
//!   `reserved == 0`, `spare == 0`) whose `size` equals the datagram
//!   length; [`SyncConn::new_checked`] checks the entry's declared length
//!   (`ver_size`, version bits 0) fits its family's minimum and the buffer.
//!   An unknown option without [`OPT_F_PARAM`] makes the entry unusable
//!   (IPVS drops that entry), a truncated option is malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{read_u16, read_u32, write_u16, write_u32, Error, Result};

mod field {
    use core::ops::Range;
    // Message header (`struct ip_vs_sync_mesg`).
    pub const RESERVED: usize = 0;
    pub const SYNCID: usize = 1;
    pub const SIZE: Range<usize> = 2..4;
    pub const NR_CONNS: usize = 4;
    pub const VERSION: usize = 5;
    pub const SPARE: Range<usize> = 6..8;
    // Entry (`struct ip_vs_sync_v4` / `ip_vs_sync_v6`).
    pub const TYPE: usize = 0;
    pub const PROTOCOL: usize = 1;
    pub const VER_SIZE: Range<usize> = 2..4;
    pub const FLAGS: Range<usize> = 4..8;
    pub const STATE: Range<usize> = 8..10;
    pub const CPORT: Range<usize> = 10..12;
    pub const VPORT: Range<usize> = 12..14;
    pub const DPORT: Range<usize> = 14..16;
    pub const FWMARK: Range<usize> = 16..20;
    pub const TIMEOUT: Range<usize> = 20..24;
    pub const ADDRS: usize = 24;
}

/// Length of the message header.
pub const HEADER_LEN: usize = field::SPARE.end;
/// Length of an IPv4 entry without options.
pub const CONN_V4_LEN: usize = field::ADDRS + 3 * 4;
/// Length of an IPv6 entry without options.
pub const CONN_V6_LEN: usize = field::ADDRS + 3 * 16;
/// `SYNC_PROTO_VER`.
pub const VERSION: u8 = 1;
/// `IP_VS_SYNC_GROUP`: 224.0.0.81.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// `IP_VS_SYNC_PORT`.
pub const DEFAULT_PORT: u16 = 8848;
/// The master's default `sync_maxlen`: MTU 1500 − IPv4 20 − UDP 8.
pub const DEFAULT_MAXLEN: u16 = 1472;

/// Entry type bit 0 (`STYPE_F_INET6`).
pub const STYPE_F_INET6: u8 = 1;
/// Option: sequence data (`IPVS_OPT_SEQ_DATA`), 24 bytes.
pub const OPT_SEQ_DATA: u8 = 1;
/// Option: persistence engine data (`IPVS_OPT_PE_DATA`).
pub const OPT_PE_DATA: u8 = 2;
/// Option: persistence engine name (`IPVS_OPT_PE_NAME`).
pub const OPT_PE_NAME: u8 = 3;
/// Option type bit: an optional parameter a receiver may skip
/// (`IPVS_OPT_F_PARAM`).
pub const OPT_F_PARAM: u8 = 0x40;
/// rvs option (optional, type 72): FULLNAT local address (4 or 16 bytes)
/// then local port (2 bytes).
pub const OPT_RVS_LOCAL: u8 = 72;
/// rvs option (optional, type 73, 2 bytes of zeros) on an entry of
/// protocol 0: a backup asks the masters for a full resynchronisation. A
/// kernel IPVS backup drops the entry (no protocol 0).
pub const OPT_RVS_RESYNC: u8 = 73;
/// rvs option (optional, type 74, 32 bytes) on a last entry of protocol
/// 0: the HMAC-SHA256 of the message up to it (see [`hmac_span`]).
pub const OPT_RVS_HMAC: u8 = 74;
/// Length of the HMAC.
pub const HMAC_LEN: usize = 32;
/// Length of the HMAC trailer entry, padded: fixed part, option header,
/// MAC, 2 bytes of padding.
pub const HMAC_TRAILER_LEN: usize = (CONN_V4_LEN + 2 + HMAC_LEN).div_ceil(4) * 4;
/// Length of a resynchronisation request ([`emit_resync_request`]).
pub const RESYNC_REQUEST_LEN: usize = HEADER_LEN + CONN_V4_LEN + 4;

/// Connection flags (`include/uapi/linux/ip_vs.h`).
pub mod flags {
    /// Forwarding method bits.
    pub const FWD_MASK: u32 = 0x7;
    /// Masquerading (NAT).
    pub const MASQ: u32 = 0;
    /// Local node.
    pub const LOCALNODE: u32 = 1;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 2;
    /// Direct routing.
    pub const DROUTE: u32 = 3;
    /// Bypass.
    pub const BYPASS: u32 = 4;
    /// FULLNAT (DPVS's value; rvs sends its local address in
    /// [`super::OPT_RVS_LOCAL`]).
    pub const FULLNAT: u32 = 5;
    /// Installed from a sync message.
    pub const SYNC: u32 = 0x20;
    /// Hashed (never sent).
    pub const HASHED: u32 = 0x40;
    /// No reply seen (DR / TUN).
    pub const NOOUTPUT: u32 = 0x80;
    /// Inactive.
    pub const INACTIVE: u32 = 0x100;
    /// Persistence template.
    pub const TEMPLATE: u32 = 0x1000;
}

/// A view of a sync message (header, then `nr_conns` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncMessage<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        SyncMessage { buffer }
    }

    /// Wraps the whole UDP payload after [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let m = Self::new_unchecked(buffer);
        m.check()?;
        Ok(m)
    }

    /// The header fits, it is v1 (`version` 1, `reserved` and `spare` 0)
    /// and `size` is the buffer's length (IPVS compares it with the UDP
    /// length).
    pub fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != VERSION || self.reserved() != 0 || self.spare() != 0 {
            return Err(Error::Unsupported("sync message not of protocol version 1"));
        }
        let size = usize::from(self.size());
        if size > b.len() {
            return Err(Error::Truncated);
        }
        if size != b.len() {
            return Err(Error::Malformed(
                "sync message size differs from the datagram",
            ));
        }
        Ok(())
    }

    /// `reserved` (0 in v1; a v0 message has `nr_conns` here).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }
    /// `syncid`.
    pub fn syncid(&self) -> u8 {
        self.buffer.as_ref()[field::SYNCID]
    }
    /// `size`: the whole message.
    pub fn size(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SIZE.start)
    }
    /// `nr_conns`.
    pub fn nr_conns(&self) -> u8 {
        self.buffer.as_ref()[field::NR_CONNS]
    }
    /// `version`.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// `spare`.
    pub fn spare(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SPARE.start)
    }
    /// The whole buffer (a checked message: exactly the datagram).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The entries' bytes (`HEADER_LEN..size`).
    pub fn entries(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.size())]
    }

    /// The `nr_conns` entries in order: each parsed entry, or why it is
    /// unusable. After a structural error (an entry that does not fit)
    /// the iteration ends; more bytes than the entries declare are
    /// reported as one final error.
    pub fn conns(&self) -> SyncConns<'_> {
        SyncConns {
            rest: self.entries(),
            left: self.nr_conns(),
            done: false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SyncMessage<T> {
    /// Sets `syncid`.
    pub fn set_syncid(&mut self, v: u8) {
        self.buffer.as_mut()[field::SYNCID] = v;
    }
    /// Sets `size`.
    pub fn set_size(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SIZE.start, v);
    }
    /// Sets `nr_conns`.
    pub fn set_nr_conns(&mut self, v: u8) {
        self.buffer.as_mut()[field::NR_CONNS] = v;
    }
    /// Writes `reserved` 0, `version` 1 and `spare` 0.
    pub fn set_v1(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED] = 0;
        b[field::VERSION] = VERSION;
        write_u16(b, field::SPARE.start, 0);
    }
}

/// Iterator over a message's entries ([`SyncMessage::conns`]).
pub struct SyncConns<'a> {
    rest: &'a [u8],
    left: u8,
    done: bool,
}

impl Iterator for SyncConns<'_> {
    type Item = Result<SyncConnRepr>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (!self.rest.is_empty())
                .then_some(Err(Error::Malformed("bytes after the last sync entry")));
        }
        self.left -= 1;
        let c = match SyncConn::new_checked(self.rest) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let step = c.padded_len().min(self.rest.len());
        let parsed = SyncConnRepr::parse(&c);
        self.rest = &self.rest[step..];
        Some(parsed)
    }
}

/// A view of one connection entry (and its options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConn<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncConn<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        SyncConn { buffer }
    }

    /// Wraps an entry (the buffer may run on past it) after
    /// [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let c = Self::new_unchecked(buffer);
        c.check()?;
        Ok(c)
    }

    /// The fixed part fits, `ver_size`'s version bits are 0 and its length
    /// is at least the family's fixed part and within the buffer.
    pub fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::VER_SIZE.end {
            return Err(Error::Truncated);
        }
        if self.ver_size() >> 12 != 0 {
            return Err(Error::Unsupported("sync entry version not 0"));
        }
        let len = self.len();
        if len < self.fixed_len() {
            return Err(Error::Malformed(
                "sync entry shorter than its address family",
            ));
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// IPv6 entry (`type` bit 0).
    pub fn is_v6(&self) -> bool {
        self.buffer.as_ref()[field::TYPE] & STYPE_F_INET6 != 0
    }
    fn fixed_len(&self) -> usize {
        if self.is_v6() {
            CONN_V6_LEN
        } else {
            CONN_V4_LEN
        }
    }
    fn alen(&self) -> usize {
        if self.is_v6() {
            16
        } else {
            4
        }
    }
    /// `type`.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// `protocol`.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// `ver_size` as sent.
    pub fn ver_size(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::VER_SIZE.start)
    }
    /// The entry's length with its options, without padding.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        usize::from(self.ver_size() & 0x0fff)
    }
    /// The length with the padding to 4 bytes.
    pub fn padded_len(&self) -> usize {
        self.len().div_ceil(4) * 4
    }
    /// `flags`.
    pub fn flags(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FLAGS.start)
    }
    /// `state`.
    pub fn state(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::STATE.start)
    }
    /// `cport`.
    pub fn cport(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CPORT.start)
    }
    /// `vport`.
    pub fn vport(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::VPORT.start)
    }
    /// `dport`.
    pub fn dport(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DPORT.start)
    }
    /// `fwmark`.
    pub fn fwmark(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FWMARK.start)
    }
    /// `timeout` in seconds.
    pub fn timeout(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::TIMEOUT.start)
    }
    fn addr(&self, i: usize) -> IpAddr {
        let a = self.alen();
        read_addr(&self.buffer.as_ref()[field::ADDRS + i * a..], a)
    }
    /// `caddr`.
    pub fn caddr(&self) -> IpAddr {
        self.addr(0)
    }
    /// `vaddr`.
    pub fn vaddr(&self) -> IpAddr {
        self.addr(1)
    }
    /// `daddr`.
    pub fn daddr(&self) -> IpAddr {
        self.addr(2)
    }
    /// The options' bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[self.fixed_len()..self.len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SyncConn<T> {
    /// Sets `type`.
    pub fn set_kind(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets `protocol`.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets `ver_size` (version 0, length `len`).
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::VER_SIZE.start, len & 0x0fff);
    }
    /// Sets `flags`.
    pub fn set_flags(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::FLAGS.start, v);
    }
    /// Sets `state`.
    pub fn set_state(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::STATE.start, v);
    }
    /// Sets `cport`.
    pub fn set_cport(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CPORT.start, v);
    }
    /// Sets `vport`.
    pub fn set_vport(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::VPORT.start, v);
    }
    /// Sets `dport`.
    pub fn set_dport(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DPORT.start, v);
    }
    /// Sets `fwmark`.
    pub fn set_fwmark(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::FWMARK.start, v);
    }
    /// Sets `timeout` (seconds).
    pub fn set_timeout(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::TIMEOUT.start, v);
    }
}

fn read_addr(b: &[u8], alen: usize) -> IpAddr {
    if alen == 16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

fn write_addr(b: &mut [u8], a: &IpAddr) -> usize {
    match a {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            b[..16].copy_from_slice(&v6.octets());
            16
        }
    }
}

/// A message header as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncHeaderRepr {
    /// `syncid`.
    pub syncid: u8,
    /// `nr_conns`.
    pub nr_conns: u8,
    /// `size`: header plus padded entries.
    pub size: u16,
}

impl SyncHeaderRepr {
    /// Reads the header of a checked message.
    pub fn parse<T: AsRef<[u8]>>(m: &SyncMessage<T>) -> SyncHeaderRepr {
        SyncHeaderRepr {
            syncid: m.syncid(),
            nr_conns: m.nr_conns(),
            size: m.size(),
        }
    }

    /// Writes the header (v1) into `m`'s first [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, m: &mut SyncMessage<T>) {
        m.set_v1();
        m.set_syncid(self.syncid);
        m.set_nr_conns(self.nr_conns);
        m.set_size(self.size);
    }
}

/// Length of a message holding `entries`: the header and each entry
/// padded to 4 bytes.
pub fn message_len(entries: &[SyncConnRepr]) -> usize {
    HEADER_LEN + entries.iter().map(SyncConnRepr::padded_len).sum::<usize>()
}

/// Writes a whole v1 message — header (`syncid`) and `entries` — into the
/// first [`message_len`] bytes of `buf` (which must hold them); returns
/// that length.
pub fn emit_message(buf: &mut [u8], syncid: u8, entries: &[SyncConnRepr]) -> usize {
    let len = message_len(entries);
    let mut at = HEADER_LEN;
    for e in entries {
        let n = e.padded_len();
        e.emit(&mut SyncConn::new_unchecked(&mut buf[at..at + n]));
        at += n;
    }
    SyncHeaderRepr {
        syncid,
        nr_conns: entries.len() as u8,
        size: len as u16,
    }
    .emit(&mut SyncMessage::new_unchecked(&mut buf[..HEADER_LEN]));
    len
}

/// Writes a full-resynchronisation request (rvs): a v1 message with one
/// IPv4 entry of protocol 0 carrying [`OPT_RVS_RESYNC`], into the first
/// [`RESYNC_REQUEST_LEN`] bytes of `buf`; returns that length.
pub fn emit_resync_request(buf: &mut [u8], syncid: u8) -> usize {
    let b = &mut buf[..RESYNC_REQUEST_LEN];
    b.fill(0);
    let mut c = SyncConn::new_unchecked(&mut b[HEADER_LEN..]);
    c.set_len((CONN_V4_LEN + 4) as u16);
    b[HEADER_LEN + CONN_V4_LEN] = OPT_RVS_RESYNC;
    b[HEADER_LEN + CONN_V4_LEN + 1] = 2;
    SyncHeaderRepr {
        syncid,
        nr_conns: 1,
        size: RESYNC_REQUEST_LEN as u16,
    }
    .emit(&mut SyncMessage::new_unchecked(b));
    RESYNC_REQUEST_LEN
}

/// Writes the HMAC trailer entry (MAC zero, to be filled in) into the first
/// [`HMAC_TRAILER_LEN`] bytes of `buf`; returns that length. The caller
/// counts it in the header's `nr_conns` and `size`.
pub fn emit_hmac_trailer(buf: &mut [u8]) -> usize {
    let b = &mut buf[..HMAC_TRAILER_LEN];
    b.fill(0);
    SyncConn::new_unchecked(&mut b[..]).set_len((CONN_V4_LEN + 2 + HMAC_LEN) as u16);
    b[CONN_V4_LEN] = OPT_RVS_HMAC;
    b[CONN_V4_LEN + 1] = HMAC_LEN as u8;
    HMAC_TRAILER_LEN
}

/// Where a message's HMAC is: `(signed, mac)` with `signed` the length of
/// the bytes it covers (everything before the MAC) and `mac` the MAC's
/// range start; `None` when the last entry is not an HMAC trailer.
pub fn hmac_span<T: AsRef<[u8]>>(m: &SyncMessage<T>) -> Option<(usize, usize)> {
    let len = usize::from(m.size());
    let at = len.checked_sub(HMAC_TRAILER_LEN)?;
    if at < HEADER_LEN || m.nr_conns() == 0 {
        return None;
    }
    let t = m.buffer.as_ref().get(at..len)?;
    let ok = t[field::PROTOCOL] == 0
        && usize::from(read_u16(t, field::VER_SIZE.start)) == CONN_V4_LEN + 2 + HMAC_LEN
        && t[CONN_V4_LEN] == OPT_RVS_HMAC
        && usize::from(t[CONN_V4_LEN + 1]) == HMAC_LEN;
    ok.then_some((at + CONN_V4_LEN + 2, at + CONN_V4_LEN + 2))
}

/// Whether a checked message is a full-resynchronisation request.
pub fn is_resync_request<T: AsRef<[u8]>>(m: &SyncMessage<T>) -> bool {
    let e = m.entries();
    matches!(m.nr_conns(), 1 | 2)
        && e.len() >= CONN_V4_LEN + 4
        && e[field::PROTOCOL] == 0
        && e[CONN_V4_LEN] == OPT_RVS_RESYNC
}

/// One synchronised connection (or persistence template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConnRepr {
    /// IP protocol.
    pub protocol: u8,
    /// IPVS connection flags (forwarding method, TEMPLATE, INACTIVE, …).
    pub flags: u32,
    /// IPVS state number (TCP states; 0 for UDP and templates).
    pub state: u16,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark (0: none).
    pub fwmark: u32,
    /// The state's full timeout, seconds.
    pub timeout: u32,
    /// Client address (templates: the masked client address).
    pub caddr: IpAddr,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Real server address.
    pub daddr: IpAddr,
    /// rvs's FULLNAT local address and port ([`OPT_RVS_LOCAL`]).
    pub local: Option<(IpAddr, u16)>,
}

impl SyncConnRepr {
    /// Parses a checked entry and its options. The three addresses take the
    /// entry's family; an unknown option without [`OPT_F_PARAM`] is
    /// refused (IPVS drops such an entry), a known one of the wrong length
    /// or an option running past the entry is malformed.
    pub fn parse<T: AsRef<[u8]>>(c: &SyncConn<T>) -> Result<SyncConnRepr> {
        let mut local = None;
        let mut opts = c.options();
        let alen = c.alen();
        while !opts.is_empty() {
            if opts.len() < 2 {
                return Err(Error::Truncated);
            }
            let (kind, len) = (opts[0], usize::from(opts[1]));
            let data = opts.get(2..2 + len).ok_or(Error::Truncated)?;
            match kind {
                OPT_SEQ_DATA if len != 24 => {
                    return Err(Error::Malformed("sync sequence option not 24 bytes"))
                }
                OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME => {}
                OPT_RVS_LOCAL => {
                    if len != alen + 2 {
                        return Err(Error::Malformed("rvs local-address option length"));
                    }
                    local = Some((read_addr(data, alen), read_u16(data, alen)));
                }
                k if k & OPT_F_PARAM != 0 => {}
                _ => return Err(Error::Unsupported("unknown mandatory sync option")),
            }
            opts = &opts[2 + len..];
        }
        Ok(SyncConnRepr {
            protocol: c.protocol(),
            flags: c.flags(),
            state: c.state(),
            cport: c.cport(),
            vport: c.vport(),
            dport: c.dport(),
            fwmark: c.fwmark(),
            timeout: c.timeout(),
            caddr: c.caddr(),
            vaddr: c.vaddr(),
            daddr: c.daddr(),
            local,
        })
    }

    /// IPv6 entry (by the client address).
    pub fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// The entry's length with options, without padding (`ver_size`).
    pub fn buffer_len(&self) -> usize {
        let (fixed, alen) = if self.is_v6() {
            (CONN_V6_LEN, 16)
        } else {
            (CONN_V4_LEN, 4)
        };
        fixed + self.local.map_or(0, |_| 2 + alen + 2)
    }

    /// [`Self::buffer_len`] rounded up to 4 bytes: what it takes in a
    /// message.
    pub fn padded_len(&self) -> usize {
        self.buffer_len().div_ceil(4) * 4
    }

    /// Writes the entry and its padding (zeros) into the first
    /// [`Self::padded_len`] bytes of `c`. Addresses of the other family
    /// than the client's are written as the unspecified address.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, c: &mut SyncConn<T>) {
        let v6 = self.is_v6();
        let len = self.buffer_len();
        c.set_kind(if v6 { STYPE_F_INET6 } else { 0 });
        c.set_protocol(self.protocol);
        c.set_len(len as u16);
        c.set_flags(self.flags & !flags::HASHED);
        c.set_state(self.state);
        c.set_cport(self.cport);
        c.set_vport(self.vport);
        c.set_dport(self.dport);
        c.set_fwmark(self.fwmark);
        c.set_timeout(self.timeout);
        let same = |a: &IpAddr| match (a, v6) {
            (IpAddr::V4(_), false) | (IpAddr::V6(_), true) => *a,
            (_, true) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            (_, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let b = c.buffer.as_mut();
        let mut p = field::ADDRS;
        for a in [&self.caddr, &self.vaddr, &self.daddr] {
            p += write_addr(&mut b[p..], &same(a));
        }
        if let Some((lip, lport)) = &self.local {
            let alen = if v6 { 16 } else { 4 };
            b[p] = OPT_RVS_LOCAL;
            b[p + 1] = (alen + 2) as u8;
            write_addr(&mut b[p + 2..], &same(lip));
            write_u16(b, p + 2 + alen, *lport);
            p += 2 + alen + 2;
        }
        for x in &mut b[p..self.padded_len()] {
            *x = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat_v4() -> SyncConnRepr {
        SyncConnRepr {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            cport: 40000,
            vport: 80,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            caddr: "10.0.0.2".parse().unwrap(),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "192.168.10.1".parse().unwrap(),
            local: None,
        }
    }

    /// The bytes of reference §3.2, field by field.
    #[test]
    fn a_v4_entry_is_laid_out_as_ip_vs_sync_v4() {
        let r = nat_v4();
        let mut buf = [0xa5u8; 36];
        r.emit(&mut SyncConn::new_unchecked(&mut buf[..]));
        let expect: [u8; 36] = [
            0, 6, 0, 36, // type, protocol, ver_size
            0, 0, 0, 0, // flags (MASQ)
            0, 1, // state ESTABLISHED
            0x9c, 0x40, 0, 80, 0x1f, 0x90, // cport, vport, dport
            0, 0, 0, 0, // fwmark
            0, 0, 0x03, 0x84, // timeout 900
            10, 0, 0, 2, 10, 0, 0, 100, 192, 168, 10, 1,
        ];
        assert_eq!(buf, expect);
        let c = SyncConn::new_checked(&buf[..]).unwrap();
        assert_eq!(SyncConnRepr::parse(&c).unwrap(), r);
    }

    #[test]
    fn a_resync_request_is_a_protocol_0_entry_with_option_73() {
        let mut buf = [0xa5u8; RESYNC_REQUEST_LEN];
        assert_eq!(emit_resync_request(&mut buf, 5), 48);
        assert_eq!(&buf[..8], &[0, 5, 0, 48, 1, 1, 0, 0]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 40]);
        assert_eq!(&buf[44..], &[73, 2, 0, 0]);
        let m = SyncMessage::new_checked(&buf[..]).unwrap();
        assert!(is_resync_request(&m));
        let e: Vec<_> = m.conns().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].unwrap().protocol, 0, "an optional option: parses");
        let mut other = [0u8; 44];
        nat_v4().emit(&mut SyncConn::new_unchecked(&mut other[8..]));
        SyncHeaderRepr {
            syncid: 5,
            nr_conns: 1,
            size: 44,
        }
        .emit(&mut SyncMessage::new_unchecked(&mut other[..]));
        assert!(!is_resync_request(
            &SyncMessage::new_checked(&other[..]).unwrap()
        ));
    }

    #[test]
    fn the_hmac_trailer_is_a_last_protocol_0_entry_with_option_74() {
        assert_eq!(HMAC_TRAILER_LEN, 72);
        let mut buf = [0xa5u8; 8 + 36 + 72];
        nat_v4().emit(&mut SyncConn::new_unchecked(&mut buf[8..44]));
        assert_eq!(emit_hmac_trailer(&mut buf[44..]), 72);
        SyncHeaderRepr {
            syncid: 1,
            nr_conns: 2,
            size: 116,
        }
        .emit(&mut SyncMessage::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[44..48], &[0, 0, 0, 70]);
        assert_eq!(&buf[80..82], &[74, 32]);
        let m = SyncMessage::new_checked(&buf[..]).unwrap();
        assert_eq!(hmac_span(&m), Some((82, 82)));
        let e: Vec<_> = m.conns().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].unwrap().protocol, 0, "an optional option: parses");
        SyncHeaderRepr {
            syncid: 1,
            nr_conns: 1,
            size: 44,
        }
        .emit(&mut SyncMessage::new_unchecked(&mut buf[..]));
        let plain = SyncMessage::new_checked(&buf[..44]).unwrap();
        assert_eq!(hmac_span(&plain), None);
    }

    #[test]
    fn the_header_is_reserved_syncid_size_nr_conns_version_spare() {
        let mut buf = [0xa5u8; 8];
        let h = SyncHeaderRepr {
            syncid: 7,
            nr_conns: 3,
            size: 0x0123,
        };
        h.emit(&mut SyncMessage::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0, 7, 0x01, 0x23, 3, 1, 0, 0]);
    }

    #[test]
    fn the_fullnat_local_address_is_an_optional_parameter_padded_to_4() {
        let mut r = nat_v4();
        r.flags = flags::FULLNAT;
        r.local = Some(("10.0.0.200".parse().unwrap(), 5001));
        assert_eq!(r.buffer_len(), 36 + 8);
        assert_eq!(r.padded_len(), 44);
        let mut buf = [0xa5u8; 44];
        r.emit(&mut SyncConn::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[36..], &[72, 6, 10, 0, 0, 200, 0x13, 0x89]);
        assert_eq!(OPT_RVS_LOCAL & OPT_F_PARAM, OPT_F_PARAM);
        let c = SyncConn::new_checked(&buf[..]).unwrap();
        assert_eq!(SyncConnRepr::parse(&c).unwrap(), r);
        // v6 with the option: 72 + 2 + 18 = 92, padded to 92.
        let mut r6 = r;
        r6.caddr = "2001:db8::2".parse().unwrap();
        r6.vaddr = "2001:db8::100".parse().unwrap();
        r6.daddr = "2001:db8:1::1".parse().unwrap();
        r6.local = Some(("2001:db8::200".parse().unwrap(), 7));
        let mut b6 = vec![0xa5u8; r6.padded_len()];
        r6.emit(&mut SyncConn::new_unchecked(&mut b6[..]));
        assert_eq!(b6[0], STYPE_F_INET6);
        let c6 = SyncConn::new_checked(&b6[..]).unwrap();
        assert_eq!(SyncConnRepr::parse(&c6).unwrap(), r6);
    }

    #[test]
    fn unknown_optional_options_are_skipped_and_mandatory_ones_refused() {
        let mut buf = [0u8; 44];
        nat_v4().emit(&mut SyncConn::new_unchecked(&mut buf[..]));
        buf[2..4].copy_from_slice(&44u16.to_be_bytes());
        buf[36..44].copy_from_slice(&[0x41, 6, 1, 2, 3, 4, 5, 6]);
        let c = SyncConn::new_checked(&buf[..]).unwrap();
        assert_eq!(SyncConnRepr::parse(&c).unwrap(), nat_v4());
        buf[36] = 0x11;
        let c = SyncConn::new_checked(&buf[..]).unwrap();
        assert!(matches!(
            SyncConnRepr::parse(&c),
            Err(Error::Unsupported(_))
        ));
        buf[36] = 0x41;
        buf[37] = 7; // runs past the entry
        let c = SyncConn::new_checked(&buf[..]).unwrap();
        assert_eq!(SyncConnRepr::parse(&c), Err(Error::Truncated));
    }
}
