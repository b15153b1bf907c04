package tcpinfo

import (
	"encoding/json"
	"time"
)

// Info is a snapshot of one TCP connection. Durations are marshalled to JSON
// as milliseconds (fields ending in _ms).
type Info struct {
	// State is the TCP state as the kernel names it (include/net/tcp_states.h
	// without TCP_): "ESTABLISHED", "SYN_SENT", "FIN_WAIT1", "CLOSE_WAIT", ...
	State string
	// MPTCP is true for a Multipath TCP socket; the other fields then describe
	// its first subflow, which is what Linux reports for TCP_INFO on MPTCP.
	MPTCP bool

	Retransmits  int // consecutive RTO expiries for the current unacknowledged data
	Probes       int // unanswered keepalive or zero-window probes
	Backoff      int // exponential backoff of the RTO or the zero-window probe timer
	Unacked      int // segments sent and not acknowledged
	TotalRetrans int // segments retransmitted over the connection's life
	NotSent      int // bytes queued and not yet sent

	RTO    time.Duration // current retransmission timeout
	RTT    time.Duration // smoothed round-trip time
	RTTVar time.Duration // its mean deviation

	LastDataRecv time.Duration // since the last data received
	LastAckRecv  time.Duration // since the last ACK received
	LastDataSent time.Duration // since the last data sent

	// SndWnd is the peer's advertised receive window in bytes and
	// SndWndKnown whether the kernel reports it (Linux 6.2+).
	SndWnd      uint32
	SndWndKnown bool

	// Keepalive is true if SO_KEEPALIVE is set.
	Keepalive bool

	// Timer is the kernel timer that governs the socket, inferred from the
	// fields above (the kernel does not report it in TCP_INFO; ss -o gets it
	// from sock_diag):
	//
	//	"syn"             SYN_SENT or SYN_RECV
	//	"retransmission"  Unacked > 0
	//	"persist"         nothing in flight, data queued: the peer's window is
	//	                  zero (SndWnd == 0 when known)
	//	"keepalive"       nothing in flight, Keepalive set
	//	"none"            nothing runs: an idle connection without keepalive
	//	                  never notices a dead peer
	Timer string
}

// timer infers the governing timer; see Info.Timer.
func (i *Info) timer() string {
	switch {
	case i.State == "SYN_SENT" || i.State == "SYN_RECV":
		return "syn"
	case i.Unacked > 0:
		return "retransmission"
	case i.NotSent > 0 && (!i.SndWndKnown || i.SndWnd == 0):
		return "persist"
	case i.SndWndKnown && i.SndWnd == 0 && i.Probes > 0:
		return "persist"
	case i.Keepalive && (i.State == "ESTABLISHED" || i.State == "CLOSE_WAIT"):
		// The kernel runs the keepalive timer in CLOSE_WAIT too (the peer
		// sent FIN; this side may still be sending).
		return "keepalive"
	}
	return "none"
}

// stateNames are the TCP states in the kernel's order (include/net/tcp_states.h).
var stateNames = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
	11: "CLOSING", 12: "NEW_SYN_RECV",
}

func stateName(s uint8) string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "UNKNOWN"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MarshalJSON writes Info with snake_case names and durations in milliseconds.
func (i Info) MarshalJSON() ([]byte, error) {
	v := struct {
		State        string  `json:"state"`
		MPTCP        bool    `json:"mptcp,omitempty"`
		Timer        string  `json:"timer"`
		Retransmits  int     `json:"retransmits"`
		Probes       int     `json:"probes"`
		Backoff      int     `json:"backoff"`
		Unacked      int     `json:"unacked"`
		TotalRetrans int     `json:"total_retrans"`
		NotSent      int     `json:"notsent_bytes"`
		RTO          float64 `json:"rto_ms"`
		RTT          float64 `json:"rtt_ms"`
		RTTVar       float64 `json:"rttvar_ms"`
		LastDataRecv float64 `json:"last_data_recv_ms"`
		LastAckRecv  float64 `json:"last_ack_recv_ms"`
		LastDataSent float64 `json:"last_data_sent_ms"`
		SndWnd       *uint32 `json:"snd_wnd,omitempty"`
		Keepalive    bool    `json:"keepalive"`
	}{
		i.State, i.MPTCP, i.Timer, i.Retransmits, i.Probes, i.Backoff, i.Unacked, i.TotalRetrans, i.NotSent,
		ms(i.RTO), ms(i.RTT), ms(i.RTTVar), ms(i.LastDataRecv), ms(i.LastAckRecv), ms(i.LastDataSent), nil, i.Keepalive,
	}
	if i.SndWndKnown {
		w := i.SndWnd
		v.SndWnd = &w
	}
	return json.Marshal(v)
}
