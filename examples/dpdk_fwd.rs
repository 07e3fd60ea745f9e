//! The I/O ceiling of rvs's DPDK driver: a bare forwarding loop through
//! `DpdkQueue` (rx_burst from a `net_pcap` replaying a capture forever →
//! tx_burst into `net_null`), to set beside `dpdk-testpmd --forward-mode=io`
//! on the same devices and the same core.
//!
//! ```text
//! cargo run --release --features dpdk --example dpdk_fwd -- \
//!     [--seconds 5] [--core 1] [--size 64] [--pcap FILE] [--null-rx]
//! ```
//!
//! Without `--pcap` it writes `/tmp/rvs_dpdk_fwd_<size>.pcap` (1024 UDP
//! frames of `--size` bytes including the 4-byte CRC, like testpmd's
//! `--txpkts`). `--null-rx` receives from a second `net_null` instead (the
//! null-to-null figure). Prints packets, drops and Mpps.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapPacket, PcapWriter};
use rvs::dataplane::driver::dpdk::{DpdkDriver, Eal};
use rvs::dataplane::driver::{Burst, Driver, PortQueue};

struct Opts {
    seconds: f64,
    core: u32,
    size: usize,
    pcap: Option<PathBuf>,
    null_rx: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 5.0,
        core: 1,
        size: 64,
        pcap: None,
        null_rx: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                o.seconds = val("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--core" => o.core = val("--core")?.parse().map_err(|e| format!("--core: {e}"))?,
            "--size" => o.size = val("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--pcap" => o.pcap = Some(PathBuf::from(val("--pcap")?)),
            "--null-rx" => o.null_rx = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(60..=1518).contains(&o.size) {
        return Err(format!("--size {} outside 60..=1518", o.size));
    }
    Ok(o)
}

/// 1024 Ethernet/IPv4/UDP frames of `size` bytes on the wire (CRC included,
/// so `size - 4` captured bytes), flows told apart by source port.
fn write_capture(path: &PathBuf, size: usize) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = PcapWriter::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = size - 4;
    for i in 0..1024u16 {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 19, 0, 1]);
        f[34..36].copy_from_slice(&(1024 + i).to_be_bytes());
        f[36..38].copy_from_slice(&9u16.to_be_bytes());
        f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        let p = PcapPacket::new(Duration::ZERO, len as u32, &f);
        w.write_packet(&p)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn run(o: Opts) -> Result<(), String> {
    let pcap = match o.pcap.clone() {
        Some(p) => p,
        None => {
            let p = PathBuf::from(format!("/tmp/rvs_dpdk_fwd_{}.pcap", o.size));
            write_capture(&p, o.size)?;
            p
        }
    };
    let rx_vdev = if o.null_rx {
        "--vdev=net_null1".to_owned()
    } else {
        format!("--vdev=net_pcap0,rx_pcap={},infinite_rx=1", pcap.display())
    };
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--file-prefix=rvs_fwd",
        "--no-telemetry",
        "-m",
        "512",
        "-l",
        &o.core.to_string(),
        "--log-level=lib.eal:warning",
        &rx_vdev,
        "--vdev=net_null0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    println!("EAL args: {}", args.join(" "));
    let eal = Eal::init(&args).map_err(|e| e.to_string())?;
    let rx_name = if o.null_rx { "net_null1" } else { "net_pcap0" };
    let mut rx_port = DpdkDriver::open(&eal, rx_name, 1, None).map_err(|e| e.to_string())?;
    let mut tx_port = DpdkDriver::open(&eal, "net_null0", 1, None).map_err(|e| e.to_string())?;
    let mut rxq = rx_port.take_queues().map_err(|e| e.to_string())?.remove(0);
    let mut txq = tx_port.take_queues().map_err(|e| e.to_string())?.remove(0);

    let mut burst = Burst::new();
    // Warm up (infinite_rx fills its ring on the first bursts).
    for _ in 0..10_000 {
        rxq.rx_burst(&mut burst);
        txq.tx_burst(&mut burst);
        burst.clear();
    }
    let (mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64);
    let limit = Duration::from_secs_f64(o.seconds);
    let start = Instant::now();
    let elapsed = 'outer: loop {
        for _ in 0..4096 {
            rx += rxq.rx_burst(&mut burst) as u64;
            tx += txq.tx_burst(&mut burst) as u64;
            if !burst.is_empty() {
                dropped += burst.len() as u64;
                burst.clear();
            }
        }
        let e = start.elapsed();
        if e >= limit {
            break 'outer e;
        }
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "{rx_name} -> net_null0, {} B frames, {secs:.2} s on core {}: rx {rx}, tx {tx}, dropped {dropped}",
        o.size, o.core
    );
    println!(
        "rx {:.2} Mpps, tx {:.2} Mpps",
        rx as f64 / secs / 1e6,
        tx as f64 / secs / 1e6
    );
    let (rs, ts) = (rx_port.stats(), tx_port.stats());
    println!(
        "device counters: {rx_name} ipackets {} rx_nombuf {}; net_null0 opackets {}",
        rs.ipackets, rs.rx_nombuf, ts.opackets
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpdk_fwd: {e}");
            ExitCode::FAILURE
        }
    }
}
