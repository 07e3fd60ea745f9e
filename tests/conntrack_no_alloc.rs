//! The connection table and the local-address pool never allocate after
//! construction: a counting global allocator watches this thread while a
//! worker's per-packet and expiry work runs (insert, lookup, state changes,
//! touch, expire, remove, laddr alloc/free).
//!
//! This file is its own test binary, so its global allocator affects no
//! other test; it counts only on the thread that switched counting on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rvs::conntrack::tcp_flags::{ACK, FIN, SYN};
use rvs::conntrack::{
    addr_from_ip, ConnTable, Dir, Fwd, LaddrPool, NewConn, Proto, Timeouts, Tuple, TICKS_PER_SEC,
};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

struct CountingAllocator;

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so `System`'s guarantees carry over; the counting only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many allocations it made on this thread.
fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn counting_allocator_sees_allocations() {
    let n = allocations_during(|| {
        let v: Vec<u64> = Vec::with_capacity(16);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn conntrack_hot_path_does_not_allocate() {
    let to = Timeouts::default();
    let mut table = ConnTable::new(4096);
    let lip = addr_from_ip(&"10.0.0.100".parse().expect("address"));
    let mut pool = LaddrPool::new(&[lip], 1024, 65535, 0, 1);
    let base = NewConn {
        proto: Proto::Tcp,
        v6: false,
        fwd: Fwd::FullNat,
        cip: addr_from_ip(&"203.0.113.7".parse().expect("address")),
        cport: 0,
        vip: addr_from_ip(&"10.0.0.1".parse().expect("address")),
        vport: 80,
        rip: addr_from_ip(&"192.168.10.1".parse().expect("address")),
        rport: 8080,
        lip,
        lport: 0,
        svc: 0,
        dest: 0,
        template: None,
        flags: 0,
    };
    // Fix the hash seed before counting (first use initialises it).
    let _ = Tuple::new(6, false, base.cip, 1, base.vip, 80).hash();

    let mut expired = 0u32;
    let n = allocations_during(|| {
        let mut now = 0;
        for round in 0..20u16 {
            for i in 0..1000u16 {
                let Some((lip, lport)) = pool.alloc() else {
                    break;
                };
                let c = NewConn {
                    cport: 1 + round * 1000 + i,
                    lip,
                    lport,
                    ..base
                };
                let Ok(id) = table.insert(&c, now, &to) else {
                    pool.free(&lip, lport);
                    continue;
                };
                let orig = Tuple::new(6, false, c.cip, c.cport, c.vip, c.vport);
                let h = orig.hash();
                table.prefetch(h);
                table.prefetch_conn(h);
                if let Some((found, Dir::Original)) = table.lookup(&orig, h) {
                    table.on_packet(found, Dir::Original, SYN, now, &to);
                    table.on_packet(found, Dir::Reply, SYN | ACK, now, &to);
                    table.on_packet(found, Dir::Original, ACK, now, &to);
                }
                if i % 3 == 0 {
                    table.on_packet(id, Dir::Reply, FIN | ACK, now, &to);
                }
                if i % 7 == 0 {
                    if let Ok(gone) = table.remove(id) {
                        pool.free(&gone.lip(), gone.lport());
                    }
                }
                table.touch(id, now);
            }
            now += 100 * TICKS_PER_SEC;
            expired += table.expire(now, 10_000, |c| pool.free(&c.lip(), c.lport()));
        }
    });
    assert_eq!(n, 0, "allocations on the hot path");
    assert!(expired > 0, "the expiry path ran");
}
