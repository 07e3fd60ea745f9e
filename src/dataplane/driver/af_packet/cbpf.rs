//! The `PACKET_FANOUT_CBPF` steering program: [`fanout_program`] generates
//! the classic-BPF program that computes [`SteerPlan::owner`] inside the
//! kernel (through a small assembler with forward labels, `Asm`), and a
//! classic-BPF interpreter ([`run`], [`verify`]) for exactly the opcodes it
//! emits, with the kernel's semantics for fanout programs and the kernel's
//! static checks: how the unit tests and `tests/owner_agreement.rs` check
//! that the program computes [`SteerPlan::owner`]. The interpreter is test
//! support, not part of the driver (nothing else calls it); the module is
//! public (`#[doc(hidden)]`) only for that test.
//!
//! Rules: the generator runs on the control plane only (it allocates); it
//! returns 0 (queue 0) for every packet it cannot classify exactly, and
//! its length is checked against `BPF_MAXINSNS` by the caller
//! (`AfPacketDriver::set_steering`) before the kernel sees it.

use super::socket::{ETH_P_8021AD, ETH_P_8021Q, MAX_BPF_INSNS};
use crate::steer::SteerPlan;

// ---------------------------------------------------------------------------
// The steering program.

pub(super) const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ST: u16 = 0x02;
pub(super) const BPF_ALU: u16 = 0x04;
pub(super) const BPF_JMP: u16 = 0x05;
pub(super) const BPF_RET: u16 = 0x06;
const BPF_MISC: u16 = 0x07;
pub(super) const BPF_W: u16 = 0x00;
pub(super) const BPF_H: u16 = 0x08;
pub(super) const BPF_B: u16 = 0x10;
pub(super) const BPF_IMM: u16 = 0x00;
pub(super) const BPF_ABS: u16 = 0x20;
pub(super) const BPF_LEN: u16 = 0x80;
const BPF_IND: u16 = 0x40;
const BPF_MEM: u16 = 0x60;
const BPF_MSH: u16 = 0xa0;
const BPF_MUL: u16 = 0x20;
pub(super) const BPF_AND: u16 = 0x50;
const BPF_RSH: u16 = 0x70;
const BPF_MOD: u16 = 0x90;
const BPF_XOR: u16 = 0xa0;
const BPF_JA: u16 = 0x00;
pub(super) const BPF_JEQ: u16 = 0x10;
pub(super) const BPF_JGE: u16 = 0x30;
pub(super) const BPF_JSET: u16 = 0x40;
pub(super) const BPF_K: u16 = 0x00;
const BPF_X: u16 = 0x08;
const BPF_A: u16 = 0x10;
const BPF_TAX: u16 = 0x00;

pub(super) fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub(super) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The `k` of a load of ancillary data `what` (`SKF_AD_*`).
pub(super) fn ancillary(what: libc::c_int) -> u32 {
    (libc::SKF_AD_OFF + what) as u32
}

// Scratch memory words of the program.
const M_PROTO: u32 = 0;
const M_SPORT: u32 = 1;
const M_DPORT: u32 = 2;
const M_S0: u32 = 3; // source address words S0..S3 (IPv4: S0 only)
const M_D0: u32 = 7; // destination address words D0..D3
const M_SF: u32 = 11; // folded source (xor of its words)
const M_DF: u32 = 12; // folded destination
const M_T: u32 = 13; // temporary

/// The classic-BPF `PACKET_FANOUT_CBPF` program for `plan`: returns
/// exactly [`SteerPlan::owner`] for TCP and UDP over IPv4 and IPv6 (no
/// extension headers), untagged or with an 802.1Q/802.1ad tag;
/// [`steer::frag_owner`](crate::steer::frag_owner) for IPv4 fragments
/// (first or not: the worker that routes a datagram's fragments); and 0 for
/// everything else (ARP, other protocols, IPv6 fragments, truncated
/// headers).
///
/// The kernel runs fanout programs on received packets with the data
/// starting at the network header (the Ethernet header and a VLAN tag the
/// kernel recognised are metadata by then), the EtherType in ancillary
/// `SKF_AD_PROTOCOL`. A tag still in the data (`protocol` 802.1Q/802.1ad,
/// e.g. the inner tag of a double-tagged frame) is skipped.
pub fn fanout_program(plan: &SteerPlan) -> Vec<libc::sock_filter> {
    if plan.workers <= 1 {
        return vec![stmt(BPF_RET | BPF_K, 0)];
    }
    let mut a = Asm::default();
    let (v4_0, v6_0, tagged, v4_4, v6_4) = (a.label(), a.label(), a.label(), a.label(), a.label());
    let (match4, match6, hash, lport, zero) =
        (a.label(), a.label(), a.label(), a.label(), a.label());

    // Which network protocol, where its header starts.
    a.op(BPF_LD | BPF_W | BPF_ABS, ancillary(libc::SKF_AD_PROTOCOL));
    a.jeq(0x0800, Some(v4_0), None);
    a.jeq(0x86dd, Some(v6_0), None);
    a.jeq(ETH_P_8021Q as u32, Some(tagged), None);
    a.jeq(ETH_P_8021AD as u32, Some(tagged), Some(zero));
    a.place(tagged);
    a.op(BPF_LD | BPF_H | BPF_ABS, 2);
    a.jeq(0x0800, Some(v4_4), None);
    a.jeq(0x86dd, Some(v6_4), Some(zero));

    for (label, base) in [(v4_0, 0u32), (v4_4, 4)] {
        a.place(label);
        parse_ipv4(&mut a, base, match4, plan.workers, zero);
    }
    for (label, base) in [(v6_0, 0u32), (v6_4, 4)] {
        a.place(label);
        parse_ipv6(&mut a, base, match6, zero);
    }
    a.place(match4);
    match_family(&mut a, plan, 1, lport, hash);
    a.place(match6);
    match_family(&mut a, plan, 4, lport, hash);

    // owner_hash(A, X) % workers
    a.place(hash);
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1);
    a.op(BPF_ALU | BPF_RSH | BPF_K, 16);
    a.op(BPF_ALU | BPF_MOD | BPF_K, plan.workers as u32);
    a.op(BPF_RET | BPF_A, 0);
    // lport_owner(dport)
    a.place(lport);
    a.op(BPF_LD | BPF_MEM, M_DPORT);
    a.op(BPF_ALU | BPF_MOD | BPF_K, plan.workers as u32);
    a.op(BPF_RET | BPF_A, 0);
    a.place(zero);
    a.op(BPF_RET | BPF_K, 0);
    a.finish()
}

/// IPv4 header at `base`: store protocol, addresses and ports of TCP/UDP;
/// a fragment (MF or an offset) returns `steer::frag_owner` of its
/// addresses and identification among `workers`.
fn parse_ipv4(a: &mut Asm, base: u32, matcher: usize, workers: u16, zero: usize) {
    let (l4, frag) = (a.label(), a.label());
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 6);
    a.jump(BPF_JSET, 0x3fff, Some(frag), None); // MF or fragment offset
    a.op(BPF_LD | BPF_B | BPF_ABS, base + 9);
    a.jeq(6, Some(l4), None);
    a.jeq(17, None, Some(zero));
    a.place(l4);
    a.op(BPF_ST, M_PROTO);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 12);
    a.op(BPF_ST, M_S0);
    a.op(BPF_ST, M_SF);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 16);
    a.op(BPF_ST, M_D0);
    a.op(BPF_ST, M_DF);
    a.op(BPF_LDX | BPF_B | BPF_MSH, base);
    a.op(BPF_LD | BPF_H | BPF_IND, base);
    a.op(BPF_ST, M_SPORT);
    a.op(BPF_LD | BPF_H | BPF_IND, base + 2);
    a.op(BPF_ST, M_DPORT);
    a.ja(matcher);
    // frag_owner: owner_hash(src ^ dst, ident) % workers.
    a.place(frag);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 12);
    a.op(BPF_ST, M_T);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 16);
    a.op(BPF_LDX | BPF_W | BPF_MEM, M_T);
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_MISC | BPF_TAX, 0);
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 4);
    // Inline (the kernel's memory check runs straight on past a RET, so a
    // jump into the shared hash would taint the local-port block after it).
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1);
    a.op(BPF_ALU | BPF_RSH | BPF_K, 16);
    a.op(BPF_ALU | BPF_MOD | BPF_K, workers as u32);
    a.op(BPF_RET | BPF_A, 0);
}

/// IPv6 header at `base`: TCP/UDP directly after the fixed header only.
fn parse_ipv6(a: &mut Asm, base: u32, matcher: usize, zero: usize) {
    let l4 = a.label();
    a.op(BPF_LD | BPF_B | BPF_ABS, base + 6);
    a.jeq(6, Some(l4), None);
    a.jeq(17, None, Some(zero));
    a.place(l4);
    a.op(BPF_ST, M_PROTO);
    for (first_word, first_slot, fold_slot) in [(base + 8, M_S0, M_SF), (base + 24, M_D0, M_DF)] {
        for i in 0..4 {
            a.op(BPF_LD | BPF_W | BPF_ABS, first_word + 4 * i);
            a.op(BPF_ST, first_slot + i);
        }
        // fold = w0 ^ w1 ^ w2 ^ w3 (A holds w3)
        for i in 0..3 {
            a.op(BPF_MISC | BPF_TAX, 0);
            a.op(BPF_LD | BPF_MEM, first_slot + i);
            a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
        }
        a.op(BPF_ST, fold_slot);
    }
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 40);
    a.op(BPF_ST, M_SPORT);
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 42);
    a.op(BPF_ST, M_DPORT);
    a.ja(matcher);
}

/// The address word `i` of a 4- or 16-byte address (missing bytes 0, as
/// `SteerPlan::owner` zips a short mask).
fn word(bytes: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    for (j, b) in w.iter_mut().enumerate() {
        *b = bytes.get(4 * i + j).copied().unwrap_or(0);
    }
    u32::from_be_bytes(w)
}

/// Local addresses, then services in plan order, then the default (client
/// = destination), for addresses of `words` 32-bit words. Every way out
/// jumps to `hash` with A = folded address, X = port, or to `lport`.
fn match_family(a: &mut Asm, plan: &SteerPlan, words: usize, lport: usize, hash: usize) {
    let len = words * 4;
    for laddr in plan.laddrs.iter().filter(|l| l.len() == len) {
        let next = a.label();
        for i in 0..words {
            a.op(BPF_LD | BPF_MEM, M_D0 + i as u32);
            a.jeq(word(laddr, i), None, Some(next));
        }
        a.ja(lport);
        a.place(next);
    }
    // Exact-port services before the port-0 ("every port") ones, the order
    // of `SteerPlan::service` (and of the worker's service lookup).
    let exact = plan.services.iter().filter(|s| s.vport != 0);
    let any_port = plan.services.iter().filter(|s| s.vport == 0);
    for s in exact.chain(any_port) {
        if s.vip.len() != len || !(s.proto == 6 || s.proto == 17) {
            continue; // can never match a TCP/UDP packet of this family
        }
        let next = a.label();
        a.op(BPF_LD | BPF_MEM, M_PROTO);
        a.jeq(s.proto as u32, None, Some(next));
        for i in 0..words {
            a.op(BPF_LD | BPF_MEM, M_D0 + i as u32);
            a.jeq(word(&s.vip, i), None, Some(next));
        }
        if s.vport != 0 {
            a.op(BPF_LD | BPF_MEM, M_DPORT);
            a.jeq(s.vport as u32, None, Some(next));
        }
        match &s.persist_mask {
            None => {
                a.op(BPF_LDX | BPF_W | BPF_MEM, M_SPORT);
                a.op(BPF_LD | BPF_MEM, M_SF);
            }
            Some(mask) => {
                // xor of the masked source words, port 0
                let kept: Vec<(u32, u32)> = (0..words)
                    .map(|i| (M_S0 + i as u32, word(mask, i)))
                    .filter(|&(_, m)| m != 0)
                    .collect();
                if kept.is_empty() {
                    a.op(BPF_LD | BPF_IMM, 0);
                }
                for (n, &(slot, m)) in kept.iter().enumerate() {
                    if n > 0 {
                        a.op(BPF_ST, M_T);
                    }
                    a.op(BPF_LD | BPF_MEM, slot);
                    if m != u32::MAX {
                        a.op(BPF_ALU | BPF_AND | BPF_K, m);
                    }
                    if n > 0 {
                        a.op(BPF_MISC | BPF_TAX, 0);
                        a.op(BPF_LD | BPF_MEM, M_T);
                        a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
                    }
                }
                a.op(BPF_LDX | BPF_W | BPF_IMM, 0);
            }
        }
        a.ja(hash);
        a.place(next);
    }
    a.op(BPF_LDX | BPF_W | BPF_MEM, M_DPORT);
    a.op(BPF_LD | BPF_MEM, M_DF);
    a.ja(hash);
}

/// A tiny classic-BPF assembler with forward labels. Conditional jumps
/// reach at most 255 instructions; `finish` turns a longer one into a short
/// jump over an unconditional `ja` (32-bit reach).
#[derive(Default)]
pub(super) struct Asm {
    items: Vec<Item>,
    labels: usize,
}

#[derive(Clone, Copy)]
enum Item {
    Label(usize),
    Op(u16, u32),
    /// Conditional jump; `None` = the next instruction.
    Jump(u16, u32, Option<usize>, Option<usize>),
    Ja(usize),
}

impl Asm {
    pub(super) fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    pub(super) fn place(&mut self, l: usize) {
        self.items.push(Item::Label(l));
    }
    pub(super) fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Op(code, k));
    }
    pub(super) fn jump(&mut self, op: u16, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.items.push(Item::Jump(BPF_JMP | op | BPF_K, k, jt, jf));
    }
    pub(super) fn jeq(&mut self, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.jump(BPF_JEQ, k, jt, jf);
    }
    pub(super) fn ja(&mut self, l: usize) {
        self.items.push(Item::Ja(l));
    }

    /// Instruction index of every label.
    fn layout(&self) -> Vec<usize> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for it in &self.items {
            match it {
                Item::Label(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        at
    }

    pub(super) fn finish(mut self) -> Vec<libc::sock_filter> {
        // Widen far conditional jumps until every one reaches.
        'widen: loop {
            let at = self.layout();
            let mut pc = 0;
            for idx in 0..self.items.len() {
                match self.items[idx] {
                    Item::Label(_) => continue,
                    Item::Jump(code, k, jt, jf) => {
                        let far = |t: Option<usize>| t.is_some_and(|l| at[l] - (pc + 1) > 255);
                        if far(jt) || far(jf) {
                            let after = self.label();
                            let (near, target) = if far(jt) {
                                (Item::Jump(code, k, None, jf.or(Some(after))), jt)
                            } else {
                                (Item::Jump(code, k, jt.or(Some(after)), None), jf)
                            };
                            let target = target.unwrap_or(after);
                            self.items
                                .splice(idx..=idx, [near, Item::Ja(target), Item::Label(after)]);
                            continue 'widen;
                        }
                    }
                    _ => {}
                }
                pc += 1;
            }
            break;
        }
        let at = self.layout();
        let mut out = Vec::with_capacity(self.items.len());
        for it in &self.items {
            let pc = out.len();
            let rel = |l: usize| at[l] - (pc + 1);
            match *it {
                Item::Label(_) => {}
                Item::Op(code, k) => out.push(stmt(code, k)),
                Item::Jump(code, k, jt, jf) => out.push(jump(
                    code,
                    k,
                    jt.map_or(0, |l| rel(l) as u8),
                    jf.map_or(0, |l| rel(l) as u8),
                )),
                Item::Ja(l) => out.push(stmt(BPF_JMP | BPF_JA, rel(l) as u32)),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The interpreter (test support).

/// What a fanout program sees: `skb->protocol` and the data from the
/// network header on.
pub struct Skb<'a> {
    /// `skb->protocol`: the EtherType (ancillary `SKF_AD_PROTOCOL`).
    pub protocol: u16,
    /// The packet from the network header on.
    pub data: &'a [u8],
}

fn load(data: &[u8], off: u32, size: usize) -> Option<u32> {
    let off = off as usize;
    let b = data.get(off..off.checked_add(size)?)?;
    Some(b.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32))
}

/// Run `prog` on `skb`; a load outside the packet ends the program with
/// 0, as in the kernel.
pub fn run(prog: &[libc::sock_filter], skb: &Skb) -> u32 {
    exec(prog, skb.data, |what| {
        assert_eq!(what, libc::SKF_AD_PROTOCOL, "unexpected ancillary load");
        skb.protocol as u32
    })
}

/// What a socket filter (`SO_ATTACH_FILTER` on a packet socket) sees of a
/// received frame: the frame from its Ethernet header on (a VLAN tag the
/// kernel took out is metadata), its `pkttype` and whether it had a tag.
pub struct SockSkb<'a> {
    /// The frame from the Ethernet header on.
    pub frame: &'a [u8],
    /// `skb->pkt_type` (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
    pub pkttype: u8,
    /// The kernel took a VLAN tag out of the frame.
    pub vlan_tagged: bool,
}

/// Run socket filter `prog` on `skb`: what the kernel keeps of the frame
/// (0: the socket never sees it).
pub fn run_socket_filter(prog: &[libc::sock_filter], skb: &SockSkb) -> u32 {
    exec(prog, skb.frame, |what| match what {
        libc::SKF_AD_PKTTYPE => skb.pkttype as u32,
        libc::SKF_AD_VLAN_TAG_PRESENT => skb.vlan_tagged as u32,
        _ => panic!("unexpected ancillary load {what}"),
    })
}

fn exec(prog: &[libc::sock_filter], data: &[u8], anc: impl Fn(libc::c_int) -> u32) -> u32 {
    let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        pc += 1;
        let k = ins.k;
        let size = match ins.code & 0x18 {
            BPF_W => 4,
            BPF_H => 2,
            _ => 1,
        };
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS && k >= ancillary(0) => {
                a = anc(k.wrapping_sub(ancillary(0)) as libc::c_int);
            }
            c if c == BPF_LD | BPF_W | BPF_LEN => a = data.len() as u32,
            c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_ABS => match load(data, k, size) {
                Some(v) => a = v,
                None => return 0,
            },
            c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_IND => {
                match load(data, x.wrapping_add(k), size) {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
            c if c == BPF_LD | BPF_IMM => a = k,
            c if c == BPF_LD | BPF_MEM => a = m[k as usize],
            c if c == BPF_LDX | BPF_W | BPF_IMM => x = k,
            c if c == BPF_LDX | BPF_W | BPF_MEM => x = m[k as usize],
            c if c == BPF_LDX | BPF_B | BPF_MSH => match load(data, k, 1) {
                Some(v) => x = 4 * (v & 0xf),
                None => return 0,
            },
            c if c == BPF_ST => m[k as usize] = a,
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
            c if c == BPF_ALU | BPF_XOR | BPF_X => a ^= x,
            c if c == BPF_ALU | BPF_MUL | BPF_K => a = a.wrapping_mul(k),
            c if c == BPF_ALU | BPF_RSH | BPF_K => a >>= k,
            c if c == BPF_ALU | BPF_MOD | BPF_K => a %= k,
            c if c == BPF_MISC | BPF_TAX => x = a,
            c if c == BPF_JMP | BPF_JA => pc += k as usize,
            c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                pc += if a == k { ins.jt } else { ins.jf } as usize
            }
            c if c == BPF_JMP | BPF_JGE | BPF_K => {
                pc += if a >= k { ins.jt } else { ins.jf } as usize
            }
            c if c == BPF_JMP | BPF_JSET | BPF_K => {
                pc += if a & k != 0 { ins.jt } else { ins.jf } as usize
            }
            c if c == BPF_RET | BPF_K => return k,
            c if c == BPF_RET | BPF_A => return a,
            c => panic!("opcode {c:#x} not expected in a fanout program"),
        }
    }
}

/// The kernel's static checks on a classic program (bpf_check_classic):
/// size, jump targets, final RET, scratch indices, no division by a
/// zero constant, and no read of a scratch word that is not written on
/// every path to it (check_load_and_stores, same algorithm).
pub fn verify(prog: &[libc::sock_filter]) -> Result<(), String> {
    let n = prog.len();
    if n == 0 || n > MAX_BPF_INSNS {
        return Err(format!("length {n}"));
    }
    let mut masks = vec![0xffffu16; n];
    let mut valid = 0u16;
    for (pc, ins) in prog.iter().enumerate() {
        valid &= masks[pc];
        let class = ins.code & 0x07;
        let uses_scratch = class == BPF_ST || (ins.code & 0xe0 == BPF_MEM && class <= BPF_LDX);
        if uses_scratch && ins.k >= 16 {
            return Err(format!("pc {pc}: scratch index {}", ins.k));
        }
        if ins.code == BPF_ALU | BPF_MOD | BPF_K && ins.k == 0 {
            return Err(format!("pc {pc}: mod 0"));
        }
        match ins.code {
            c if c == BPF_ST => valid |= 1 << ins.k,
            c if (c == BPF_LD | BPF_MEM || c == BPF_LDX | BPF_W | BPF_MEM)
                && valid & (1 << ins.k) == 0 =>
            {
                return Err(format!("pc {pc}: reads M[{}] before it is set", ins.k));
            }
            c if c == BPF_JMP | BPF_JA => {
                let t = pc + 1 + ins.k as usize;
                if t >= n {
                    return Err(format!("pc {pc}: ja out of range"));
                }
                masks[t] &= valid;
                valid = 0xffff;
            }
            c if class == BPF_JMP && c != BPF_JMP | BPF_JA => {
                for off in [ins.jt, ins.jf] {
                    let t = pc + 1 + off as usize;
                    if t >= n {
                        return Err(format!("pc {pc}: jump out of range"));
                    }
                    masks[t] &= valid;
                }
                valid = 0xffff;
            }
            _ => {}
        }
    }
    if prog[n - 1].code & 0x07 != BPF_RET {
        return Err("last instruction is not RET".into());
    }
    Ok(())
}
