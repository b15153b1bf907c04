package keepalive

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"
)

// Kernel holds the per-network-namespace sysctls that decide detection
// times. A zero field means the Linux default, as in [DefaultKernel]. A
// negative KeepaliveTime, KeepaliveIntvl, KeepaliveProbes or Retries2 means
// a sysctl set to 0, which the kernel accepts and honours: keepalive probes
// from the start without waiting for idleness, probes one timer tick apart,
// no keepalive probe before the abort, no retransmission backoff beyond the
// first RTO. A sysctl set to a negative value has none: [ReadKernel]
// refuses it with a [*SysctlError].
//
// [Detect] and [Recommend] answer for any Kernel, also one no Linux has
// (an RTOMax under 1 s, a count past 255): a negative RTOMin or RTOMax is
// the default, an RTOMax below RTOMin is RTOMin, an RTOMax below the
// starting RTO caps it from the first retransmission, and a time too long
// for a Duration is its largest (about 292 years).
type Kernel struct {
	KeepaliveTime   time.Duration `json:"keepalive_time"`   // net.ipv4.tcp_keepalive_time
	KeepaliveIntvl  time.Duration `json:"keepalive_intvl"`  // net.ipv4.tcp_keepalive_intvl
	KeepaliveProbes int           `json:"keepalive_probes"` // net.ipv4.tcp_keepalive_probes
	Retries2        int           `json:"retries2"`         // net.ipv4.tcp_retries2
	RTOMin          time.Duration `json:"rto_min"`          // TCP_RTO_MIN (or the route's rto_min)
	RTOMax          time.Duration `json:"rto_max"`          // TCP_RTO_MAX (net.ipv4.tcp_rto_max_ms since Linux 6.15)
	SynRetries      int           `json:"syn_retries"`      // net.ipv4.tcp_syn_retries
	// SynLinearTimeouts is net.ipv4.tcp_syn_linear_timeouts (Linux 6.5+):
	// that many SYN retransmissions, 1 s apart, come before the doubling and
	// add to tcp_syn_retries. Zero means the default 4; negative means none:
	// the sysctl is 0 or, with SynLinearTimeoutsAbsent, missing.
	SynLinearTimeouts int `json:"syn_linear_timeouts"`
	// SynLinearTimeoutsAbsent says the kernel has no tcp_syn_linear_timeouts
	// (before Linux 6.5): its SYN timeout doubles from the first retry, as
	// with the sysctl at 0, but there is no setting to show.
	SynLinearTimeoutsAbsent bool `json:"syn_linear_timeouts_absent,omitempty"`
}

// DefaultKernel returns the Linux defaults: keepalive 7200 s / 75 s / 9,
// tcp_retries2 15, RTO from 200 ms to 120 s, tcp_syn_retries 6.
func DefaultKernel() Kernel {
	return Kernel{
		KeepaliveTime:   7200 * time.Second,
		KeepaliveIntvl:  75 * time.Second,
		KeepaliveProbes: 9,
		Retries2:        15,
		RTOMin:          200 * time.Millisecond,
		RTOMax:          120 * time.Second,
		SynRetries:      6,
	}
}

func (k Kernel) withDefaults() Kernel {
	d := DefaultKernel()
	if k.KeepaliveTime == 0 {
		k.KeepaliveTime = d.KeepaliveTime
	}
	if k.KeepaliveIntvl == 0 {
		k.KeepaliveIntvl = d.KeepaliveIntvl
	}
	if k.KeepaliveProbes == 0 {
		k.KeepaliveProbes = d.KeepaliveProbes
	}
	if k.Retries2 == 0 {
		k.Retries2 = d.Retries2
	}
	if k.RTOMin <= 0 {
		k.RTOMin = d.RTOMin
	}
	if k.RTOMax <= 0 {
		k.RTOMax = d.RTOMax
	}
	if k.RTOMax < k.RTOMin {
		k.RTOMax = k.RTOMin
	}
	if k.SynRetries <= 0 {
		k.SynRetries = d.SynRetries
	}
	if k.SynLinearTimeoutsAbsent {
		k.SynLinearTimeouts = -1
	} else if k.SynLinearTimeouts == 0 {
		k.SynLinearTimeouts = 4
	}
	return k
}

// A Situation is what a connection is doing when its peer or path dies.
// It decides which kernel timer runs, and so which settings matter.
type Situation string

const (
	// Idle: nothing unacknowledged, nothing queued. The keepalive timer runs.
	Idle Situation = "idle"
	// Sending: data sent and not acknowledged. The retransmission timer runs;
	// keepalive does nothing.
	Sending Situation = "sending"
	// ZeroWindow: the peer is alive but does not read, its receive window is
	// zero, and then it dies or vanishes. The persist timer runs.
	ZeroWindow Situation = "zero-window"
	// Connect: the SYN is not answered. The SYN retransmission timer runs
	// (tcp_syn_retries, 6 by default).
	Connect Situation = "connect"
)

// Situations lists every Situation, in the order explain prints them.
var Situations = []Situation{Idle, Sending, ZeroWindow, Connect}

// Detection is when the kernel aborts a connection whose peer is gone.
type Detection struct {
	// After is the worst-case time to the abort, counted from the last
	// packet received (Idle), the first unacknowledged transmission
	// (Sending), the start of zero-window probing (ZeroWindow) or the first
	// SYN (Connect). For Sending without TCP_USER_TIMEOUT it is a lower
	// bound: the real first RTO is a little above RTOMin even on a LAN.
	After time.Duration
	// Never is true when no timer ever aborts the connection.
	Never bool
	// Timer names the timer that aborts: "keepalive", "retransmission",
	// "persist", "user-timeout", "syn", or "none".
	Timer string
	// Rule is the formula with the numbers filled in, e.g. "I + V×C = 2s + 1s×3".
	Rule string
	// Note adds what the formula does not say, if anything.
	Note string
}

// String formats d as "4s (keepalive: I + V×C = 2s + 1s×2)" or "never (...)".
func (d Detection) String() string {
	when := FormatDuration(d.After)
	if d.Never {
		when = "never"
	}
	return fmt.Sprintf("%s (%s: %s)", when, d.Timer, d.Rule)
}

// MarshalJSON writes After both as text and as seconds, for people and programs.
func (d Detection) MarshalJSON() ([]byte, error) {
	v := struct {
		After        string  `json:"after,omitempty"`
		AfterSeconds float64 `json:"after_seconds,omitempty"`
		Never        bool    `json:"never,omitempty"`
		Timer        string  `json:"timer"`
		Rule         string  `json:"rule"`
		Note         string  `json:"note,omitempty"`
	}{Never: d.Never, Timer: d.Timer, Rule: d.Rule, Note: d.Note}
	if !d.Never {
		v.After = FormatDuration(d.After)
		v.AfterSeconds = d.After.Seconds()
	}
	return json.Marshal(v)
}

// Detect returns the worst-case time until the kernel aborts a connection
// whose peer or path died silently (no RST, no ICMP), in situation sit,
// with settings s on a host whose sysctls are k.
//
// The rules, from net/ipv4/tcp_timer.c:
//
//   - Idle: keepalive probes start I after the last packet received and
//     repeat every V; the connection is aborted when C probes went
//     unanswered: I + V×C. With TCP_USER_TIMEOUT U set as well, C is
//     ignored and the abort comes at the first keepalive firing at or after
//     U (and after at least one probe). Without keepalive nothing is sent,
//     so nothing fails: U alone never fires on an idle socket. An I of 0
//     (tcp_keepalive_time 0) makes the timer probe every V from the start,
//     so the first probe comes up to V after the last packet: V + V×C. A V
//     of 0 puts the probes one timer tick apart: I plus a few ms. With both
//     0 (or I 0 and C 0) the kernel aborts even a live connection at once.
//   - Sending: the retransmission timer backs off from RTOmin, doubling up
//     to RTOmax, and aborts at the first expiry past
//     T(N) = (2^(N+1)−1)×RTOmin while N ≤ log2(RTOmax/RTOmin), else
//     (2^(t+1)−1)×RTOmin + (N−t)×RTOmax with t = ⌊log2(RTOmax/RTOmin)⌋
//     (t = 9 for 200 ms and 120 s), N = tcp_retries2. With U: about U.
//   - ZeroWindow: a peer that answers zero-window probes is never given
//     up on; with U (Linux ≥ 5.11) the abort comes U after probing starts.
//   - Connect: SYNs are retried tcp_syn_retries times from a 1 s timeout,
//     doubling; with U the abort comes at about U if that is sooner.
func Detect(sit Situation, s Settings, k Kernel) Detection {
	k = k.withDefaults()
	e := s.Effective(k)
	u := e.UserTimeout
	switch sit {
	case Idle:
		if !e.Enabled() {
			d := Detection{Never: true, Timer: "none", Rule: "keepalive off: nothing is sent, so nothing times out"}
			if u > 0 {
				d.Note = "TCP_USER_TIMEOUT alone does not fire on an idle socket with nothing unacknowledged"
			}
			return d
		}
		I, V, C := e.Idle, e.Interval, e.Count
		// Zero I or V come only from sysctls set to 0: a socket cannot set them.
		first, firstName := I, "I"
		var notes []string
		if I == 0 {
			// keepalive_time_when() is 0: every firing finds the socket idle
			// long enough and probes, and the next firing is V after the probe.
			first, firstName = V, "V"
			notes = append(notes, "tcp_keepalive_time is 0: the timer probes every V from the start, answered or not, so the first probe comes up to V after the last packet received")
		}
		if V == 0 && u == 0 {
			notes = append(notes, "tcp_keepalive_intvl is 0: the probes after the first go out one timer tick (1 to 10 ms) apart, so the abort comes a few ms after the first")
		} else if V == 0 {
			notes = append(notes, "tcp_keepalive_intvl is 0: the probes after the first go out one timer tick (1 to 10 ms) apart, so the abort comes at the first tick at or after U")
		}
		if I == 0 && u == 0 && (V == 0 || C == 0) {
			// Measured: aborted 16 ms after the start with 0/0/3, 1 ms with 0/1s/0.
			d := Detection{Timer: "keepalive", Rule: "I = 0 and V = 0: aborted a few timer ticks after keepalive starts",
				Note: "tcp_keepalive_time and tcp_keepalive_intvl are 0: a probe every timer tick, and a peer answers at most one out-of-window probe per tcp_invalid_ratelimit (500 ms), so even a live connection is aborted within ms of its start"}
			if V != 0 {
				d.Rule = "I = 0 and C = 0: aborted at the first firing, when keepalive starts"
				d.Note = "tcp_keepalive_time is 0 and no probe is allowed: even a live connection is aborted as soon as keepalive is on"
			}
			return d
		}
		if u == 0 {
			rule := fmt.Sprintf("I + V×C = %s + %s×%d", FormatDuration(I), FormatDuration(V), C)
			if I == 0 {
				rule = fmt.Sprintf("V + V×C = %s + %s×%d (I = tcp_keepalive_time = 0)", FormatDuration(V), FormatDuration(V), C)
			}
			return Detection{After: addSat(first, mulSat(V, int64(C))), Timer: "keepalive", Rule: rule, Note: strings.Join(notes, "; ")}
		}
		// The keepalive timer fires at I, I+V, I+2V, ...; with U set it aborts at
		// the first firing at or after U once a probe is out (tcp_keepalive_timer).
		if V == 0 {
			// Firings a tick apart after the first: about U, but not before it.
			if I == 0 {
				// Every firing probes, and each answer restarts the count
				// to U; answers come one per tcp_invalid_ratelimit. Measured
				// in the lab: U of 100, 300 and 450 ms aborted a live
				// connection at U, 700 ms and 1 s did not.
				notes = append(notes, "with both sysctls 0 a probe goes out every tick, and the peer answers at most one per its tcp_invalid_ratelimit (500 ms by default): a U below that aborts even a live connection at about U; a longer U keeps a live connection")
			}
			return Detection{After: max(u, first), Timer: "keepalive",
				Rule: fmt.Sprintf("first keepalive firing at or after U, a tick apart after %s: max(%s, U) = %s (U = %s)",
					firstName, firstName, FormatDuration(max(u, first)), FormatDuration(u)),
				Note: strings.Join(notes, "; ")}
		}
		n := int64(1)
		if u > first {
			n = max(1, ceilDiv(u-first, V))
		}
		d := Detection{
			After: addSat(first, mulSat(V, n)),
			Timer: "keepalive",
			Rule: fmt.Sprintf("first keepalive firing at or after U: %s + V×%d = %s + %s×%d (U = %s)",
				firstName, n, FormatDuration(first), FormatDuration(V), n, FormatDuration(u)),
		}
		if int64(C) != n {
			notes = append(notes, fmt.Sprintf("with TCP_USER_TIMEOUT set the probe count (%d) is ignored", C))
		}
		d.Note = strings.Join(notes, "; ")
		return d
	case Sending:
		if u > 0 {
			return Detection{After: u, Timer: "user-timeout", Rule: "U = " + FormatDuration(u),
				Note: "the retransmission timer runs; the kernel clamps its last RTO to end at U; keepalive does nothing"}
		}
		// tcp_model_timeout always starts from the constant TCP_RTO_MIN;
		// only the real RTOs start at a raised minimum (route rto_min,
		// tcp_rto_min_us).
		const tcpRTOMin = 200 * time.Millisecond
		n := max(k.Retries2, 0) // negative: the sysctl is 0
		bound, thresh := modelTimeout(n, tcpRTOMin, k.RTOMax)
		after := firstExpiry(bound, k.RTOMin, k.RTOMax)
		var rule string
		if n <= thresh {
			rule = fmt.Sprintf("(2^(N+1)−1)×RTOmin = %d×%s (N = tcp_retries2 = %d)",
				uint64(2)<<n-1, FormatDuration(tcpRTOMin), n)
		} else {
			rule = fmt.Sprintf("(2^%d−1)×RTOmin + (N−%d)×RTOmax = %d×%s + %d×%s (N = tcp_retries2 = %d)",
				thresh+1, thresh, uint64(2)<<thresh-1, FormatDuration(tcpRTOMin), n-thresh, FormatDuration(k.RTOMax), n)
		}
		if after != bound {
			rule += fmt.Sprintf(", first RTO expiry past %s", FormatDuration(bound))
		}
		return Detection{After: after, Timer: "retransmission", Rule: rule,
			Note: "a lower bound: the first RTO is RTOmin plus the path's RTT variance; keepalive does nothing"}
	case ZeroWindow:
		if u > 0 {
			return Detection{After: u, Timer: "user-timeout", Rule: "U after zero-window probing starts = " + FormatDuration(u),
				Note: "needs Linux 5.11 or later; older kernels count only unanswered probes"}
		}
		return Detection{Never: true, Timer: "persist",
			Rule: "the peer answers zero-window probes: never",
			Note: fmt.Sprintf("once the peer vanishes, the abort comes after tcp_retries2 = %d unanswered probes, backed off up to RTOmax (%s), so up to ~%s",
				max(k.Retries2, 0), FormatDuration(k.RTOMax), FormatDuration(mulSat(k.RTOMax, int64(max(k.Retries2, 0)))))}
	case Connect:
		bound := synTimeout(k.SynRetries, max(k.SynLinearTimeouts, 0), k.RTOMax)
		rule := fmt.Sprintf("SYN retries from 1s, doubling up to RTOmax = %s (R = tcp_syn_retries = %d)", FormatDuration(bound), k.SynRetries)
		switch {
		case k.SynLinearTimeouts > 0:
			rule = fmt.Sprintf("SYN retries from 1s, %d more 1s apart (tcp_syn_linear_timeouts), then doubling = %s (R = tcp_syn_retries = %d)",
				k.SynLinearTimeouts, FormatDuration(bound), k.SynRetries)
		case !k.SynLinearTimeoutsAbsent:
			// Set to 0, unlike a kernel without the sysctl: say so.
			rule = fmt.Sprintf("SYN retries from 1s, doubling up to RTOmax = %s (R = tcp_syn_retries = %d, tcp_syn_linear_timeouts = 0)", FormatDuration(bound), k.SynRetries)
		}
		d := Detection{After: bound, Timer: "syn", Rule: rule,
			Note: "a Dialer.Timeout or context deadline usually ends the dial first"}
		if u > 0 && u < bound {
			d = Detection{After: u, Timer: "user-timeout", Rule: "U = " + FormatDuration(u),
				Note: "TCP_USER_TIMEOUT also bounds the SYN retries"}
		}
		return d
	}
	return Detection{Never: true, Timer: "none", Rule: fmt.Sprintf("unknown situation %q", string(sit))}
}

// modelTimeout is the kernel's tcp_model_timeout: the time N retransmissions
// take when the RTO starts at base and doubles up to max. It also returns the
// linear-backoff threshold ⌊log2(max/base)⌋, or 0 for a max under base,
// which no kernel has (tcp_rto_max_ms is at least 1 s) but a Kernel built in
// code may: the RTO is then max from the first retransmission.
func modelTimeout(n int, base, maxRTO time.Duration) (time.Duration, int) {
	thresh := max(bits.Len64(uint64(maxRTO/base))-1, 0) // at most 62
	if n <= thresh {
		return mulSat(base, int64(uint64(2)<<n-1)), thresh
	}
	return addSat(mulSat(base, int64(uint64(2)<<thresh-1)), mulSat(maxRTO, int64(n-thresh))), thresh
}

// synTimeout is the SYN retransmission timer (tcp_retransmit_timer,
// tcp_write_timeout): the RTO starts at 1 s (TCP_TIMEOUT_INIT), stays there
// for the first lin retransmissions, then doubles up to maxRTO; the connect
// fails at the first expiry after R+lin retransmissions or past
// tcp_model_timeout(R, 1 s).
func synTimeout(r, lin int, maxRTO time.Duration) time.Duration {
	bound, _ := modelTimeout(r, time.Second, maxRTO)
	limit := int64(r) + int64(lin)
	if limit < int64(r) { // overflow: both huge
		limit = math.MaxInt64
	}
	return expiry(time.Second, int64(lin), limit, maxRTO, bound)
}

// firstExpiry is the retransmission timer, RTO starting at base and
// doubling up to max: the first expiry at or past bound.
func firstExpiry(bound, base, maxRTO time.Duration) time.Duration {
	return expiry(base, 0, math.MaxInt64, maxRTO, bound)
}

// expiry runs a retransmission timer whose RTO is first for the first
// lin+1 expiries, then doubles up to maxRTO, and returns the time of the
// expiry that gives up: the one after limit retransmissions, or the first at
// or past bound. It takes the constant-RTO runs in one step each, so that no
// value, however large, makes it loop long or overflow (times saturate).
func expiry(first time.Duration, lin, limit int64, maxRTO, bound time.Duration) time.Duration {
	var t time.Duration
	var n int64 // expiries so far
	// run takes up to m expiries of rto and reports whether one gave up.
	run := func(rto time.Duration, m int64) bool {
		// The j-th of them (from 0) gives up if n+j ≥ limit or t+(j+1)×rto ≥ bound.
		j := int64(0)
		if bound > t {
			j = min(max(limit-n, 0), ceilDiv(bound-t, rto)-1)
		}
		if j < m {
			t = addSat(t, mulSat(rto, j+1))
			return true
		}
		t = addSat(t, mulSat(rto, m))
		n += m
		return false
	}
	rto := first
	if run(rto, min(lin, math.MaxInt64-1)+1) {
		return t
	}
	for { // at most 63 doublings
		if rto > maxRTO-rto {
			rto = maxRTO
		} else {
			rto *= 2
		}
		if rto == maxRTO {
			run(rto, math.MaxInt64) // gives up: j < MaxInt64
			return t
		}
		if run(rto, 1) {
			return t
		}
	}
}

// addSat, mulSat and ceilDiv work on durations and counts of 0 or more,
// saturating at the longest Duration (292 years) rather than overflowing:
// a Kernel or Settings built in code may hold values no kernel accepts.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func mulSat(d time.Duration, n int64) time.Duration {
	if d <= 0 || n <= 0 {
		return 0
	}
	if n > math.MaxInt64/int64(d) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// ceilDiv is ⌈a/b⌉ for a ≥ 0 and b > 0.
func ceilDiv(a, b time.Duration) int64 {
	if a == 0 {
		return 0
	}
	return int64((a-1)/b) + 1
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Detection) UnmarshalJSON(b []byte) error {
	var v struct {
		AfterSeconds float64 `json:"after_seconds"`
		Never        bool    `json:"never"`
		Timer        string  `json:"timer"`
		Rule         string  `json:"rule"`
		Note         string  `json:"note"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = Detection{After: time.Duration(math.Round(v.AfterSeconds * float64(time.Second))), Never: v.Never, Timer: v.Timer, Rule: v.Rule, Note: v.Note}
	return nil
}
