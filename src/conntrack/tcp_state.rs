//! IPVS's TCP state machine, active/inactive classification and timeouts.
//!
//! Rules:
//! * The transition table is `tcp_states` of Linux `ip_vs_proto_tcp.c`
//!   (the normal table, not the `secure_tcp` one), as in current kernels: an
//!   ACK in state NONE goes to ESTABLISHED (added with `sloppy_tcp`).
//! * The flag that selects the row is chosen as `tcp_state_idx` does: RST,
//!   then SYN, then FIN, then ACK; a segment with none of them moves the
//!   connection to CLOSE (as `set_tcp_state` does).
//! * Active states are `tcp_state_active_table`: ESTABLISHED, SYN_SENT,
//!   SYN_RECV and SYNACK. UDP connections are never active.
//! * Timeouts are in seconds, defaults as `tcp_timeouts` / `udp_timeouts`.

use super::timer::MAX_TIMEOUT_SECS;
use super::ConntrackError;

/// TCP flag bits of the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// IPVS TCP connection states, in IPVS order (`IP_VS_TCP_S_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(u8)]
pub enum TcpState {
    /// No segment seen yet (new connection); also the state of UDP
    /// connections and templates.
    #[default]
    None = 0,
    /// ESTABLISHED.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATE_COUNT: usize = 11;

impl TcpState {
    /// All states in IPVS order.
    pub const ALL: [TcpState; TCP_STATE_COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The IPVS name printed by `ipvsadm -Lnc` ("ESTABLISHED", "SYN_RECV", …).
    /// UDP connections print "UDP": use [`super::Conn::state_name`].
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// The state with this IPVS number.
    pub fn from_index(i: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(i)).copied()
    }

    /// The state's IPVS number.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether a TCP connection in this state counts as an active connection
    /// of its real server (`tcp_state_active_table`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }
}

/// Which third of the IPVS TCP table applies to a segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TcpDir {
    /// Client → server, on a connection whose replies pass the director.
    Input = 0,
    /// Server → client reply (NAT / FULLNAT).
    Output = 1,
    /// Client → server on a connection that has seen no reply (DR / TUN:
    /// IPVS's `IP_VS_CONN_F_NOOUTPUT`).
    InputOnly = 2,
}

// The normal table never yields NONE or SYNACK (only `secure_tcp`'s does).
use TcpState as S;
const ES: S = S::Established;
const SS: S = S::SynSent;
const SR: S = S::SynRecv;
const FW: S = S::FinWait;
const TW: S = S::TimeWait;
const CL: S = S::Close;
const CW: S = S::CloseWait;
const LA: S = S::LastAck;
const LI: S = S::Listen;

/// `tcp_states[dir][flag row][current state]`; rows are syn, fin, ack, rst.
#[rustfmt::skip]
const TCP_STATES: [[[TcpState; TCP_STATE_COUNT]; 4]; 3] = [
    // INPUT
    //    sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // syn
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // ack
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR], // rst
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR], // syn
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES], // ack
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL], // rst
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // syn
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // ack
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL], // rst
    ],
];

/// The state a TCP connection in `cur` moves to on a segment with `flags`
/// (the raw TCP flags byte) travelling in `dir` (IPVS `set_tcp_state`).
#[inline]
pub fn next_tcp_state(dir: TcpDir, flags: u8, cur: TcpState) -> TcpState {
    let row = if flags & tcp_flags::RST != 0 {
        3
    } else if flags & tcp_flags::SYN != 0 {
        0
    } else if flags & tcp_flags::FIN != 0 {
        1
    } else if flags & tcp_flags::ACK != 0 {
        2
    } else {
        return TcpState::Close;
    };
    TCP_STATES[dir as usize][row][cur.index()]
}

/// Connection timeouts in seconds: one per TCP state plus UDP.
/// [`Default`] gives the IPVS defaults (ipvsadm.md §1.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    tcp: [u32; TCP_STATE_COUNT],
    udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            //    NONE  ES   SS   SR  FW   TW   CL  CW  LA  LI   SA
            tcp: [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120],
            udp: 300,
        }
    }
}

impl Timeouts {
    /// `ipvsadm --set tcp tcpfin udp`: writes TCP ESTABLISHED, TCP FIN_WAIT
    /// and UDP; a 0 leaves that value unchanged. Out-of-range values
    /// (> [`MAX_TIMEOUT_SECS`]) are rejected and nothing changes.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), ConntrackError> {
        for secs in [tcp, tcpfin, udp] {
            check_timeout(secs)?;
        }
        if tcp != 0 {
            self.tcp[TcpState::Established.index()] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[TcpState::FinWait.index()] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
        Ok(())
    }

    /// `(tcp, tcpfin, udp)` as `ipvsadm -L --timeout` prints them.
    pub fn get(&self) -> (u32, u32, u32) {
        (
            self.tcp[TcpState::Established.index()],
            self.tcp[TcpState::FinWait.index()],
            self.udp,
        )
    }

    /// The timeout of a TCP state, in seconds.
    pub fn tcp(&self, state: TcpState) -> u32 {
        self.tcp[state.index()]
    }

    /// The UDP timeout, in seconds.
    pub fn udp(&self) -> u32 {
        self.udp
    }

    /// Sets the timeout of any one TCP state (not reachable through
    /// `ipvsadm --set`; for configuration files and tests).
    pub fn set_tcp_state(&mut self, state: TcpState, secs: u32) -> Result<(), ConntrackError> {
        check_timeout(secs)?;
        self.tcp[state.index()] = secs;
        Ok(())
    }
}

pub(crate) fn check_timeout(secs: u32) -> Result<(), ConntrackError> {
    if secs > MAX_TIMEOUT_SECS {
        Err(ConntrackError::TimeoutOutOfRange {
            secs,
            max: MAX_TIMEOUT_SECS,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    #[test]
    fn names_and_order_follow_ipvs() {
        let names: Vec<&str> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(TcpState::from_index(i as u8), Some(*s));
        }
        assert_eq!(TcpState::from_index(11), None);
    }

    #[test]
    fn active_states_are_established_syn_sent_syn_recv_synack() {
        let active: Vec<TcpState> = TcpState::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(
            active,
            [
                TcpState::Established,
                TcpState::SynSent,
                TcpState::SynRecv,
                TcpState::SynAck
            ]
        );
    }

    #[test]
    fn flag_priority_is_rst_syn_fin_ack() {
        // RST wins over everything: ESTABLISHED + RST|SYN|ACK → CLOSE.
        assert_eq!(
            next_tcp_state(TcpDir::Input, RST | SYN | ACK, TcpState::Established),
            TcpState::Close
        );
        // SYN wins over FIN/ACK: NONE + SYN|ACK (input) → SYN_RECV.
        assert_eq!(
            next_tcp_state(TcpDir::Input, SYN | ACK, TcpState::None),
            TcpState::SynRecv
        );
        // FIN wins over ACK: ESTABLISHED + FIN|ACK (input) → CLOSE_WAIT.
        assert_eq!(
            next_tcp_state(TcpDir::Input, FIN | ACK, TcpState::Established),
            TcpState::CloseWait
        );
        // PSH alone selects no row: CLOSE.
        assert_eq!(
            next_tcp_state(TcpDir::Input, PSH, TcpState::Established),
            TcpState::Close
        );
    }

    #[test]
    fn selected_cells_match_the_kernel_table() {
        use TcpDir::*;
        use TcpState::*;
        let cases = [
            (Input, ACK, None, Established),
            (Input, ACK, LastAck, Close),
            (Input, RST, SynRecv, SynRecv),
            (Input, RST, SynAck, SynRecv),
            (Output, SYN, None, SynSent),
            (Output, SYN | ACK, SynRecv, SynRecv),
            (Output, FIN, Established, FinWait),
            (Output, FIN, CloseWait, TimeWait),
            (Output, ACK, Listen, Established),
            (Output, RST, TimeWait, TimeWait),
            (Output, RST, SynSent, SynSent),
            (InputOnly, FIN, Established, FinWait),
            (InputOnly, FIN, None, Close),
            (InputOnly, RST, SynAck, Close),
            (InputOnly, ACK, None, Established),
        ];
        for (dir, flags, from, to) in cases {
            assert_eq!(
                next_tcp_state(dir, flags, from),
                to,
                "{dir:?} {flags:#x} {from:?}"
            );
        }
    }

    #[test]
    fn default_timeouts_are_ipvs_defaults() {
        let t = Timeouts::default();
        assert_eq!(t.get(), (900, 120, 300));
        assert_eq!(t.tcp(TcpState::None), 2);
        assert_eq!(t.tcp(TcpState::SynRecv), 60);
        assert_eq!(t.tcp(TcpState::Close), 10);
        assert_eq!(t.tcp(TcpState::LastAck), 30);
        assert_eq!(t.tcp(TcpState::SynAck), 120);
    }

    #[test]
    fn set_writes_only_established_fin_wait_udp_and_zero_keeps() {
        let mut t = Timeouts::default();
        t.set(0, 30, 0).unwrap();
        assert_eq!(t.get(), (900, 30, 300));
        t.set(3600, 0, 60).unwrap();
        assert_eq!(t.get(), (3600, 30, 60));
        assert_eq!(t.tcp(TcpState::TimeWait), 120, "TIME_WAIT untouched");
        let before = t;
        assert!(matches!(
            t.set(1, 1, MAX_TIMEOUT_SECS + 1),
            Err(ConntrackError::TimeoutOutOfRange { .. })
        ));
        assert_eq!(t, before, "a rejected --set changes nothing");
    }
}
