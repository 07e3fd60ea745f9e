//! Real-server schedulers: IPVS's fourteen algorithms (`rr wrr lc wlc lblc
//! lblcr dh sh sed nq fo ovf mh twos`), one file each, with no I/O.
//!
//! # What this module owns
//!
//! * The shared vocabulary: [`DestView`] (a real server as the snapshot
//!   describes it), [`DestLoad`] (one worker's counters for it, with the
//!   `-x/-y` threshold rules), [`FlowKey`] (what hashing schedulers key on),
//!   [`SchedError`].
//! * [`Scheduler`]: the **immutable, built** part of a service's scheduler.
//!   The control plane calls [`Scheduler::build`] (or
//!   [`Scheduler::build_with`]) whenever a service or its real servers change,
//!   and ships the result inside the `Arc`-shared snapshot. Everything costly
//!   is done there: the Maglev ring (mh), the 256-bucket tables (sh, dh), the
//!   WRR weight tree and its gcd/max inputs, the twos cumulative weights.
//!   `Scheduler` is `Send + Sync` and never mutated after the build.
//! * [`SchedState`]: the **per-worker mutable** part (rr cursor, wrr `cw` and
//!   position, twos RNG, lblc/lblcr caches). Each worker owns one per service
//!   ([`Scheduler::new_state`]); no locks, no sharing.
//!
//! Dispatch is static: [`Scheduler::pick`] is one `match` on a private enum,
//! never a trait object. `pick` never allocates, locks, logs or panics;
//! table-driven schedulers (dh, sh, mh) pick in O(1), wrr and twos in
//! O(log n); the load-based ones (lc, wlc, sed, nq, fo, ovf) read the root
//! of a per-worker tournament tree ([`least`]) in O(1), which the worker
//! keeps current in O(log n) per load change ([`SchedState::load_changed`]),
//! with exactly the choice of IPVS's scan; lblc/lblcr are O(1) on a cache
//! hit (their fallback is wlc's scan).
//!
//! # Destination order and ties (decided here, followed everywhere)
//!
//! The caller passes `dests` (and the parallel `load`) **in insertion order**:
//! `dests[0]` is the oldest real server of the service, `dests[n-1]` the most
//! recently added. IPVS `list_add`s new servers at the **head** of its list,
//! so every scheduler iterates `n-1, n-2, …, 0` — newest first — and every
//! "first in list" tie goes to the newest server, as in IPVS. Editing a
//! server (`-e`) keeps its position; deleting one removes it. `pick` returns
//! an index into `dests`. The slice must be the one the scheduler was built
//! from (same length, same order); a length mismatch yields `None`.
//!
//! Addresses are 16 bytes: IPv4 in `addr[0..4]` with the rest zero (Linux's
//! `union nf_inet_addr` layout), ports in host byte order. Hashing follows
//! IPVS bit for bit where it can (see [`hash`]): dh/sh/lblc use Linux's
//! `hash_32`, mh uses 64-bit Linux's `hsiphash` with IPVS's fixed keys and
//! hashes each real server by address + port (not by [`DestView::id`]), so two
//! directors fed the same configuration build the same ring. `DestView::id`
//! is the server's identity across snapshots: per-worker state (rr cursor,
//! lblc/lblcr cache entries) remembers `(index, id)` and re-finds a server by
//! id after a reconfiguration, lazily and without allocating.
//!
//! # Per-core load counters and what they mean for fairness
//!
//! Each worker counts active/inactive connections per real server **for its
//! own connections only** ([`DestLoad`]), and the load-based schedulers read
//! that per-core view. Each core therefore balances *its own share* of new
//! connections; the director-wide count of a server is the sum over cores.
//!
//! * With balanced steering every core sees the same mix, so the sum is
//!   balanced just as one shared counter would be.
//! * With skewed steering the error does **not** grow with the skew. For wlc
//!   with connections only arriving, a core only picks server `i` when
//!   `c_i/w_i` is minimal, so `(c_i − 1)/w_i ≤ c_j/w_j` holds on every core
//!   for every `j`; summing over `K` cores gives
//!   `C_i/w_i − C_j/w_j ≤ K/w_i`: every server is at most **K connections**
//!   (K = number of workers) above its weighted share relative to any other
//!   server, whether steering is 50/50 or 99/1 — the skew changes how many
//!   connections each core holds, not how evenly it spreads them.
//! * With departures (connections closing at random) the deviation is
//!   dominated by the churn itself, shared counter or not. The test
//!   `wlc_fairness_with_per_core_counters_under_skew` runs 4 servers of
//!   weights 1–4 at ~1,000 live connections: one shared counter deviates
//!   from the weighted share by 0.83 connections on average (max 7.0);
//!   2 workers at an 80/20 split by 1.27 (max 6.2). The test asserts the
//!   K bound on every step of an arrivals-only phase, and under churn a mean
//!   within 1 connection of the shared counter's and a maximum within 5·K.
//!   (Five seeds × {100, 1,000, 10,000} live connections measured while
//!   writing it: 80/20, 99/1 and 50/50 all add at most ≈ 0.45 connections of
//!   mean deviation over the shared counter; maxima 4.6–7.9 either way.)
//! * lc, sed and nq behave the same way (they are wlc with other cost
//!   functions). Thresholds (`-x/-y`), ovf's `active ≤ weight` and lblc's
//!   overload rule are evaluated on per-core counters too: a server reaches a
//!   per-core `u_threshold` only after `u` connections *on that core*, so a
//!   global `-x` must be shipped as [`per_core_threshold`] in the snapshot's
//!   `DestView`s if it is meant director-wide.
//!
//! # Time
//!
//! lblc and lblcr expire cache entries; the worker passes `now` (seconds, any
//! monotonic origin, wrapping arithmetic) to `pick`. Their garbage collection
//! runs inside `pick` at most once per 60 s (a bounded walk over the
//! per-worker cache), as IPVS's timer would.

#![deny(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

pub mod dh;
pub mod fo;
pub mod hash;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod least;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod threshold;
pub mod twos;
pub mod wlc;
pub mod wrr;

pub use lblc::LblcState;
pub use lblcr::LblcrState;
pub use least::{LeastKind, LeastTree};
pub use rr::RrState;
pub use threshold::{per_core_threshold, ConnKind, DestLoad};
pub use twos::TwosState;
pub use wrr::WrrState;

/// Every scheduler name, in ipvsadm's help order plus `twos`.
pub const SCHEDULER_NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHEDULER: &str = "wlc";

/// Largest real-server weight ipvsadm accepts (`-w 0..65535`).
pub const MAX_WEIGHT: u32 = 65_535;

/// A real server as the snapshot describes it to the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestView {
    /// Weight, 0..=65535. 0 = quiesced: no new connections.
    pub weight: u32,
    /// Upper connection threshold (`-x`), 0 = none; see [`DestLoad`].
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub l_threshold: u32,
    /// False while the server is being deleted: never picked.
    pub available: bool,
    /// Last non-zero weight (IPVS `last_weight`): mh gives a server
    /// `last_weight`-proportional slots, so a weight-0 server keeps its slots.
    pub last_weight: u32,
    /// Identity that survives snapshots (unique within a service).
    pub id: u32,
    /// Address; IPv4 in `addr[0..4]`, rest zero.
    pub addr: [u8; 16],
    /// Port, host byte order.
    pub port: u16,
}

impl DestView {
    /// An available IPv4 real server with `last_weight = weight`, no thresholds.
    pub fn v4(id: u32, addr: [u8; 4], port: u16, weight: u32) -> Self {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        Self {
            weight,
            u_threshold: 0,
            l_threshold: 0,
            available: true,
            last_weight: weight,
            id,
            addr: a,
            port,
        }
    }

    /// An available IPv6 real server with `last_weight = weight`, no thresholds.
    pub fn v6(id: u32, addr: [u8; 16], port: u16, weight: u32) -> Self {
        Self {
            addr,
            ..Self::v4(id, [0; 4], port, weight)
        }
    }
}

/// What the hashing schedulers key on: the client (source) and the packet's
/// destination. For a reply-direction ("inverse") packet the caller swaps
/// them so that `saddr`/`sport` are always the client's, as IPVS does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address (sh, mh key).
    pub saddr: [u8; 16],
    /// Client port, host order (sh-port / mh-port).
    pub sport: u16,
    /// Packet destination address (dh, lblc, lblcr key).
    pub daddr: [u8; 16],
    /// IPv6 flow (addresses folded over all 16 bytes).
    pub v6: bool,
}

impl FlowKey {
    /// An IPv4 flow key.
    pub fn v4(saddr: [u8; 4], sport: u16, daddr: [u8; 4]) -> Self {
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&saddr);
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&daddr);
        Self {
            saddr: s,
            sport,
            daddr: d,
            v6: false,
        }
    }

    /// An IPv6 flow key.
    pub fn v6(saddr: [u8; 16], sport: u16, daddr: [u8; 16]) -> Self {
        Self {
            saddr,
            sport,
            daddr,
            v6: true,
        }
    }
}

/// `ip_vs_dest_conn_overhead`: `active*256 + inactive`.
#[inline]
pub fn overhead(load: &DestLoad) -> u64 {
    (u64::from(load.active) << 8) + u64::from(load.inactive)
}

/// IPVS eligibility for a new connection: available, `weight > 0`, OVERLOAD
/// clear.
#[inline]
pub fn is_eligible(dest: &DestView, load: &DestLoad) -> bool {
    dest.available && dest.weight > 0 && !load.overloaded
}

/// Errors of building a scheduler (control plane only; `pick` has none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The name is not one of [`SCHEDULER_NAMES`].
    #[error("unknown scheduler `{0}` (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)")]
    UnknownScheduler(String),
    /// ipvsadm: "invalid scheduler flag".
    #[error("invalid scheduler flag `{0}` (expected sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2 or flag-3)")]
    UnknownFlag(String),
    /// ipvsadm: "incompatible scheduler flag" (e.g. `sh-port` with `wlc`).
    #[error("incompatible scheduler flag `{flag}` for scheduler `{scheduler}`")]
    IncompatibleFlag {
        /// The flag as given.
        flag: String,
        /// The scheduler it was given with.
        scheduler: &'static str,
    },
    /// The Maglev table size is not one of [`mh::TABLE_SIZES`].
    #[error("mh table size {0} is not one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537, 131071")]
    BadMhTableSize(u32),
    /// More real servers than Maglev slots (IPVS: `-EINVAL`).
    #[error("{dests} real servers do not fit an mh table of {size} slots")]
    TooManyDests {
        /// Number of real servers.
        dests: usize,
        /// Table size.
        size: u32,
    },
    /// A weight or last weight above 65535.
    #[error("real server #{index} has weight {weight}; weights are 0..=65535")]
    WeightOutOfRange {
        /// Index in `dests`.
        index: usize,
        /// The offending value.
        weight: u32,
    },
    /// Two real servers of one service share an id.
    #[error("real server id {0} appears twice in one service")]
    DuplicateDestId(u32),
    /// A cache parameter of lblc/lblcr is zero or inconsistent.
    #[error("invalid locality cache parameters: {0}")]
    BadLocalityParams(&'static str),
}

/// Which algorithm a [`Scheduler`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedKind {
    /// Round robin.
    Rr,
    /// Weighted round robin (interleaved).
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted fail-over.
    Fo,
    /// Overflow connection.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Power of two choices.
    Twos,
}

impl SchedKind {
    /// All kinds, in [`SCHEDULER_NAMES`] order.
    pub const ALL: [SchedKind; 14] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Lblc,
        SchedKind::Lblcr,
        SchedKind::Dh,
        SchedKind::Sh,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Fo,
        SchedKind::Ovf,
        SchedKind::Mh,
        SchedKind::Twos,
    ];

    /// The ipvsadm name (`-s NAME`).
    pub fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Lblc => "lblc",
            SchedKind::Lblcr => "lblcr",
            SchedKind::Dh => "dh",
            SchedKind::Sh => "sh",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Fo => "fo",
            SchedKind::Ovf => "ovf",
            SchedKind::Mh => "mh",
            SchedKind::Twos => "twos",
        }
    }

    /// Parses an ipvsadm scheduler name (exact, lower case, as the kernel
    /// matches it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Scheduler flags (`-b a,b`): IPVS's three generic bits
/// (`IP_VS_SVC_F_SCHED1..3`), which sh and mh name `*-fallback` and `*-port`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags(u8);

impl SchedFlags {
    /// `flag-1` = `sh-fallback` / `mh-fallback` (`IP_VS_SVC_F_SCHED1`).
    pub const FLAG1: u8 = 1;
    /// `flag-2` = `sh-port` / `mh-port` (`IP_VS_SVC_F_SCHED2`).
    pub const FLAG2: u8 = 2;
    /// `flag-3` (`IP_VS_SVC_F_SCHED3`), unused by every scheduler.
    pub const FLAG3: u8 = 4;

    /// From raw bits ([`Self::FLAG1`] | …); unknown bits are dropped.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & (Self::FLAG1 | Self::FLAG2 | Self::FLAG3))
    }

    /// Raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// No flag set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// sh/mh fallback (flag 1).
    pub fn fallback(self) -> bool {
        self.0 & Self::FLAG1 != 0
    }

    /// sh/mh hash the client port too (flag 2).
    pub fn port(self) -> bool {
        self.0 & Self::FLAG2 != 0
    }

    /// Parses ipvsadm flag words for `kind`, like `parse_sched_flags`: each
    /// element may itself be a comma-separated list; empty words are ignored;
    /// `sh-*` only with sh, `mh-*` only with mh; `flag-N` with any scheduler.
    pub fn parse(kind: SchedKind, words: &[&str]) -> Result<Self, SchedError> {
        let mut bits = 0u8;
        for word in words.iter().flat_map(|w| w.split(',')) {
            let word = word.trim();
            let (bit, only) = match word {
                "" => continue,
                "flag-1" => (Self::FLAG1, None),
                "flag-2" => (Self::FLAG2, None),
                "flag-3" => (Self::FLAG3, None),
                "sh-fallback" => (Self::FLAG1, Some(SchedKind::Sh)),
                "sh-port" => (Self::FLAG2, Some(SchedKind::Sh)),
                "mh-fallback" => (Self::FLAG1, Some(SchedKind::Mh)),
                "mh-port" => (Self::FLAG2, Some(SchedKind::Mh)),
                other => return Err(SchedError::UnknownFlag(other.to_string())),
            };
            if only.is_some_and(|k| k != kind) {
                return Err(SchedError::IncompatibleFlag {
                    flag: word.to_string(),
                    scheduler: kind.name(),
                });
            }
            bits |= bit;
        }
        Ok(Self(bits))
    }

    /// The flag names ipvsadm prints for `kind`, in bit order
    /// (e.g. `["sh-fallback", "sh-port"]`).
    pub fn names(self, kind: SchedKind) -> Vec<&'static str> {
        let (n1, n2) = match kind {
            SchedKind::Sh => ("sh-fallback", "sh-port"),
            SchedKind::Mh => ("mh-fallback", "mh-port"),
            _ => ("flag-1", "flag-2"),
        };
        [
            (Self::FLAG1, n1),
            (Self::FLAG2, n2),
            (Self::FLAG3, "flag-3"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.0 & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

/// Build-time options beyond name and flags (control plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Maglev table size M, one of [`mh::TABLE_SIZES`]; default
    /// [`mh::DEFAULT_TABLE_SIZE`] (4093, IPVS's `CONFIG_IP_VS_MH_TAB_INDEX=12`).
    pub mh_table_size: u32,
    /// lblc/lblcr cache parameters (IPVS defaults).
    pub locality: LocalityParams,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            mh_table_size: mh::DEFAULT_TABLE_SIZE,
            locality: LocalityParams::default(),
        }
    }
}

/// lblc/lblcr cache parameters. Defaults are IPVS's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalityParams {
    /// Hash buckets, a power of two (IPVS: `1 << CONFIG_IP_VS_LBLC_TAB_BITS`
    /// = 1024).
    pub buckets: u32,
    /// IPVS `max_size` (16 × buckets): above it, GC drops idle entries.
    pub max_entries: u32,
    /// Entries preallocated per worker (a hard bound: IPVS's table is
    /// unbounded, rvs's cannot allocate in `pick`). Default max + 25 %.
    pub capacity: u32,
    /// GC period (IPVS `CHECK_EXPIRE_INTERVAL`, 60 s).
    pub gc_interval_secs: u32,
    /// Idle time after which GC may drop an entry when over `max_entries`
    /// (IPVS `ENTRY_TIMEOUT`, 6 min).
    pub entry_timeout_secs: u32,
    /// Every this many GC runs, a full check drops entries idle longer than
    /// `expiration_secs` (IPVS `COUNT_FOR_FULL_EXPIRATION`, 30).
    pub full_check_every: u32,
    /// `lblc_expiration` / `lblcr_expiration` sysctl (default 24 h). For
    /// lblcr it is also the age after which a multi-server set sheds its
    /// most loaded member.
    pub expiration_secs: u32,
}

impl Default for LocalityParams {
    fn default() -> Self {
        Self {
            buckets: 1024,
            max_entries: 16 * 1024,
            capacity: 20 * 1024,
            gc_interval_secs: 60,
            entry_timeout_secs: 6 * 60,
            full_check_every: 30,
            expiration_secs: 24 * 60 * 60,
        }
    }
}

impl LocalityParams {
    fn validate(&self) -> Result<(), SchedError> {
        if self.buckets == 0 || !self.buckets.is_power_of_two() {
            return Err(SchedError::BadLocalityParams(
                "buckets must be a power of two",
            ));
        }
        if self.capacity == 0 || self.capacity >= u32::MAX / 2 {
            return Err(SchedError::BadLocalityParams("capacity must be in 1..2^31"));
        }
        if self.max_entries == 0 || self.full_check_every == 0 || self.gc_interval_secs == 0 {
            return Err(SchedError::BadLocalityParams(
                "max_entries, full_check_every and gc_interval_secs must be > 0",
            ));
        }
        Ok(())
    }
}

/// The built algorithm and its immutable tables.
#[derive(Debug)]
enum Algorithm {
    Rr,
    Wrr(wrr::WrrTable),
    Lc,
    Wlc,
    Sed,
    Nq,
    Dh(dh::DhTable),
    Sh(sh::ShTable),
    Lblc(LocalityParams),
    Lblcr(LocalityParams),
    Fo,
    Ovf,
    Mh(mh::MhTable),
    Twos(twos::TwosTable),
}

/// A service's scheduler: algorithm, flags and prebuilt tables. Immutable
/// after [`Scheduler::build`]; share it in the snapshot.
#[derive(Debug)]
pub struct Scheduler {
    algo: Algorithm,
    flags: SchedFlags,
    n_dests: usize,
}

/// Per-worker mutable scheduler state for one service. Create it with
/// [`Scheduler::new_state`] (lblc/lblcr allocate their cache there, off the
/// packet path) and keep it across snapshots with [`Scheduler::refresh_state`].
#[derive(Debug)]
pub enum SchedState {
    /// dh, sh, mh: nothing to remember.
    Stateless,
    /// lc, wlc, sed, nq, fo, ovf: the tournament tree over the servers.
    Least(LeastTree),
    /// rr cursor.
    Rr(RrState),
    /// wrr current weight and position.
    Wrr(WrrState),
    /// lblc daddr → server cache.
    Lblc(Box<LblcState>),
    /// lblcr daddr → server-set cache.
    Lblcr(Box<LblcrState>),
    /// twos random generator.
    Twos(TwosState),
}

static NEXT_SEED: AtomicU64 = AtomicU64::new(0x005e_ed0f_7e05);
static NEXT_BUILD_ID: AtomicU64 = AtomicU64::new(1);

impl Scheduler {
    /// Builds the scheduler `name` with ipvsadm flag words `flags` for
    /// `dests` (insertion order) with default [`BuildOptions`].
    pub fn build(name: &str, flags: &[&str], dests: &[DestView]) -> Result<Self, SchedError> {
        Self::build_with(name, flags, dests, &BuildOptions::default())
    }

    /// As [`Scheduler::build`], with explicit options (Maglev size, cache
    /// parameters).
    pub fn build_with(
        name: &str,
        flags: &[&str],
        dests: &[DestView],
        opts: &BuildOptions,
    ) -> Result<Self, SchedError> {
        let kind =
            SchedKind::from_name(name).ok_or_else(|| SchedError::UnknownScheduler(name.into()))?;
        let flags = SchedFlags::parse(kind, flags)?;
        validate_dests(dests)?;
        let algo = match kind {
            SchedKind::Rr => Algorithm::Rr,
            SchedKind::Wrr => Algorithm::Wrr(wrr::WrrTable::build(
                dests,
                NEXT_BUILD_ID.fetch_add(1, Ordering::Relaxed),
            )),
            SchedKind::Lc => Algorithm::Lc,
            SchedKind::Wlc => Algorithm::Wlc,
            SchedKind::Sed => Algorithm::Sed,
            SchedKind::Nq => Algorithm::Nq,
            SchedKind::Dh => Algorithm::Dh(dh::DhTable::build(dests)),
            SchedKind::Sh => Algorithm::Sh(sh::ShTable::build(dests)),
            SchedKind::Lblc => {
                opts.locality.validate()?;
                Algorithm::Lblc(opts.locality)
            }
            SchedKind::Lblcr => {
                opts.locality.validate()?;
                Algorithm::Lblcr(opts.locality)
            }
            SchedKind::Fo => Algorithm::Fo,
            SchedKind::Ovf => Algorithm::Ovf,
            SchedKind::Mh => Algorithm::Mh(mh::MhTable::build(dests, opts.mh_table_size)?),
            SchedKind::Twos => Algorithm::Twos(twos::TwosTable::build(dests)),
        };
        Ok(Self {
            algo,
            flags,
            n_dests: dests.len(),
        })
    }

    /// The algorithm.
    pub fn kind(&self) -> SchedKind {
        match self.algo {
            Algorithm::Rr => SchedKind::Rr,
            Algorithm::Wrr(_) => SchedKind::Wrr,
            Algorithm::Lc => SchedKind::Lc,
            Algorithm::Wlc => SchedKind::Wlc,
            Algorithm::Sed => SchedKind::Sed,
            Algorithm::Nq => SchedKind::Nq,
            Algorithm::Dh(_) => SchedKind::Dh,
            Algorithm::Sh(_) => SchedKind::Sh,
            Algorithm::Lblc(_) => SchedKind::Lblc,
            Algorithm::Lblcr(_) => SchedKind::Lblcr,
            Algorithm::Fo => SchedKind::Fo,
            Algorithm::Ovf => SchedKind::Ovf,
            Algorithm::Mh(_) => SchedKind::Mh,
            Algorithm::Twos(_) => SchedKind::Twos,
        }
    }

    /// The ipvsadm name (`wlc`, `mh`, …).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The flags.
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }

    /// The flag names as ipvsadm prints them (`-L`, `-S`).
    pub fn flag_names(&self) -> Vec<&'static str> {
        self.flags.names(self.kind())
    }

    /// Number of real servers the scheduler was built for.
    pub fn dest_count(&self) -> usize {
        self.n_dests
    }

    /// The prebuilt lookup table, for inspection: mh's Maglev ring (M slots)
    /// or sh/dh's 256 buckets, each an index into `dests` or [`EMPTY_SLOT`].
    pub fn table(&self) -> Option<&[u32]> {
        match &self.algo {
            Algorithm::Mh(t) => Some(t.slots()),
            Algorithm::Sh(t) => Some(t.buckets()),
            Algorithm::Dh(t) => Some(t.buckets()),
            _ => None,
        }
    }

    /// A fresh per-worker state for this scheduler. lblc/lblcr allocate their
    /// preallocated cache here (`capacity` entries): call it off the packet
    /// path. twos states get distinct seeds.
    pub fn new_state(&self) -> SchedState {
        match &self.algo {
            Algorithm::Rr => SchedState::Rr(RrState::default()),
            Algorithm::Wrr(t) => SchedState::Wrr(WrrState::new(t)),
            Algorithm::Lblc(p) => SchedState::Lblc(Box::new(LblcState::new(p))),
            Algorithm::Lblcr(p) => SchedState::Lblcr(Box::new(LblcrState::new(p))),
            Algorithm::Twos(_) => SchedState::Twos(TwosState::with_seed(splitmix64(
                NEXT_SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
            ))),
            algo => match least_kind(algo) {
                Some(k) => SchedState::Least(LeastTree::new(k, self.n_dests)),
                None => SchedState::Stateless,
            },
        }
    }

    /// Adapts a worker's state to this (new) scheduler when it adopts a new
    /// snapshot: same algorithm → kept (wrr applies IPVS's `dest_changed`
    /// rule, rr and the lblc/lblcr caches re-find servers by id lazily);
    /// another algorithm or other cache parameters → replaced by
    /// [`Scheduler::new_state`] (which may allocate).
    pub fn refresh_state(&self, state: &mut SchedState) {
        let keep = match (&self.algo, &mut *state) {
            (Algorithm::Rr, SchedState::Rr(_)) | (Algorithm::Twos(_), SchedState::Twos(_)) => true,
            (Algorithm::Wrr(t), SchedState::Wrr(s)) => {
                s.rebind(t);
                true
            }
            (Algorithm::Lblc(p), SchedState::Lblc(s)) => s.params() == p,
            (Algorithm::Lblcr(p), SchedState::Lblcr(s)) => s.params() == p,
            (algo, SchedState::Least(t)) => {
                // Weights or servers may have changed: rebuild on next pick.
                t.invalidate();
                least_kind(algo) == Some(t.kind()) && t.capacity() == self.n_dests
            }
            (algo, SchedState::Stateless) => {
                matches!(algo, Algorithm::Dh(_) | Algorithm::Sh(_) | Algorithm::Mh(_))
            }
            _ => false,
        };
        if !keep {
            *state = self.new_state();
        }
    }

    /// Picks the real server for a new connection: an index into `dests`, or
    /// `None` when no server is available ("no destination available").
    ///
    /// `dests` and `load` are parallel slices in insertion order (see the
    /// module doc); `load` is this worker's counters; `now` is the worker's
    /// clock in seconds (used by lblc/lblcr only). Never allocates or panics.
    /// A `state` of the wrong kind (the caller skipped
    /// [`Scheduler::refresh_state`]) is reset in place for rr/wrr/twos;
    /// lblc/lblcr then schedule by wlc without caching.
    #[inline]
    pub fn pick(
        &self,
        state: &mut SchedState,
        dests: &[DestView],
        load: &[DestLoad],
        flow: &FlowKey,
        now: u32,
    ) -> Option<usize> {
        if dests.len() != self.n_dests || load.len() != dests.len() {
            return None;
        }
        match &self.algo {
            Algorithm::Rr => {
                if !matches!(state, SchedState::Rr(_)) {
                    *state = SchedState::Rr(RrState::default());
                }
                match state {
                    SchedState::Rr(s) => rr::pick(s, dests, load),
                    _ => None,
                }
            }
            Algorithm::Wrr(t) => {
                if !matches!(state, SchedState::Wrr(_)) {
                    *state = SchedState::Wrr(WrrState::new(t));
                }
                match state {
                    SchedState::Wrr(s) => t.pick(s, dests, load),
                    _ => None,
                }
            }
            Algorithm::Lc | Algorithm::Wlc | Algorithm::Sed | Algorithm::Nq => {
                self.pick_least(state, dests, load)
            }
            Algorithm::Dh(t) => t.pick(dests, load, flow),
            Algorithm::Sh(t) => t.pick(dests, load, flow, self.flags),
            Algorithm::Lblc(_) => match state {
                SchedState::Lblc(s) => s.pick(dests, load, flow, now),
                _ => wlc::pick(dests, load),
            },
            Algorithm::Lblcr(_) => match state {
                SchedState::Lblcr(s) => s.pick(dests, load, flow, now),
                _ => wlc::pick(dests, load),
            },
            Algorithm::Fo | Algorithm::Ovf => self.pick_least(state, dests, load),
            Algorithm::Mh(t) => t.pick(dests, load, flow, self.flags),
            Algorithm::Twos(t) => {
                if !matches!(state, SchedState::Twos(_)) {
                    *state = SchedState::Twos(TwosState::with_seed(0x7705));
                }
                match state {
                    SchedState::Twos(s) => t.pick(s, dests, load),
                    _ => None,
                }
            }
        }
    }
}

impl Scheduler {
    /// The least-connection family: the tree's root when `state` is this
    /// scheduler's tree, else (a caller that skipped
    /// [`Scheduler::refresh_state`]) the scan, which never allocates.
    #[inline]
    fn pick_least(
        &self,
        state: &mut SchedState,
        dests: &[DestView],
        load: &[DestLoad],
    ) -> Option<usize> {
        let kind = least_kind(&self.algo)?;
        match state {
            SchedState::Least(t) if t.kind() == kind && t.capacity() == dests.len() => {
                let got = t.pick(dests, load);
                debug_assert_eq!(
                    got,
                    scan(kind, dests, load),
                    "{kind:?} tree is stale: a load change was not reported"
                );
                got
            }
            _ => scan(kind, dests, load),
        }
    }
}

impl SchedState {
    /// Tell the scheduler state that this worker's `load[i]` (`active`,
    /// `inactive` or `overloaded`) changed. The least-connection family
    /// replays server `i`'s path in its tree, O(log n), no allocation; other
    /// states ignore it. Call it after every such change, with the same
    /// `load` slice that is passed to [`Scheduler::pick`].
    #[inline]
    pub fn load_changed(&mut self, load: &[DestLoad], i: usize) {
        if let SchedState::Least(t) = self {
            t.load_changed(load, i);
        }
    }
}

/// The tree order of a least-connection algorithm.
fn least_kind(algo: &Algorithm) -> Option<LeastKind> {
    Some(match algo {
        Algorithm::Lc => LeastKind::Lc,
        Algorithm::Wlc => LeastKind::Wlc,
        Algorithm::Sed => LeastKind::Sed,
        Algorithm::Nq => LeastKind::Nq,
        Algorithm::Fo => LeastKind::Fo,
        Algorithm::Ovf => LeastKind::Ovf,
        _ => return None,
    })
}

/// IPVS's O(n) scan for `kind` (the reference the tree must equal).
#[inline]
pub fn scan(kind: LeastKind, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    match kind {
        LeastKind::Lc => lc::pick(dests, load),
        LeastKind::Wlc => wlc::pick(dests, load),
        LeastKind::Sed => sed::pick(dests, load),
        LeastKind::Nq => nq::pick(dests, load),
        LeastKind::Fo => fo::pick(dests, load),
        LeastKind::Ovf => ovf::pick(dests, load),
    }
}

/// Marks an empty slot in [`Scheduler::table`].
pub const EMPTY_SLOT: u32 = u32::MAX;

fn validate_dests(dests: &[DestView]) -> Result<(), SchedError> {
    for (index, d) in dests.iter().enumerate() {
        for weight in [d.weight, d.last_weight] {
            if weight > MAX_WEIGHT {
                return Err(SchedError::WeightOutOfRange { index, weight });
            }
        }
    }
    let mut ids: Vec<u32> = dests.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(SchedError::DuplicateDestId(w[0]));
    }
    Ok(())
}

/// Indices of `n` servers in IPVS list order: newest (`n-1`) first.
#[inline]
pub(crate) fn list_order(n: usize) -> std::iter::Rev<std::ops::Range<usize>> {
    (0..n).rev()
}

/// Re-finds a server remembered as `(index, id)`: the index if it still
/// holds that id, else a linear search by id (after a reconfiguration).
#[inline]
pub(crate) fn resolve(dests: &[DestView], index: u32, id: u32) -> Option<usize> {
    let i = index as usize;
    match dests.get(i) {
        Some(d) if d.id == id => Some(i),
        _ => dests.iter().position(|d| d.id == id),
    }
}

/// `a * b > c * d` for IPVS's cross-multiplied compares. `a`, `c` are
/// overheads (< 2^41: `u32::MAX * 256 + u32::MAX`), `b`, `d` weights clamped
/// to [`MAX_WEIGHT`] (validated at build anyway), so the products stay below
/// 2^57 and never overflow.
#[inline]
pub(crate) fn cross_gt(a: u64, b: u32, c: u64, d: u32) -> bool {
    a * u64::from(b.min(MAX_WEIGHT)) > c * u64::from(d.min(MAX_WEIGHT))
}

/// SplitMix64 finaliser (seed mixing).
#[inline]
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// `n` available IPv4 servers 10.0.x.y:80 with the given weights, ids
    /// 100.., in insertion order.
    pub fn dests(weights: &[u32]) -> Vec<DestView> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| DestView::v4(100 + i as u32, [10, 0, (i >> 8) as u8, i as u8], 80, w))
            .collect()
    }

    /// Idle loads for `n` servers.
    pub fn idle(n: usize) -> Vec<DestLoad> {
        vec![DestLoad::default(); n]
    }

    /// Loads with the given active counts.
    pub fn active(counts: &[u32]) -> Vec<DestLoad> {
        counts
            .iter()
            .map(|&a| DestLoad {
                active: a,
                ..DestLoad::default()
            })
            .collect()
    }

    /// Client `i` → 192.x.y.z:(1024 + i), destination 10.1.y.z.
    pub fn flow(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        FlowKey::v4(
            [192, b[1], b[2], b[3]],
            1024 + (i % 60000) as u16,
            [10, 1, b[2], b[3]],
        )
    }

    /// Deterministic xorshift for simulations.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn below(&mut self, n: u64) -> u64 {
            ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn scheduler_is_send_sync_and_state_is_send() {
        assert_send_sync::<Scheduler>();
        assert_send::<SchedState>();
    }

    #[test]
    fn unknown_scheduler_is_an_error() {
        let d = dests(&[1, 1]);
        assert_eq!(
            Scheduler::build("wrrr", &[], &d).unwrap_err(),
            SchedError::UnknownScheduler("wrrr".into())
        );
        assert!(Scheduler::build("WLC", &[], &d).is_err(), "names are exact");
        assert!(Scheduler::build("", &[], &d).is_err());
        for name in SCHEDULER_NAMES {
            let s = Scheduler::build(name, &[], &d).expect("every listed name builds");
            assert_eq!(s.name(), name);
        }
    }

    #[test]
    fn flags_are_checked_and_printed_like_ipvsadm() {
        let d = dests(&[1]);
        assert_eq!(
            Scheduler::build("wlc", &["sh-port"], &d).unwrap_err(),
            SchedError::IncompatibleFlag {
                flag: "sh-port".into(),
                scheduler: "wlc"
            }
        );
        assert_eq!(
            Scheduler::build("sh", &["mh-port"], &d).unwrap_err(),
            SchedError::IncompatibleFlag {
                flag: "mh-port".into(),
                scheduler: "sh"
            }
        );
        assert_eq!(
            Scheduler::build("sh", &["sh-prot"], &d).unwrap_err(),
            SchedError::UnknownFlag("sh-prot".into())
        );
        let sh = Scheduler::build("sh", &["sh-port,sh-fallback"], &d).expect("valid");
        assert!(sh.flags().port() && sh.flags().fallback());
        assert_eq!(sh.flag_names(), vec!["sh-fallback", "sh-port"]);
        let mh = Scheduler::build("mh", &["flag-2", "mh-fallback"], &d).expect("valid");
        assert_eq!(mh.flag_names(), vec!["mh-fallback", "mh-port"]);
        let rr = Scheduler::build("rr", &["flag-3"], &d).expect("flag-N fits any");
        assert_eq!(rr.flag_names(), vec!["flag-3"]);
    }

    #[test]
    fn bad_dests_are_rejected() {
        let mut d = dests(&[1, 2]);
        d[1].weight = 65_536;
        assert_eq!(
            Scheduler::build("wlc", &[], &d).unwrap_err(),
            SchedError::WeightOutOfRange {
                index: 1,
                weight: 65_536
            }
        );
        let mut d = dests(&[1, 2]);
        d[1].id = d[0].id;
        assert_eq!(
            Scheduler::build("rr", &[], &d).unwrap_err(),
            SchedError::DuplicateDestId(100)
        );
    }

    #[test]
    fn every_scheduler_returns_none_without_servers_or_on_mismatched_slices() {
        for name in SCHEDULER_NAMES {
            let s = Scheduler::build(name, &[], &[]).expect("builds empty");
            let mut st = s.new_state();
            assert_eq!(s.pick(&mut st, &[], &[], &flow(1), 0), None, "{name}");
            let d = dests(&[1, 1]);
            let s = Scheduler::build(name, &[], &d).expect("builds");
            let mut st = s.new_state();
            assert_eq!(s.pick(&mut st, &d, &idle(1), &flow(1), 0), None, "{name}");
            assert_eq!(
                s.pick(&mut st, &d[..1], &idle(1), &flow(1), 0),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn weight_zero_gets_no_new_connections() {
        // Server #1 is quiesced (weight 0, last weight 3); the others serve.
        let mut d = dests(&[2, 0, 3, 1]);
        d[1].last_weight = 3;
        for name in SCHEDULER_NAMES {
            for flags in [&[][..], &["flag-1"][..]] {
                let s = Scheduler::build(name, flags, &d).expect("builds");
                let mut st = s.new_state();
                let load = idle(d.len());
                let mut picked_any = false;
                for i in 0..2_000 {
                    let got = s.pick(&mut st, &d, &load, &flow(i), i);
                    assert_ne!(got, Some(1), "{name} {flags:?} picked the quiesced server");
                    picked_any |= got.is_some();
                }
                assert!(picked_any, "{name} never picked anything");
            }
        }
    }

    #[test]
    fn unavailable_servers_get_no_new_connections() {
        let mut d = dests(&[1, 1, 1]);
        d[2].available = false;
        for name in SCHEDULER_NAMES {
            let s = Scheduler::build(name, &["flag-1"], &d).expect("builds");
            let mut st = s.new_state();
            let load = idle(3);
            for i in 0..500 {
                assert_ne!(s.pick(&mut st, &d, &load, &flow(i), i), Some(2), "{name}");
            }
        }
    }

    #[test]
    fn refresh_state_keeps_or_replaces_by_kind() {
        let d = dests(&[1, 1]);
        let rr = Scheduler::build("rr", &[], &d).expect("builds");
        let lblc = Scheduler::build("lblc", &[], &d).expect("builds");
        let mut st = rr.new_state();
        lblc.refresh_state(&mut st);
        assert!(matches!(st, SchedState::Lblc(_)));
        rr.refresh_state(&mut st);
        assert!(matches!(st, SchedState::Rr(_)));
        // A wrong-kind state still schedules (wlc, uncached) without panicking.
        let mut wrong = SchedState::Stateless;
        assert_eq!(lblc.pick(&mut wrong, &d, &idle(2), &flow(0), 0), Some(1));
    }

    /// Per-core wlc under 80/20 steering: see the module doc for the bound.
    #[test]
    fn wlc_fairness_with_per_core_counters_under_skew() {
        const K: usize = 2;
        let weights = [1u32, 2, 3, 4];
        let w_total: u32 = weights.iter().sum();
        let d = dests(&weights);
        let n = d.len();
        let s = Scheduler::build("wlc", &[], &d).expect("builds");
        let mut states: Vec<SchedState> = (0..K).map(|_| s.new_state()).collect();
        let mut loads: Vec<Vec<DestLoad>> = vec![idle(n); K];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // 80 % of new connections are steered to worker 0.
        let steer = |rng: &mut Rng| usize::from(rng.below(100) >= 80);
        let global = |loads: &[Vec<DestLoad>]| -> Vec<i64> {
            (0..n)
                .map(|i| loads.iter().map(|l| i64::from(l[i].active)).sum())
                .collect()
        };
        // Deviation of each server from its weighted share, in connections.
        let deviation = |c: &[i64]| -> f64 {
            let sum: i64 = c.iter().sum();
            (0..n)
                .map(|i| {
                    (c[i] as f64 - sum as f64 * f64::from(weights[i]) / f64::from(w_total)).abs()
                })
                .fold(0.0, f64::max)
        };

        // Phase 1: arrivals only. Proven: C_i*w_j - C_j*w_i <= K*w_j.
        let mut per_worker = [0u32; K];
        for step in 0..20_000u32 {
            let k = steer(&mut rng);
            per_worker[k] += 1;
            let i = s
                .pick(&mut states[k], &d, &loads[k], &flow(step), step)
                .expect("server");
            loads[k][i].bind(ConnKind::Active, &d[i]);
            states[k].load_changed(&loads[k], i);
            let c = global(&loads);
            for a in 0..n {
                for b in 0..n {
                    let lhs = c[a] * i64::from(weights[b]) - c[b] * i64::from(weights[a]);
                    assert!(
                        lhs <= K as i64 * i64::from(weights[b]),
                        "step {step}: {c:?} breaks the K bound between {a} and {b}"
                    );
                }
            }
        }
        assert!(
            per_worker[0] > 3 * per_worker[1],
            "steering is skewed: {per_worker:?}"
        );
        let arrivals_dev = deviation(&global(&loads));

        // Phase 2: churn around ~1000 live connections (departure
        // probability proportional to the live count), per-core counters at
        // 80/20 against one shared counter fed the same random stream.
        let churn = |workers: usize, skew: u64| -> (f64, f64, usize) {
            let mut states: Vec<SchedState> = (0..workers).map(|_| s.new_state()).collect();
            let mut loads: Vec<Vec<DestLoad>> = vec![idle(n); workers];
            let mut rng = Rng(0x0dd_ba11);
            let mut live: Vec<(usize, usize)> = Vec::new(); // (worker, server)
            let (mut max, mut total) = (0f64, 0f64);
            let steps = 200_000u32;
            for step in 0..steps {
                if !live.is_empty() && rng.below(2_000) < live.len() as u64 {
                    let (k, i) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    loads[k][i].unbind(ConnKind::Active, &d[i]);
                    states[k].load_changed(&loads[k], i);
                } else {
                    let k = usize::from(rng.below(100) >= skew).min(workers - 1);
                    let i = s
                        .pick(&mut states[k], &d, &loads[k], &flow(step), step)
                        .expect("server");
                    loads[k][i].bind(ConnKind::Active, &d[i]);
                    states[k].load_changed(&loads[k], i);
                    live.push((k, i));
                }
                let dev = deviation(&global(&loads));
                max = max.max(dev);
                total += dev;
            }
            (max, total / f64::from(steps), live.len())
        };
        let (shared_max, shared_mean, _) = churn(1, 100);
        let (core_max, core_mean, live) = churn(K, 80);
        assert!(live > 800, "steady state reached ({live} live)");
        assert!(
            core_mean <= shared_mean + 1.0,
            "per-core mean deviation {core_mean:.2} vs shared {shared_mean:.2}"
        );
        assert!(
            core_max <= 5.0 * K as f64,
            "per-core max deviation {core_max:.2} > 5K"
        );
        eprintln!(
            "wlc K={K} 80/20: arrivals-only final deviation {arrivals_dev:.2}; churn deviation \
             per-core mean {core_mean:.2} max {core_max:.2}, shared counter mean {shared_mean:.2} \
             max {shared_max:.2} (connections)"
        );
    }
}
