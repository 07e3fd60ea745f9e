//! The DPDK Environment Abstraction Layer: start-up (`rte_eal_init`, once
//! per process), the packet-buffer pools (one per NUMA socket), worker
//! thread registration, and clean-up (`rte_eal_cleanup`).
//!
//! Rules:
//! * [`Eal::init`] runs at most once per process (DPDK cannot start twice,
//!   not even after clean-up); a second call is an error.
//! * Every port and queue holds a reference to the EAL's shared state, so
//!   `rte_eal_cleanup` runs only after the last of them is gone. Packet
//!   buffers ([`super::Mbuf`]) hold none (that would cost an atomic per
//!   packet): drop them before the last port, queue and [`Eal`].
//! * PMDs: Debian's DPDK is a shared build whose EAL loads every plugin in
//!   its built-in directory (`RTE_EAL_PMD_PATH`, e.g.
//!   `/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0`) by itself, so `net_null`,
//!   `net_ring`, `net_pcap`, `net_tap` … are there without `-d`. For a DPDK
//!   installed elsewhere pass `-d <dir>` in `dpdk.eal_args`;
//!   [`default_pmd_dir`] is the directory the build found.

use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::sys;
use crate::dataplane::driver::DriverError;

/// Set by the first [`Eal::init`] attempt; DPDK cannot be started twice.
static EAL_STARTED: AtomicBool = AtomicBool::new(false);
/// Set while an initialised EAL exists (between a successful init and
/// clean-up): thread registration needs it.
static EAL_READY: AtomicBool = AtomicBool::new(false);

/// `SOCKET_ID_ANY`.
const SOCKET_ID_ANY: c_int = -1;

/// An lcore id DPDK gave a thread (EAL threads, registered workers). Keys
/// the per-lcore mempool caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

/// Size of the packet-buffer pool made for each NUMA socket a port is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Buffers per pool. Must cover every queue's RX and TX descriptors
    /// (1024 each per queue), the per-lcore caches and the packets in
    /// flight; best as 2^k − 1.
    pub mbufs: u32,
    /// Per-lcore cache size (at most 512, and at most `mbufs / 1.5`).
    pub cache: u32,
    /// Bytes per buffer after the struct: headroom (128) + data room.
    pub data_room: u16,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mbufs: 16 * 1024 - 1,
            cache: 256,
            data_room: sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        }
    }
}

/// A mempool pointer. DPDK's mempools are safe to use from any thread
/// (multi-producer/multi-consumer ring; per-lcore caches only for the
/// thread owning that lcore id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MempoolPtr(pub(crate) NonNull<sys::rte_mempool>);

// SAFETY: a mempool is built for concurrent get/put from many threads
// (ring_mp_mc ops); the pointer stays valid until `EalShared` drops, after
// every port and queue that holds a copy of it (they hold the `Arc`).
unsafe impl Send for MempoolPtr {}
// SAFETY: as above; shared references only call thread-safe mempool ops.
unsafe impl Sync for MempoolPtr {}

/// State shared by the [`Eal`] handle, the ports and their queues; the EAL
/// is cleaned up when the last reference goes.
pub(crate) struct EalShared {
    pools: Mutex<Vec<(c_int, MempoolPtr)>>,
    open_ports: Mutex<Vec<u16>>,
    pool_config: PoolConfig,
    /// The argv strings given to `rte_eal_init`, kept alive until clean-up
    /// (the EAL may keep pointers into them).
    _argv: Vec<CString>,
}

impl EalShared {
    /// The pool for NUMA socket `socket` (`-1`: the caller's socket),
    /// created on first use.
    pub(crate) fn pool_for_socket(&self, socket: c_int) -> Result<MempoolPtr, DriverError> {
        let socket = if socket == SOCKET_ID_ANY {
            // SAFETY: reads the calling thread's lcore/socket TLS; no
            // preconditions.
            let s = unsafe { sys::rvs_socket_id() };
            if s == u32::MAX {
                0
            } else {
                s as c_int
            }
        } else {
            socket
        };
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| DriverError::Config("dpdk: pool table poisoned".into()))?;
        if let Some((_, p)) = pools.iter().find(|(s, _)| *s == socket) {
            return Ok(*p);
        }
        let name = CString::new(format!("rvs_pool_s{socket}"))
            .map_err(|e| DriverError::Config(format!("dpdk: pool name: {e}")))?;
        let c = self.pool_config;
        // SAFETY: `name` is a valid NUL-terminated string for the call;
        // the EAL is initialised (this state exists only after a successful
        // init); the numbers are plain values DPDK checks itself.
        let mp = unsafe {
            sys::rte_pktmbuf_pool_create(name.as_ptr(), c.mbufs, c.cache, 0, c.data_room, socket)
        };
        let mp = NonNull::new(mp).ok_or_else(|| {
            dpdk_error(
                format!(
                    "rte_pktmbuf_pool_create({} mbufs, data room {}, socket {socket})",
                    c.mbufs, c.data_room
                ),
                last_errno(),
            )
        })?;
        let p = MempoolPtr(mp);
        pools.push((socket, p));
        Ok(p)
    }

    /// The pool configuration.
    pub(crate) fn pool_config(&self) -> PoolConfig {
        self.pool_config
    }

    /// Mark `port` open; `false` if it already was.
    pub(crate) fn claim_port(&self, port: u16) -> Result<bool, DriverError> {
        let mut open = self
            .open_ports
            .lock()
            .map_err(|_| DriverError::Config("dpdk: port table poisoned".into()))?;
        if open.contains(&port) {
            return Ok(false);
        }
        open.push(port);
        Ok(true)
    }

    /// Mark `port` closed.
    pub(crate) fn release_port(&self, port: u16) {
        if let Ok(mut open) = self.open_ports.lock() {
            open.retain(|p| *p != port);
        }
    }
}

impl Drop for EalShared {
    fn drop(&mut self) {
        EAL_READY.store(false, Ordering::Release);
        if let Ok(pools) = self.pools.get_mut() {
            for (_, p) in pools.drain(..) {
                // SAFETY: the pool was made by rte_pktmbuf_pool_create; every
                // port and queue using it is gone (they hold this Arc).
                unsafe { sys::rte_mempool_free(p.0.as_ptr()) };
            }
        }
        // SAFETY: the EAL was initialised by `Eal::init`; no port, queue
        // or pool is left; called once (this state is dropped once).
        unsafe { sys::rte_eal_cleanup() };
    }
}

/// The initialised DPDK EAL. Keep it for the life of the dataplane; when it
/// and every port and queue opened through it are dropped, the EAL is
/// cleaned up (`rte_eal_cleanup`).
pub struct Eal {
    shared: Arc<EalShared>,
    args_parsed: usize,
}

impl fmt::Debug for Eal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eal")
            .field("args_parsed", &self.args_parsed)
            .field("pool_config", &self.shared.pool_config)
            .finish()
    }
}

impl Eal {
    /// Start the EAL with `args` (the YAML config's `dpdk.eal_args`, e.g.
    /// `["--no-huge", "--no-pci", "--no-shconf", "--file-prefix=rvs",
    /// "--no-telemetry", "-m", "512", "-l", "0", "--vdev=net_null0"]`; no
    /// program name, and nothing after a `--`). Pools use
    /// [`PoolConfig::default`].
    ///
    /// Notes for those arguments: `--in-memory` cannot go with `--no-huge`
    /// (DPDK 22.11 refuses it with legacy memory); `--no-shconf` and a
    /// `--file-prefix` of its own let it run beside another DPDK process;
    /// `-l 0` makes only the calling thread an EAL lcore — workers take
    /// lcore ids with [`register_worker_thread`].
    ///
    /// The calling thread becomes DPDK's main lcore and is pinned to its
    /// core; start worker threads afterwards and have each call
    /// [`register_worker_thread`] after pinning itself.
    pub fn init(args: &[String]) -> Result<Eal, DriverError> {
        Self::init_with(args, PoolConfig::default())
    }

    /// [`Eal::init`] with explicit pool sizes.
    pub fn init_with(args: &[String], pool_config: PoolConfig) -> Result<Eal, DriverError> {
        if pool_config.mbufs == 0
            || pool_config.cache > sys::RTE_MEMPOOL_CACHE_MAX_SIZE
            || (pool_config.data_room as u32) <= sys::RTE_PKTMBUF_HEADROOM
        {
            return Err(DriverError::Config(format!(
                "dpdk: bad pool configuration {pool_config:?} (cache at most {}, data room above {})",
                sys::RTE_MEMPOOL_CACHE_MAX_SIZE,
                sys::RTE_PKTMBUF_HEADROOM
            )));
        }
        let mut argv_owned = Vec::with_capacity(args.len() + 1);
        argv_owned.push(CString::new("rvs").map_err(|e| DriverError::Config(e.to_string()))?);
        for a in args {
            argv_owned.push(CString::new(a.as_str()).map_err(|_| {
                DriverError::Config(format!("dpdk: EAL argument {a:?} contains a NUL byte"))
            })?);
        }
        if EAL_STARTED.swap(true, Ordering::AcqRel) {
            return Err(DriverError::Config(
                "dpdk: the EAL was already started in this process (it can start only once)".into(),
            ));
        }
        let mut argv: Vec<*mut c_char> = argv_owned
            .iter()
            .map(|s| s.as_ptr() as *mut c_char)
            .collect();
        let argc = argv.len() as c_int;
        // rte_eal_init pins the calling thread to the main lcore, and every
        // thread started afterwards would inherit that mask (rvs pins its
        // workers itself, from `workers.cores`): keep the caller's mask.
        let saved_affinity = thread_affinity();
        // SAFETY: argv holds `argc` valid NUL-terminated strings that live
        // in `argv_owned` until clean-up; the EAL may permute the pointer
        // array (ours, not used afterwards) but does not write the strings.
        // Only the first call in the process gets here (EAL_STARTED).
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(dpdk_error(
                format!("rte_eal_init({})", args.join(" ")),
                last_errno(),
            ));
        }
        if let Some(mask) = saved_affinity {
            set_thread_affinity(&mask);
        }
        EAL_READY.store(true, Ordering::Release);
        Ok(Eal {
            shared: Arc::new(EalShared {
                pools: Mutex::new(Vec::new()),
                open_ports: Mutex::new(Vec::new()),
                pool_config,
                _argv: argv_owned,
            }),
            args_parsed: ret as usize,
        })
    }

    /// Probe a device after start-up (`rte_dev_probe`), e.g.
    /// `"net_tap0,iface=rvs0"`; a device that fails to probe in the EAL
    /// arguments would fail the whole start-up instead.
    pub fn attach_vdev(&self, devargs: &str) -> Result<(), DriverError> {
        let c = CString::new(devargs)
            .map_err(|_| DriverError::Config(format!("dpdk: devargs {devargs:?} contain NUL")))?;
        // SAFETY: `c` is a valid NUL-terminated string; the EAL is up.
        let ret = unsafe { sys::rte_dev_probe(c.as_ptr()) };
        if ret < 0 {
            return Err(dpdk_error(format!("rte_dev_probe({devargs})"), -ret));
        }
        Ok(())
    }

    /// Number of usable ethdev ports.
    pub fn port_count(&self) -> u16 {
        // SAFETY: no preconditions once the EAL is up.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// Number of lcores the EAL was started with (`-l`/`--lcores`).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: no preconditions once the EAL is up.
        unsafe { sys::rte_lcore_count() }
    }

    /// The pool configuration in force.
    pub fn pool_config(&self) -> PoolConfig {
        self.shared.pool_config()
    }

    /// How many buffers of socket `socket`'s pool are in use (in
    /// descriptors, caches or the application), if the pool exists.
    pub fn pool_in_use(&self, socket: i32) -> Option<u32> {
        let pools = self.shared.pools.lock().ok()?;
        let (_, p) = pools.iter().find(|(s, _)| *s == socket)?;
        // SAFETY: the pool is alive while `shared` is.
        Some(unsafe { sys::rte_mempool_in_use_count(p.0.as_ptr()) })
    }

    pub(crate) fn shared(&self) -> &Arc<EalShared> {
        &self.shared
    }
}

/// Make the calling thread a DPDK lcore (`rte_thread_register`) so its
/// mempool gets and puts use a per-lcore cache, and return its lcore id.
/// Call at worker start, after pinning the thread to its core (DPDK records
/// the thread's affinity then). A thread that already has an lcore id (the
/// main thread, a registered worker) keeps it: DPDK 22.11 would hand out a
/// second one and leak the first.
pub fn register_worker_thread() -> Result<LcoreId, DriverError> {
    if !EAL_READY.load(Ordering::Acquire) {
        return Err(DriverError::Config(
            "dpdk: register_worker_thread before Eal::init".into(),
        ));
    }
    if let Some(id) = current_lcore() {
        return Ok(id);
    }
    // SAFETY: the EAL is initialised; registers only the calling thread.
    let ret = unsafe { sys::rte_thread_register() };
    if ret != 0 {
        return Err(dpdk_error("rte_thread_register", last_errno()));
    }
    current_lcore()
        .ok_or_else(|| DriverError::Config("dpdk: rte_thread_register gave no lcore id".into()))
}

/// Release the calling thread's lcore id (at worker exit).
pub fn unregister_worker_thread() {
    if EAL_READY.load(Ordering::Acquire) {
        // SAFETY: the EAL is initialised; a thread without an lcore id is
        // left as it is by DPDK.
        unsafe { sys::rte_thread_unregister() };
    }
}

/// The calling thread's lcore id, if it has one.
pub fn current_lcore() -> Option<LcoreId> {
    // SAFETY: reads the calling thread's TLS lcore id; no preconditions.
    let id = unsafe { sys::rvs_lcore_id() };
    (id != u32::MAX).then_some(LcoreId(id))
}

/// The PMD plugin directory the build found next to the DPDK libraries
/// (Debian: `<libdir>/dpdk/pmds-<ABI>`), if any. Debian's EAL loads it by
/// itself; give it as `-d <dir>` for a build that does not.
pub fn default_pmd_dir() -> Option<&'static str> {
    let d = env!("RVS_DPDK_PMD_DIR");
    (!d.is_empty()).then_some(d)
}

/// The DPDK version the bindings were generated from (pkg-config's).
pub fn dpdk_version() -> &'static str {
    env!("RVS_DPDK_VERSION")
}

/// `rte_errno` of the calling thread.
pub(crate) fn last_errno() -> i32 {
    // SAFETY: reads the calling thread's TLS rte_errno; no preconditions.
    unsafe { sys::rvs_errno() }
}

/// DPDK's text for an errno value (its own codes ≥ 1000 included).
pub(crate) fn errno_text(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string
    // (static or thread-local) valid until the next call on this thread;
    // it is copied at once.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            format!("error {errno}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// A [`DriverError`] for a failed DPDK call: an OS error when `errno` is an
/// OS code, a configuration error with DPDK's text otherwise.
pub(crate) fn dpdk_error(what: impl fmt::Display, errno: i32) -> DriverError {
    let errno = errno.abs();
    if errno > 0 && errno < sys::RTE_MIN_ERRNO as i32 {
        DriverError::os(
            format!("dpdk: {what}"),
            std::io::Error::from_raw_os_error(errno),
        )
    } else {
        DriverError::Config(format!("dpdk: {what}: {}", errno_text(errno)))
    }
}

/// The calling thread's CPU affinity mask.
fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// Restore the calling thread's CPU affinity mask.
fn set_thread_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread. A failure leaves the EAL's pinning in place.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}
