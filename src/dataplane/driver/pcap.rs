//! `pcap` driver: a port reads a capture file and writes what it sends to
//! another, for deterministic tests and offline replay (`lbd --replay`).
//!
//! Rules: one queue per port (a capture has no flows to spread); reading
//! and writing the files is this driver's I/O. Timestamps of written
//! packets are the input packet's time (replay) or the wall clock.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;

use super::heapbuf::HeapBuf;
use super::{Burst, Driver, DriverError, PacketBuf, PortCaps, PortQueue, PortStats, Steering};

/// The single queue of a pcap port.
pub struct PcapQueue {
    reader: Option<PcapReader<BufReader<File>>>,
    writer: Option<PcapWriter<BufWriter<File>>>,
    path_in: Option<PathBuf>,
    exhausted: bool,
    last_ts: Duration,
    /// Packets read.
    pub rx_count: u64,
    /// Packets written.
    pub tx_count: u64,
    /// Packets in the input that could not be read (counted, skipped).
    pub rx_errors: u64,
}

impl PcapQueue {
    /// Flush the output file.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        if let Some(w) = self.writer.take() {
            let mut inner = w.into_writer();
            std::io::Write::flush(&mut inner).map_err(|e| DriverError::os("flush capture", e))?;
        }
        Ok(())
    }
}

impl Drop for PcapQueue {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl PortQueue for PcapQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        let Some(r) = self.reader.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while !burst.is_full() {
            match r.next_packet() {
                Some(Ok(p)) => {
                    self.last_ts = p.timestamp;
                    if burst.push(HeapBuf::from_slice(&p.data)).is_ok() {
                        n += 1;
                    }
                }
                Some(Err(_)) => {
                    // A broken record ends the file: pcap has no resync.
                    self.rx_errors += 1;
                    self.exhausted = true;
                    self.reader = None;
                    break;
                }
                None => {
                    self.exhausted = true;
                    self.reader = None;
                    break;
                }
            }
        }
        self.rx_count += n as u64;
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        let n = burst.len();
        let ts = if self.path_in.is_some() {
            self.last_ts
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        };
        for b in burst.drain_front(n) {
            if let Some(w) = self.writer.as_mut() {
                let pkt = PcapPacket::new(ts, b.len() as u32, b.data());
                if w.write_packet(&pkt).is_ok() {
                    self.tx_count += 1;
                }
            } else {
                self.tx_count += 1;
            }
        }
        n
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::alloc())
    }

    fn rx_exhausted(&self) -> bool {
        self.exhausted || self.reader.is_none()
    }
}

/// A pcap port.
pub struct PcapDriver {
    caps: PortCaps,
    queue: Option<PcapQueue>,
}

impl PcapDriver {
    /// Open a port reading `rx` (if any) and writing `tx` (if any).
    pub fn open(
        name: &str,
        mac: [u8; 6],
        mtu: u16,
        rx: Option<&Path>,
        tx: Option<&Path>,
    ) -> Result<PcapDriver, DriverError> {
        let perr = |p: &Path, m: String| DriverError::Pcap {
            path: p.display().to_string(),
            msg: m,
        };
        let reader = match rx {
            Some(p) => {
                let f = File::open(p).map_err(|e| perr(p, e.to_string()))?;
                Some(PcapReader::new(BufReader::new(f)).map_err(|e| perr(p, e.to_string()))?)
            }
            None => None,
        };
        let writer = match tx {
            Some(p) => {
                let f = File::create(p).map_err(|e| perr(p, e.to_string()))?;
                let hdr = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    ..Default::default()
                };
                Some(
                    PcapWriter::with_header(BufWriter::new(f), hdr)
                        .map_err(|e| perr(p, e.to_string()))?,
                )
            }
            None => None,
        };
        Ok(PcapDriver {
            caps: PortCaps {
                name: name.to_string(),
                mac,
                mtu,
                queues: 1,
                tx_csum_offload: false,
                steering: Steering::None,
            },
            queue: Some(PcapQueue {
                exhausted: reader.is_none(),
                reader,
                writer,
                path_in: rx.map(Path::to_path_buf),
                last_ts: Duration::ZERO,
                rx_count: 0,
                tx_count: 0,
                rx_errors: 0,
            }),
        })
    }
}

impl Driver for PcapDriver {
    type Queue = PcapQueue;
    fn caps(&self) -> &PortCaps {
        &self.caps
    }
    fn take_queues(&mut self) -> Result<Vec<PcapQueue>, DriverError> {
        self.queue
            .take()
            .map(|q| vec![q])
            .ok_or(DriverError::QueuesTaken)
    }
    fn stats(&self) -> PortStats {
        PortStats::default()
    }
}

/// Write `frames` to a new capture file at `path` (tests and tools).
pub fn write_capture(path: &Path, frames: &[Vec<u8>]) -> Result<(), DriverError> {
    let f = File::create(path).map_err(|e| DriverError::os(path.display(), e))?;
    let hdr = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(f), hdr).map_err(|e| DriverError::Pcap {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    for (i, fr) in frames.iter().enumerate() {
        let p = PcapPacket::new(Duration::from_micros(i as u64), fr.len() as u32, fr);
        w.write_packet(&p).map_err(|e| DriverError::Pcap {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
    }
    Ok(())
}

/// Read every frame of a capture file (tests and tools).
pub fn read_capture(path: &Path) -> Result<Vec<Vec<u8>>, DriverError> {
    let perr = |m: String| DriverError::Pcap {
        path: path.display().to_string(),
        msg: m,
    };
    let f = File::open(path).map_err(|e| perr(e.to_string()))?;
    let mut r = PcapReader::new(BufReader::new(f)).map_err(|e| perr(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.map_err(|e| perr(e.to_string()))?.data.into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_round_trips_through_a_port() {
        let dir = std::env::temp_dir().join(format!("rvs-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let input = dir.join("in.pcap");
        let output = dir.join("out.pcap");
        let frames = vec![vec![0xa5u8; 60], vec![0x5au8; 74]];
        write_capture(&input, &frames).expect("write");
        let mut d = PcapDriver::open("p0", [2, 0, 0, 0, 0, 1], 1500, Some(&input), Some(&output))
            .expect("open");
        let mut q = d.take_queues().expect("queues").pop().expect("one queue");
        let mut b = Burst::new();
        assert_eq!(q.rx_burst(&mut b), 2);
        assert!(q.rx_exhausted());
        assert_eq!(q.tx_burst(&mut b), 2);
        drop(q);
        assert_eq!(read_capture(&output).expect("read"), frames);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_capture_is_a_precise_error() {
        let e = PcapDriver::open(
            "p0",
            [0; 6],
            1500,
            Some(Path::new("/nonexistent/x.pcap")),
            None,
        );
        assert!(matches!(e, Err(DriverError::Pcap { .. })));
    }
}
