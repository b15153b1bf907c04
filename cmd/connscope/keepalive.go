package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/connscope/connscope/keepalive"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newKeepaliveCmd groups the keepalive subcommands (server, client, lab, explain).
func newKeepaliveCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keepalive",
		Short: "Measure and explain how fast TCP settings detect a dead connection",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("%s: missing subcommand", cmd.CommandPath())
		},
	}
	cmd.AddCommand(
		newKeepaliveServerCmd(stdout),
		newKeepaliveClientCmd(stdout),
		newKeepaliveExplainCmd(stdout),
		newKeepaliveLabCmd(stdout, stderr),
	)
	return cmd
}

// settingsFlags are the keepalive flags server, client and explain share.
type settingsFlags struct {
	keepalive                  string
	idle, interval, userTimout time.Duration
	count                      int
	// unsetIsOS: unset keepalive flags mean the kernel's values (explain),
	// not Go's defaults (server and client, whose sockets get Go's).
	unsetIsOS bool
}

func (f *settingsFlags) add(fs *pflag.FlagSet, withShortcut bool) {
	if withShortcut {
		fs.StringVar(&f.keepalive, "keepalive", "", "keepalive as off, default (Go's 15s/15s/9), os (the kernel's) or IDLE/INTERVAL/COUNT, e.g. 2s/1s/3")
	}
	// Server and client sockets get Go's keepalive unless a flag asks
	// otherwise; then what no flag sets is left to the kernel.
	unset := "unset: the kernel's"
	if !f.unsetIsOS {
		unset = "unset: the kernel's, or Go's 15s/15s/9 if none of --idle, --interval, --count is given"
	}
	fs.DurationVar(&f.idle, "idle", 0, "keepalive idle time TCP_KEEPIDLE (whole seconds; "+unset+")")
	fs.DurationVar(&f.interval, "interval", 0, "keepalive probe interval TCP_KEEPINTVL ("+unset+")")
	fs.IntVar(&f.count, "count", 0, "unanswered keepalive probes before the abort TCP_KEEPCNT ("+unset+")")
	fs.DurationVar(&f.userTimout, "user-timeout", 0, "TCP_USER_TIMEOUT (unset: not set)")
}

// settings returns the settings the flags ask for; nil means none were
// given and the caller keeps its default.
func (f *settingsFlags) settings(fs *pflag.FlagSet) (*keepalive.Settings, error) {
	var s keepalive.Settings
	detail := fs.Changed("idle") || fs.Changed("interval") || fs.Changed("count")
	shortcut := fs.Changed("keepalive") // even if empty: "" is no setting
	switch {
	case shortcut && detail:
		return nil, usagef("--keepalive and --idle/--interval/--count: give one or the other")
	case shortcut:
		p, err := keepalive.ParseSettings(f.keepalive)
		if err != nil {
			return nil, usagef("--keepalive: %v", strings.TrimPrefix(err.Error(), "keepalive: "))
		}
		if p.UserTimeout > 0 && fs.Changed("user-timeout") {
			return nil, usagef("--user-timeout and --keepalive %q: give the user timeout once", f.keepalive)
		}
		s = p
	case detail:
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"idle", f.idle}, {"interval", f.interval}} {
			if fs.Changed(d.name) && (d.v < time.Second || d.v%time.Second != 0 || d.v > 32767*time.Second) {
				return nil, usagef("--%s %v: want whole seconds from 1s to 32767s", d.name, d.v)
			}
		}
		if fs.Changed("count") && (f.count < 1 || f.count > 127) {
			return nil, usagef("--count %d: want 1 to 127", f.count)
		}
		s = keepalive.Settings{Idle: f.idle, Interval: f.interval, Count: f.count}
	case !fs.Changed("user-timeout"):
		return nil, nil
	}
	if fs.Changed("user-timeout") {
		if f.userTimout <= 0 || f.userTimout%time.Millisecond != 0 || f.userTimout > maxUserTimeout {
			return nil, usagef("--user-timeout %v: want whole milliseconds from 1ms to %v", f.userTimout, maxUserTimeout)
		}
		s.UserTimeout = f.userTimout
		if !shortcut && !detail && !f.unsetIsOS {
			// --user-timeout alone keeps Go's keepalive defaults.
			s.Idle, s.Interval, s.Count = keepalive.GoDefault.Idle, keepalive.GoDefault.Interval, keepalive.GoDefault.Count
		}
	}
	if err := s.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	return &s, nil
}

// maxUserTimeout is the longest TCP_USER_TIMEOUT: milliseconds in an int.
const maxUserTimeout = (1<<31 - 1) * time.Millisecond

// endpointFlags are the behaviour flags of server and client.
type endpointFlags struct {
	settingsFlags
	port                         int
	pattern                      string
	every, readDeadline, heartbt time.Duration
	verbose                      bool
}

func (f *endpointFlags) add(fs *pflag.FlagSet, defaultPattern keepalive.Pattern) {
	f.settingsFlags.add(fs, true)
	fs.IntVar(&f.port, "port", keepalive.DefaultPort, "TCP port")
	fs.StringVar(&f.pattern, "pattern", string(defaultPattern), "what to send: stream (a line every --every), burst (1 MiB, then idle), idle, stop-reading (zero window for the peer) or flood")
	fs.DurationVar(&f.every, "every", 500*time.Millisecond, "interval of the stream pattern")
	fs.DurationVar(&f.readDeadline, "read-deadline", 0, "give up when nothing was received for this long (0: no deadline)")
	fs.DurationVar(&f.heartbt, "heartbeat", 0, "send an application ping this often; give up after 3 unanswered (0: off)")
	fs.BoolVar(&f.verbose, "verbose", false, "log every line received")
}

func (f *endpointFlags) endpoint(fs *pflag.FlagSet, stdout io.Writer) (keepalive.Endpoint, error) {
	var e keepalive.Endpoint
	s, err := f.settings(fs)
	if err != nil {
		return e, err
	}
	p, err := keepalive.ParsePattern(f.pattern)
	if err != nil {
		return e, usagef("--pattern: %v", strings.TrimPrefix(err.Error(), "keepalive: "))
	}
	if f.port < 1 || f.port > 65535 {
		return e, usagef("--port %d: want 1 to 65535", f.port)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"every", f.every}, {"read-deadline", f.readDeadline}, {"heartbeat", f.heartbt}} {
		if d.v < 0 || (d.name == "every" && d.v == 0) {
			return e, usagef("--%s %v: want a positive duration", d.name, d.v)
		}
	}
	return keepalive.Endpoint{Settings: s, Pattern: p, Every: f.every, ReadDeadline: f.readDeadline,
		Heartbeat: f.heartbt, Log: stdout, Verbose: f.verbose}, nil
}

type keepaliveServerOpts struct {
	Addr   string
	Server keepalive.Server
}

func newKeepaliveServerCmd(stdout io.Writer) *cobra.Command {
	var f endpointFlags
	var addr string
	cmd := &cobra.Command{
		Use:   "server [flags]",
		Short: "Accept connections and stream to them, logging JSON lines (the seed's server)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.endpoint(cmd.Flags(), stdout)
			if err != nil {
				return err
			}
			if err := checkHost("--addr", addr); err != nil {
				return err
			}
			err = runKeepaliveServer(cmd.Context(), keepaliveServerOpts{Server: keepalive.Server{Endpoint: e, Addr: addr, Port: f.port}}, stdout)
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return usagef("--addr %s: not an address of this host (%v)", addr, err)
			}
			return hostError("--addr", addr, err)
		},
	}
	f.add(cmd.Flags(), keepalive.Stream)
	// Loopback unless told otherwise: the experiment's server is not for the world.
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1", "address to listen on (0.0.0.0 or :: for every address)")
	return cmd
}

// runKeepaliveServer serves until ctx is done. Events go to opts.Server.Log
// (stdout when nil).
func runKeepaliveServer(ctx context.Context, opts keepaliveServerOpts, stdout io.Writer) error {
	srv := opts.Server
	if srv.Log == nil {
		srv.Log = stdout
	}
	ln, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, ln)
}

type keepaliveClientOpts struct {
	Host   string
	Client keepalive.Client
}

func newKeepaliveClientCmd(stdout io.Writer) *cobra.Command {
	var f endpointFlags
	var dialTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "client HOST [flags]",
		Short: "Connect to a keepalive server and log, as JSON lines, when and how the connection fails",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s: want exactly one HOST, got %d arguments", cmd.CommandPath(), len(args))
			}
			return checkHost("HOST", args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.endpoint(cmd.Flags(), stdout)
			if err != nil {
				return err
			}
			if dialTimeout <= 0 {
				return usagef("--dial-timeout %v: want a positive duration", dialTimeout)
			}
			err = runKeepaliveClient(cmd.Context(), keepaliveClientOpts{Host: args[0],
				Client: keepalive.Client{Endpoint: e, Port: f.port, DialTimeout: dialTimeout}}, stdout)
			return hostError("HOST", args[0], err)
		},
	}
	f.add(cmd.Flags(), keepalive.Quiet)
	cmd.Flags().DurationVar(&dialTimeout, "dial-timeout", 10*time.Second, "give up connecting after this long")
	return cmd
}

// runKeepaliveClient runs one connection until it fails (exit 0: the
// failure is the experiment's result, logged) or ctx is done.
func runKeepaliveClient(ctx context.Context, opts keepaliveClientOpts, stdout io.Writer) error {
	cli := opts.Client
	if cli.Log == nil {
		cli.Log = stdout
	}
	r, err := cli.DialAndRun(ctx, opts.Host)
	if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
		return err
	}
	if !r.Detected.IsZero() {
		since := r.Detected.Sub(r.Connected)
		if !r.LastRecv.IsZero() {
			since = r.Detected.Sub(r.LastRecv)
		}
		fmt.Fprintf(stdout, `{"time":%q,"side":"client","event":"detected","op":%q,"errno":%q,"since_recv_ms":%.0f}`+"\n",
			r.Detected.Format(time.RFC3339Nano), r.Op, r.Errno, float64(since)/float64(time.Millisecond))
	}
	return nil
}

type keepaliveExplainOpts struct {
	Settings     keepalive.Settings
	Kernel       keepalive.Kernel
	Path         keepalive.Path
	JSON         bool
	SettingsText string // how the settings were given, for the header
}

func newKeepaliveExplainCmd(stdout io.Writer) *cobra.Command {
	f := settingsFlags{unsetIsOS: true}
	var retries2, synRetries int
	var lbIdle time.Duration
	var idleTimeouts []time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain [flags]",
		Short: "Print the worst-case time to detect a dead peer in each situation, and recommended settings",
		Long: `Explain prints, for the given settings, how long the kernel takes to give up on a
connection whose peer vanished silently, in each situation: idle (the keepalive
timer), sending with unacknowledged data (the retransmission timer), peer not
reading (the persist timer) and connecting (SYN retries). Unset keepalive flags
mean the kernel's value, as on a socket where they were not set.`,
		Example: "  connscope keepalive explain --idle 2s --interval 1s --count 3 --user-timeout 5s --lb-idle 60s",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.settings(cmd.Flags())
			if err != nil {
				return err
			}
			if s == nil {
				s = &keepalive.Settings{}
			}
			fs := cmd.Flags()
			if fs.Changed("retries2") && (retries2 < 0 || retries2 > 255) {
				return usagef("--retries2 %d: want 0 to 255", retries2)
			}
			if fs.Changed("syn-retries") && (synRetries < 1 || synRetries > 127) {
				return usagef("--syn-retries %d: want 1 to 127", synRetries)
			}
			// Below 1ms no timeout is real, and 90% of 1ns, the
			// recommended IdleConnTimeout, is 0: no limit.
			if lbIdle < 0 || (lbIdle > 0 && lbIdle < time.Millisecond) {
				return usagef("--lb-idle %v: want 1ms or more (0: no load balancer)", lbIdle)
			}
			for _, d := range idleTimeouts {
				if d < time.Millisecond {
					return usagef("--path-idle %v: want 1ms or more", d)
				}
			}
			// This host's values, as a socket here gets them; Linux's
			// defaults where they cannot be read. A value that can be read
			// but not modelled is an error: defaults would mislead.
			k, err := keepalive.ReadKernel()
			var se *keepalive.SysctlError
			if errors.As(err, &se) {
				return err
			}
			if err != nil {
				k = keepalive.DefaultKernel()
			}
			if fs.Changed("retries2") {
				k.Retries2 = retries2
				if retries2 == 0 {
					// A sysctl of 0 is real (give up at the first RTO
					// expiry); 0 in Kernel means "Linux's default".
					k.Retries2 = -1
				}
			}
			if fs.Changed("syn-retries") {
				k.SynRetries = synRetries
			}
			return runKeepaliveExplain(cmd.Context(), keepaliveExplainOpts{Settings: *s, Kernel: k,
				Path: keepalive.Path{LoadBalancer: lbIdle, IdleTimeouts: idleTimeouts}, JSON: asJSON}, stdout)
		},
	}
	f.add(cmd.Flags(), true)
	fs := cmd.Flags()
	fs.IntVar(&retries2, "retries2", 0, retries2Help("", "this host's, 15 on Linux"))
	fs.IntVar(&synRetries, "syn-retries", 0, "net.ipv4.tcp_syn_retries (default: this host's, 6 on Linux)")
	fs.DurationVar(&lbIdle, "lb-idle", 0, "idle timeout of an HTTP load balancer in front of the server (AWS ALB: 60s)")
	fs.DurationSliceVar(&idleTimeouts, "path-idle", nil, "idle timeout of a NAT, conntrack or firewall on the path (repeatable)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// runKeepaliveExplain prints the detection table and the recommendation.
func runKeepaliveExplain(ctx context.Context, opts keepaliveExplainOpts, stdout io.Writer) error {
	s, k := opts.Settings, opts.Kernel
	rec := keepalive.Recommend(s, k, opts.Path)
	if opts.JSON {
		type settingsView struct {
			Text        string   `json:"text"`
			Keepalive   bool     `json:"keepalive"`
			IdleS       *float64 `json:"idle_s,omitempty"`     // 0 where tcp_keepalive_time is 0
			IntervalS   *float64 `json:"interval_s,omitempty"` // 0 where tcp_keepalive_intvl is 0
			Count       *int     `json:"count,omitempty"`      // 0 where tcp_keepalive_probes is 0
			UserTimeout float64  `json:"user_timeout_s,omitempty"`
		}
		view := func(s keepalive.Settings) settingsView {
			e := s.Effective(k)
			v := settingsView{Text: s.String(), Keepalive: e.Enabled(), UserTimeout: e.UserTimeout.Seconds()}
			if e.Enabled() {
				idle, interval := e.Idle.Seconds(), e.Interval.Seconds()
				v.IdleS, v.IntervalS, v.Count = &idle, &interval, &e.Count
			}
			return v
		}
		out := struct {
			Settings       settingsView                                `json:"settings"`
			Kernel         map[string]any                              `json:"kernel"`
			Detect         map[keepalive.Situation]keepalive.Detection `json:"detect"`
			Recommendation struct {
				Settings             settingsView                                `json:"settings"`
				Detect               map[keepalive.Situation]keepalive.Detection `json:"detect"`
				IdleConnTimeoutS     float64                                     `json:"idle_conn_timeout_s,omitempty"`
				HTTP2SendPingTimeout float64                                     `json:"http2_send_ping_timeout_s"`
				HTTP2PingTimeout     float64                                     `json:"http2_ping_timeout_s"`
				Notes                []string                                    `json:"notes"`
			} `json:"recommendation"`
		}{Settings: view(s), Detect: map[keepalive.Situation]keepalive.Detection{}}
		kd := k
		out.Kernel = map[string]any{"tcp_keepalive_time_s": max(kd.KeepaliveTime, 0).Seconds(), "tcp_keepalive_intvl_s": max(kd.KeepaliveIntvl, 0).Seconds(), // negative: the sysctl is 0
			"tcp_keepalive_probes": max(kd.KeepaliveProbes, 0), "tcp_retries2": max(kd.Retries2, 0), "tcp_syn_retries": kd.SynRetries,
			"rto_min_s": kd.RTOMin.Seconds(), "rto_max_s": kd.RTOMax.Seconds()}
		if lin, ok := synLinearTimeouts(kd); ok {
			out.Kernel["tcp_syn_linear_timeouts"] = lin
		}
		for _, sit := range keepalive.Situations {
			out.Detect[sit] = keepalive.Detect(sit, s, k)
		}
		r := &out.Recommendation
		r.Settings, r.Detect, r.Notes = view(rec.Settings), rec.Detect, rec.Notes
		r.IdleConnTimeoutS = rec.IdleConnTimeout.Seconds()
		r.HTTP2SendPingTimeout, r.HTTP2PingTimeout = rec.HTTP2SendPingTimeout.Seconds(), rec.HTTP2PingTimeout.Seconds()
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}

	e := s.Effective(k)
	fmt.Fprintf(stdout, "settings: keepalive %s", s)
	if s.Enabled() && e != s {
		fmt.Fprintf(stdout, " (effective %s/%s/%d)", keepalive.FormatDuration(e.Idle), keepalive.FormatDuration(e.Interval), e.Count)
	}
	lin := "no tcp_syn_linear_timeouts (before Linux 6.5)"
	if n, ok := synLinearTimeouts(k); ok {
		lin = fmt.Sprintf("tcp_syn_linear_timeouts %d", n)
	}
	fmt.Fprintf(stdout, "\nkernel:   tcp_keepalive %s/%s/%d, tcp_retries2 %d, RTO %s to %s, tcp_syn_retries %d, %s\n\n",
		keepalive.FormatDuration(max(k.KeepaliveTime, 0)), keepalive.FormatDuration(max(k.KeepaliveIntvl, 0)), max(k.KeepaliveProbes, 0), // negative: the sysctl is 0
		max(k.Retries2, 0), keepalive.FormatDuration(k.RTOMin), keepalive.FormatDuration(k.RTOMax), k.SynRetries, lin)
	table := func(s keepalive.Settings) {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SITUATION\tDETECTED AFTER\tTIMER\tRULE")
		for _, sit := range keepalive.Situations {
			d := keepalive.Detect(sit, s, k)
			when := keepalive.FormatDuration(d.After)
			if d.Never {
				when = "never"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sit, when, d.Timer, d.Rule)
		}
		tw.Flush()
	}
	table(s)
	fmt.Fprintln(stdout, "\nidle: after the last packet received; sending: after the first unacknowledged send;")
	fmt.Fprintln(stdout, "zero-window: after probing starts; connect: after the first SYN. Worst cases, no RST or ICMP.")
	for _, sit := range keepalive.Situations {
		if d := keepalive.Detect(sit, s, k); d.Note != "" {
			fmt.Fprintf(stdout, "  %s: %s\n", sit, d.Note)
		}
	}

	fmt.Fprintf(stdout, "\nrecommended: keepalive %s\n\n", rec.Settings)
	table(rec.Settings)
	fmt.Fprintln(stdout)
	for _, n := range rec.Notes {
		fmt.Fprintf(stdout, "- %s\n", n)
	}
	rs := rec.Settings
	fmt.Fprintf(stdout, "\nin Go:\n\tkeepalive.Apply(&dialer, keepalive.Settings{Idle: %s, Interval: %s, Count: %d, UserTimeout: %s})\n",
		goDur(rs.Idle), goDur(rs.Interval), rs.Count, goDur(rs.UserTimeout))
	if rec.IdleConnTimeout > 0 {
		fmt.Fprintf(stdout, "\ttransport.IdleConnTimeout = %s\n", goDur(rec.IdleConnTimeout))
	}
	fmt.Fprintf(stdout, "\ttransport.HTTP2 = &http.HTTP2Config{SendPingTimeout: %s, PingTimeout: %s}\n",
		goDur(rec.HTTP2SendPingTimeout), goDur(rec.HTTP2PingTimeout))
	return nil
}

// synLinearTimeouts returns tcp_syn_linear_timeouts as the connect rule
// counts it, and false on a kernel without the sysctl (before Linux 6.5).
func synLinearTimeouts(k keepalive.Kernel) (int, bool) {
	switch {
	case k.SynLinearTimeoutsAbsent:
		return 0, false
	case k.SynLinearTimeouts == 0:
		return 4, true // Kernel's zero: Linux's default
	default:
		return max(k.SynLinearTimeouts, 0), true // negative: the sysctl is 0
	}
}

// checkHost refuses a host that cannot be one: empty (the server would
// listen on loopback only, the client dial this host), or with a port or
// brackets, which net.JoinHostPort would nest.
func checkHost(name, h string) error {
	if h == "" {
		return usagef("%s is empty: want a host name or an IP address (0.0.0.0 or :: for every address)", name)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if z := a.Zone(); z != "" && !interfaceExists(z) {
			return usagef("%s %q: no network interface %q on this host", name, h, z)
		}
		return nil
	}
	if strings.ContainsAny(h, ":[]/ ") {
		return usagef("%s %q: want a host name or an IP address, without brackets or port (the port is --port)", name, h)
	}
	// RFC 6761 asks resolvers to fail these at once; Go's asks the DNS.
	if n := strings.ToLower(strings.TrimSuffix(h, ".")); n == "invalid" || strings.HasSuffix(n, ".invalid") {
		return usagef("%s %q does not resolve: names under .invalid never do (RFC 6761)", name, h)
	}
	return nil
}

// interfaceExists reports whether zone, an IPv6 zone as Go's net package
// takes it (a name or an index), names an interface of this host.
func interfaceExists(zone string) bool {
	if _, err := net.InterfaceByName(zone); err == nil {
		return true
	}
	i, err := strconv.Atoi(zone)
	if err != nil {
		return false
	}
	_, err = net.InterfaceByIndex(i)
	return err == nil
}

// hostError names the argument whose host could not be looked up. A name
// that does not exist is a mistake on the command line (exit 2), like any
// other bad argument; a resolver that fails (timeout, SERVFAIL) is not.
func hostError(name, host string, err error) error {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return err
	}
	if de.IsNotFound {
		return usagef("%s %q does not resolve: %v", name, host, de)
	}
	return fmt.Errorf("%s %q: %w", name, host, de)
}

// retries2Help is the help of --retries2, which explain and lab share: 0 is
// what the sysctl at 0 does, in both.
func retries2Help(where, unset string) string {
	return "net.ipv4.tcp_retries2" + where + ", 0 to 255: retransmissions of unacknowledged data before the abort; " +
		"0 aborts at the first retransmission timeout, as the sysctl does (unset: " + unset + ")"
}

// goDur writes d as a Go expression: 90 * time.Second.
func goDur(d time.Duration) string {
	switch {
	case d%time.Second == 0:
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	default:
		return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
	}
}
