package keepalive

import (
	"fmt"
	"slices"
	"time"
)

// Path describes what lies between the two ends of a connection.
type Path struct {
	// IdleTimeouts are the idle timeouts of the middleboxes on the path:
	// load balancers (AWS ALB 60 s, NLB 350 s, Azure 4 min), NAT gateways,
	// conntrack, stateful firewalls.
	IdleTimeouts []time.Duration
	// LoadBalancer is the idle timeout of an HTTP load balancer in front of
	// the server, if any (AWS ALB 60 s). Zero means none.
	LoadBalancer time.Duration
}

// Recommendation is a set of settings that detect a dead peer in every
// situation within about the same time, and keep middleboxes from
// forgetting idle connections.
type Recommendation struct {
	Settings Settings `json:"settings"`
	// Detect is the worst-case detection per situation with Settings.
	Detect map[Situation]Detection `json:"detect"`
	// IdleConnTimeout is for http.Transport: below the load balancer's idle
	// timeout, so the client closes an idle pooled connection before the
	// load balancer does (the reuse race). Zero if no load balancer is known.
	IdleConnTimeout time.Duration `json:"idle_conn_timeout,omitempty"`
	// HTTP2SendPingTimeout and HTTP2PingTimeout are for http.HTTP2Config
	// (x/net/http2: ReadIdleTimeout and PingTimeout): an HTTP/2 connection
	// with nothing read for SendPingTimeout sends a PING and is closed if no
	// answer comes within PingTimeout.
	HTTP2SendPingTimeout time.Duration `json:"http2_send_ping_timeout"`
	HTTP2PingTimeout     time.Duration `json:"http2_ping_timeout"`
	// Notes explain each choice, one sentence each.
	Notes []string `json:"notes"`
}

// Recommend proposes settings starting from current: keepalive idle below
// every idle timeout on the path, and Go's 15 s where current leaves a
// longer one to the kernel (Linux's is 2 h), explicit interval and count
// (the kernel's 75 s × 9 is the seed's 12-minute trap: Go's 15 s × 9,
// unless the kernel's are shorter), TCP_USER_TIMEOUT ≈ I + V×C so a
// connection with unacknowledged data or a zero window is given up as
// soon as an idle one (but no later than a send, or an idle connection,
// is given up with current), an http.Transport IdleConnTimeout below the
// load balancer's idle timeout, and HTTP/2 ping health checks. No
// situation is detected later than with current, except where a sysctl
// at 0 that current leaves to the kernel aborts even a live connection.
// Values of current that Validate refuses are first brought into range:
// times to whole seconds from 1 s to 32767 s, the count to at most 127.
func Recommend(current Settings, k Kernel, p Path) Recommendation {
	k = k.withDefaults()
	var r Recommendation
	e := current.Effective(k)
	if !e.Enabled() {
		e = GoDefault
		r.Notes = append(r.Notes, "Turn keepalive on: without it an idle connection to a vanished peer is never given up.")
	}
	// Values Validate refuses (built in code: 1.5 s, 1 ns, 1000 probes)
	// are brought into range, rounded down where they can be, so that
	// what is recommended can be applied and detects no later.
	idle, interval, count := settingInRange(e.Idle), settingInRange(e.Interval), min(e.Count, maxCount)
	if idle == 0 {
		// Only tcp_keepalive_time = 0 gets here; 0 in Settings would mean
		// it again. The first probe then comes up to V after the last
		// packet: an idle of V (at most Go's) is no later.
		idle = GoDefault.Idle
		why := "Go's default"
		if interval >= time.Second && interval < idle {
			idle, why = interval.Truncate(time.Second), "the interval, which the first probe waits now"
		}
		r.Notes = append(r.Notes, fmt.Sprintf("Set idle explicitly: tcp_keepalive_time is 0 here, so keepalive probes every interval from the start (or aborts at once); %s is %s.",
			FormatDuration(idle), why))
	}

	if current.Idle == 0 && idle > GoDefault.Idle {
		// Left to the kernel (Linux: 2 h), keepalive finds a vanished peer
		// hours late, and a U ≈ I + V×C to match would make a send to it
		// hang as long.
		r.Notes = append(r.Notes, fmt.Sprintf("Set idle explicitly: left to the kernel it is %s here (tcp_keepalive_time), and it follows each host's sysctl; %s is Go's default.",
			FormatDuration(idle), FormatDuration(GoDefault.Idle)))
		idle = GoDefault.Idle
	}

	shortest := time.Duration(0)
	all := slices.Clone(p.IdleTimeouts)
	if p.LoadBalancer > 0 {
		all = append(all, p.LoadBalancer)
	}
	for _, t := range all {
		if t > 0 && (shortest == 0 || t < shortest) {
			shortest = t
		}
	}
	if shortest > 0 && idle >= shortest {
		// Half the timeout leaves room for a lost probe and the interval.
		idle = max(time.Second, (shortest / 2).Truncate(time.Second))
		if idle < shortest {
			r.Notes = append(r.Notes, fmt.Sprintf("Keepalive idle %s, below the shortest idle timeout on the path (%s), keeps NAT, conntrack and NLB state alive.",
				FormatDuration(idle), FormatDuration(shortest)))
		} else {
			// TCP_KEEPIDLE counts whole seconds from 1.
			r.Notes = append(r.Notes, fmt.Sprintf("No keepalive idle can stay below the shortest idle timeout on the path (%s): the kernel's shortest is 1s. TCP keepalive cannot keep that state alive; close idle connections before it (IdleConnTimeout) or send application pings more often.",
				FormatDuration(shortest)))
		}
	}
	if current.Idle >= 0 && (current.Interval <= 0 || current.Count <= 0) {
		r.Notes = append(r.Notes, kernelLeftNote(current, k))
		// Go's 15 s × 9, but not where the kernel's are shorter: they
		// detect sooner (a sysctl at 0 does not count: see the note).
		if current.Interval <= 0 && (interval <= 0 || interval > 15*time.Second) {
			interval = min(idle, 15*time.Second)
		}
		if current.Count <= 0 && (count <= 0 || count > 9) {
			count = 9
		}
	}
	if interval > idle {
		interval = idle
	}
	ideal := addSat(idle, mulSat(interval, int64(count)))
	u := ideal
	if u > maxUserTimeout {
		// The kernel takes milliseconds in an int: Apply would refuse more.
		u = maxUserTimeout
		r.Notes = append(r.Notes, fmt.Sprintf("TCP_USER_TIMEOUT capped at the kernel's largest, %s: I + V×C is longer.", FormatDuration(u)))
	}
	if now := Detect(Sending, current, k); !now.Never && u > now.After && u > current.UserTimeout {
		// A longer U would leave a send to a vanished peer hanging longer
		// than retransmissions do now. A U under I + V×C only cuts
		// keepalive's probing short: a dead idle peer is given up sooner.
		r.Notes = append(r.Notes, fmt.Sprintf("TCP_USER_TIMEOUT kept at %s, what gives up a send to a vanished peer now: I + V×C = %s is longer.",
			FormatDuration(now.After), FormatDuration(ideal)))
		u = max(now.After.Truncate(time.Millisecond), time.Millisecond) // 0 would be no U at all
	}
	// With U set, an idle connection is given up at the first keepalive
	// firing at or after U. A U kept from current, on firings that a
	// shorter idle or interval moved, can make that later than now: U at
	// the last firing before the abort now keeps it no later.
	now := Detect(Idle, current, k)
	rec := Detect(Idle, Settings{Idle: idle, Interval: interval, Count: count, UserTimeout: u}, k)
	if n := (now.After - idle) / interval; !now.Never && rec.After > now.After && n >= 1 {
		u = min(addSat(idle, mulSat(interval, int64(n))), maxUserTimeout)
		r.Notes = append(r.Notes, fmt.Sprintf("TCP_USER_TIMEOUT %s = I + V×%d, the last keepalive firing before an idle connection is given up now (%s): the abort comes at the first firing at or after U.",
			FormatDuration(u), n, FormatDuration(now.After)))
	}
	if u != current.UserTimeout {
		what := FormatDuration(u)
		if u == ideal {
			what += " = I + V×C"
		}
		r.Notes = append(r.Notes, fmt.Sprintf("TCP_USER_TIMEOUT %s: with unacknowledged data keepalive does nothing and retransmissions run %s (tcp_retries2 %d); with a zero window the kernel never gives up.",
			what, FormatDuration(Detect(Sending, Settings{}, k).After), max(k.Retries2, 0)))
	}
	r.Settings = Settings{Idle: idle, Interval: interval, Count: count, UserTimeout: u}
	r.Detect = make(map[Situation]Detection, len(Situations))
	for _, sit := range Situations {
		r.Detect[sit] = Detect(sit, r.Settings, k)
	}

	if p.LoadBalancer > 0 {
		// Any duration will do: whole seconds only where that stays below.
		// 9/10 without overflowing the product.
		below := p.LoadBalancer/10*9 + p.LoadBalancer%10*9/10
		r.IdleConnTimeout = below.Truncate(time.Second)
		if r.IdleConnTimeout < time.Second {
			r.IdleConnTimeout = max(below, 1) // 0 would mean no limit
		}
		r.Notes = append(r.Notes, fmt.Sprintf("http.Transport.IdleConnTimeout %s, below the load balancer's %s (Go's default 90 s is longer than an ALB's 60 s): the client must close idle connections first.",
			FormatDuration(r.IdleConnTimeout), FormatDuration(p.LoadBalancer)))
		r.Notes = append(r.Notes, "An ALB or Classic ELB counts only payload bytes: TCP keepalives (and HTTP/2 PINGs for an ALB) do not keep a connection open through it.")
	}
	r.HTTP2SendPingTimeout = idle
	r.HTTP2PingTimeout = mulSat(interval, int64(count))
	r.Notes = append(r.Notes, fmt.Sprintf("HTTP/2: http.HTTP2Config{SendPingTimeout: %s, PingTimeout: %s} (x/net/http2 ReadIdleTimeout, PingTimeout) detects a dead connection even with requests in flight.",
		FormatDuration(r.HTTP2SendPingTimeout), FormatDuration(r.HTTP2PingTimeout)))
	return r
}

// settingInRange brings a keepalive time d > 0 into what TCP_KEEPIDLE and
// TCP_KEEPINTVL take: whole seconds from 1 s to 32767 s.
func settingInRange(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return min(max(d.Truncate(time.Second), time.Second), maxSetting)
}

// kernelLeftNote says which of current's interval and count are left to
// the kernel, what they are on k, and what that does; the seed's 12 minutes
// only where they are Linux's 75 s × 9, which caused them.
func kernelLeftNote(current Settings, k Kernel) string {
	v, c := max(k.KeepaliveIntvl, 0), max(k.KeepaliveProbes, 0) // negative: the sysctl is 0
	var what, values, sysctls, pronoun string
	var effects []string
	switch {
	case current.Interval <= 0 && current.Count <= 0:
		what, values, sysctls, pronoun = "interval and count", fmt.Sprintf("they are %s × %d", FormatDuration(v), c),
			"tcp_keepalive_intvl, tcp_keepalive_probes", "they follow"
	case current.Interval <= 0:
		what, values, sysctls, pronoun = "interval", "it is "+FormatDuration(v), "tcp_keepalive_intvl", "it follows"
	default:
		what, values, sysctls, pronoun = "count", fmt.Sprintf("it is %d", c), "tcp_keepalive_probes", "it follows"
	}
	if current.Interval <= 0 && v == 0 {
		effects = append(effects, "an interval of 0 puts the probes one timer tick apart")
	}
	if current.Count <= 0 && c == 0 {
		effects = append(effects, "a count of 0 aborts at the first keepalive firing, without a probe")
	}
	if current.Interval <= 0 && current.Count <= 0 && v == 75*time.Second && c == 9 {
		effects = append(effects, "these are Linux's defaults, which turned the seed's 2 s idle into 12 minutes")
	}
	note := fmt.Sprintf("Set the %s explicitly: left to the kernel, %s here (%s), and %s each host's sysctls", what, values, sysctls, pronoun)
	for _, e := range effects {
		note += "; " + e
	}
	return note + "."
}
