package lab

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// Fault is a rule set for the router's FORWARD hook.
type Fault string

const (
	FaultNone         Fault = ""
	FaultDropBoth     Fault = "drop-both"      // silent drop of all TCP, both directions
	FaultDropToClient Fault = "drop-to-client" // silent drop server -> client only
	FaultDropToServer Fault = "drop-to-server" // silent drop client -> server only
	FaultReset        Fault = "reset"          // reject with tcp reset (RST to the sender)
	FaultUnreachable  Fault = "unreachable"    // reject with ICMP host unreachable
	FaultStateful     Fault = "stateful"       // accept established flows and new SYNs, drop the rest
)

// Scenario is one way a connection dies, and what each side is doing when it does.
type Scenario struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
	// Userspace: a userspace proxy can reproduce it (runs without root).
	Userspace bool `json:"userspace"`

	fault  Fault // router rules (namespaces mode)
	stream bool  // the server streams data every streamEvery (the seed's server)
	kind   kind
}

type kind int

const (
	kindRouter    kind = iota // nftables fault injected at one instant
	kindIdleClose             // userspace middlebox closes idle connections with FIN
	kindExpiry                // conntrack state expires, then the client sends
)

// streamEvery is how often a streaming server writes (the seed wrote every 500 ms;
// faster keeps unacked data in flight at the fault).
const streamEvery = 100 * time.Millisecond

// Scenarios is the catalogue, in the order --list prints it.
var Scenarios = []Scenario{
	{Name: "drop-idle", fault: FaultDropBoth,
		Doc: "both sides idle; the router silently drops everything: only keepalive can notice"},
	{Name: "drop-sending", fault: FaultDropBoth, stream: true,
		Doc: "the server streams, the client reads (the seed); silent drop both ways: server on the retransmission timer, client on keepalive"},
	{Name: "drop-one-way", fault: FaultDropToClient, stream: true,
		Doc: "as drop-sending, but only server->client is dropped (the seed's first iptables rule)"},
	{Name: "reset", fault: FaultReset, stream: true, Userspace: true,
		Doc: "the router answers every segment with a TCP reset: each side learns at its next send (data or keepalive probe)"},
	{Name: "icmp-unreachable", fault: FaultUnreachable, stream: true,
		Doc: "the router answers with ICMP host unreachable: a soft error, timers run as for a drop, the error becomes EHOSTUNREACH"},
	{Name: "idle-close", kind: kindIdleClose, Userspace: true,
		Doc: "a middlebox (userspace relay in the router) closes connections idle for --idle-close with FIN; keepalive probes carry no payload and do not count"},
	{Name: "firewall-expiry", fault: FaultStateful, kind: kindExpiry,
		Doc: "a stateful firewall forgets flows idle longer than --state-timeout (conntrack), then drops their non-SYN packets; the client then sends a request"},
}

// Lookup returns the scenario called name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Names lists the scenario names.
func Names() []string {
	out := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		out[i] = s.Name
	}
	return out
}

// Options configure a run. The zero value runs with the kernel's defaults.
type Options struct {
	// Settings apply to both the client's and the server's socket.
	Settings keepalive.Settings
	// Retries2 sets net.ipv4.tcp_retries2 inside the lab's namespaces, as
	// in keepalive.Kernel: zero leaves the kernel's default (15), a negative
	// value sets it to 0 (unacknowledged data is given up at the first
	// retransmission timeout).
	Retries2 int
	// Long allows scenarios whose expected detection exceeds LongThreshold.
	Long bool
	// Userspace forces the unprivileged mode (only scenarios a userspace proxy can reproduce).
	Userspace bool
	// IdleClose is the middlebox's idle timeout (default 2s).
	IdleClose time.Duration
	// StateTimeout is the firewall's conntrack established timeout (default 3s).
	StateTimeout time.Duration
	// Status, if set, receives a one-line progress message about once a second.
	Status func(string)
}

// MaxStateTimeout is the longest StateTimeout: the kernel refuses a
// conntrack timeout (in jiffies, an int) of more than INT_MAX/HZ seconds,
// and HZ is at most 1000.
const MaxStateTimeout = (1<<31 - 1) / 1000 * time.Second

// LongThreshold: scenarios expected to take longer need Options.Long.
const LongThreshold = 2 * time.Minute

func (o Options) withDefaults() Options {
	if o.IdleClose <= 0 {
		o.IdleClose = 2 * time.Second
	}
	if o.StateTimeout <= 0 {
		o.StateTimeout = 3 * time.Second
	}
	return o
}

// Kernel is the kernel model for the lab's namespaces under o.
func (o Options) Kernel() keepalive.Kernel {
	k := keepalive.DefaultKernel()
	if o.Retries2 != 0 {
		k.Retries2 = o.Retries2
	}
	return k
}

// Validate rejects options the kernel would refuse.
func (o Options) Validate() error {
	if err := o.Settings.Validate(); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if o.Retries2 > 255 {
		return fmt.Errorf("lab: retries2 %d: want at most 255 (negative: 0)", o.Retries2)
	}
	if o.IdleClose < 0 || o.StateTimeout < 0 || (o.StateTimeout > 0 && o.StateTimeout%time.Second != 0) || o.StateTimeout > MaxStateTimeout {
		return fmt.Errorf("lab: idle-close and state-timeout must be positive, state-timeout in whole seconds up to %v", MaxStateTimeout)
	}
	return nil
}

// Expected returns what the kernel model predicts for the client and the server
// in scenario sc, counted from the fault. For firewall-expiry the fault is the
// client's first send after the state expired; lastRecv is how long before it the
// connection last carried a packet (only used there; negative counts as 0).
func (sc Scenario) Expected(o Options, lastRecv time.Duration) (client, server keepalive.Detection) {
	o = o.withDefaults()
	lastRecv = max(lastRecv, 0) // so that After - lastRecv cannot overflow
	k := o.Kernel()
	s := o.Settings
	idle := keepalive.Detect(keepalive.Idle, s, k)
	send := keepalive.Detect(keepalive.Sending, s, k)
	eff := s.Effective(k)
	switch sc.kind {
	case kindIdleClose:
		fin := keepalive.Detection{Timer: "none", Rule: "FIN from the middlebox: the blocked read returns EOF at once"}
		return fin, fin
	case kindExpiry:
		if eff.Enabled() && eff.Idle < o.StateTimeout {
			kept := keepalive.Detection{Never: true, Timer: "keepalive",
				Rule: fmt.Sprintf("I = %s < state timeout %s: probes keep the firewall's state alive", keepalive.FormatDuration(eff.Idle), keepalive.FormatDuration(o.StateTimeout))}
			return kept, kept
		}
		server = idle
		if !idle.Never {
			server.After = max(0, idle.After-lastRecv)
			server.Rule += fmt.Sprintf(" - %s already idle", keepalive.FormatDuration(lastRecv))
		}
		return send, server
	}
	switch sc.fault {
	case FaultReset:
		server = keepalive.Detection{After: streamEvery, Timer: "none",
			Rule: "RST answers the next data segment: within one send period (" + keepalive.FormatDuration(streamEvery) + ")"}
		client = keepalive.Detection{Never: true, Timer: "none", Rule: "keepalive off: the idle reader never sends, so never gets the RST"}
		if eff.Enabled() {
			client = keepalive.Detection{After: eff.Idle, Timer: "keepalive",
				Rule: "RST answers the first keepalive probe: I = " + keepalive.FormatDuration(eff.Idle)}
		}
		return client, server
	}
	if sc.fault == FaultDropToClient {
		if rst, ok := peerRST(idle, send); ok {
			return idle, rst
		}
	}
	if sc.stream {
		return idle, send
	}
	return idle, idle
}

// peerRST: with only server->client dropped, the client's keepalive gives up
// first and its kernel sends a RST (tcp_keepalive_timer), which reaches the
// server: the server then learns at the client's detection time.
func peerRST(client, server keepalive.Detection) (keepalive.Detection, bool) {
	if client.Never || (!server.Never && server.After <= client.After) {
		return server, false
	}
	return keepalive.Detection{After: client.After, Timer: "peer's RST",
		Rule: "the client's keepalive aborts at " + keepalive.FormatDuration(client.After) +
			" and sends a RST, which the one-way drop lets through (before the server's " + server.Timer + " timer)"}, true
}

// expectedUserspace is the model for the unprivileged proxy mode: the proxy acts
// at the fault instant, so both sides learn at once.
func (sc Scenario) expectedUserspace() (client, server keepalive.Detection) {
	if sc.kind == kindIdleClose {
		d := keepalive.Detection{Timer: "none", Rule: "FIN from the proxy: the blocked read returns EOF at once"}
		return d, d
	}
	d := keepalive.Detection{Timer: "none", Rule: "RST from the proxy: the blocked read returns ECONNRESET at once"}
	return d, d
}

// ParseNames checks scenario names, each one or several separated by
// commas, without regard to case; no names means the default set, but
// names that name no scenario ("", " , ") are an error.
func ParseNames(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return append([]Scenario(nil), Scenarios...), nil
	}
	seen := map[string]bool{}
	var out []Scenario
	for _, n := range names {
		for _, part := range strings.Split(n, ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			if part == "" || seen[part] {
				continue
			}
			sc, ok := Lookup(part)
			if !ok {
				known := Names()
				sort.Strings(known)
				return nil, fmt.Errorf("lab: unknown scenario %q (known: %s)", part, strings.Join(known, ", "))
			}
			seen[part] = true
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lab: no scenario named in %q", strings.Join(names, ","))
	}
	return out, nil
}

// ExpectedErrors returns the error each side should see first.
func (sc Scenario) ExpectedErrors(o Options, userspace bool) (client, server string) {
	switch {
	case !userspace && sc.fault == FaultDropToClient:
		c, srv := sc.Expected(o, 0)
		if srv.Timer == "peer's RST" && !c.Never {
			return "ETIMEDOUT", "ECONNRESET"
		}
	case sc.kind == kindIdleClose:
		return "EOF", "EOF"
	case sc.fault == FaultReset:
		return "ECONNRESET", "ECONNRESET"
	case userspace:
		return "ECONNRESET", "ECONNRESET"
	case sc.fault == FaultUnreachable:
		// The kernel ignores ICMP for a keepalive probe (its sequence number is
		// below snd_una, out of window): only the side with data in flight gets
		// EHOSTUNREACH.
		return "ETIMEDOUT", "EHOSTUNREACH"
	}
	return "ETIMEDOUT", "ETIMEDOUT"
}
