package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/connscope/connscope/keepalive"
	"github.com/connscope/connscope/keepalive/lab"
)

// labOptions are the flags of "connscope keepalive lab".
type labOptions struct {
	scenarios                 []string
	list, cleanup, long, json bool
	userspace                 bool
	html                      string
	idle, interval, userTO    string
	idleClose, stateTimeout   string
	count, retries2           int
	retries2Set               bool // --retries2 given: 0 is a setting, not "unset"
}

func newKeepaliveLabCmd(stdout, stderr io.Writer) *cobra.Command {
	var o labOptions
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run dead-connection scenarios in network namespaces",
		Long: `Build a client, a router and a server network namespace joined by veth pairs,
inject a fault in the router (nftables on the FORWARD hook, or a middlebox relay),
and measure how long each side takes to notice, next to what the kernel's timers predict.

Needs root (CAP_NET_ADMIN). Without it, only the scenarios a userspace proxy can
reproduce run (idle-close, reset). Namespaces are named cslab-<pid>-...; --cleanup
removes those left by a crashed run.`,
		Example: `  connscope keepalive lab --list
  connscope keepalive lab --scenario drop-idle --idle 2s --interval 1s --count 3
  connscope keepalive lab --scenario drop-sending --user-timeout 5s --html lab.html
  connscope keepalive lab --scenario drop-sending --long     # tcp_retries2 15: ~15 min`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.retries2Set = cmd.Flags().Changed("retries2")
			return runKeepaliveLab(cmd.Context(), o, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.scenarios, "scenario", nil, "scenario to run (repeatable, or comma-separated; default: all; see --list)")
	f.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	f.BoolVar(&o.cleanup, "cleanup", false, "remove namespaces left by crashed runs and exit")
	f.StringVar(&o.idle, "idle", "2s", `keepalive idle time TCP_KEEPIDLE (whole seconds; "os" for the kernel's, "off" to disable keepalive)`)
	f.StringVar(&o.interval, "interval", "1s", `keepalive probe interval TCP_KEEPINTVL ("os" for the kernel's)`)
	f.IntVar(&o.count, "count", 3, "keepalive probes TCP_KEEPCNT (0 for the kernel's)")
	f.StringVar(&o.userTO, "user-timeout", "0", "TCP_USER_TIMEOUT (0: not set)")
	f.IntVar(&o.retries2, "retries2", 0, retries2Help(" inside the lab's namespaces", "the kernel's default, 15"))
	f.BoolVar(&o.long, "long", false, "also run scenarios expected to take more than 2 minutes")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringVar(&o.html, "html", "", "also write a self-contained HTML page with a chart to this file")
	f.BoolVar(&o.userspace, "userspace", false, "use the unprivileged userspace-proxy mode even as root")
	f.StringVar(&o.idleClose, "idle-close", "2s", "idle-close scenario: the middlebox's idle timeout")
	f.StringVar(&o.stateTimeout, "state-timeout", "3s", "firewall-expiry scenario: the firewall's conntrack timeout (whole seconds)")
	return cmd
}

// labFlags turns the flags into lab options; every mistake is a usage error
// that names its flag.
func labFlags(o labOptions) (lab.Options, []lab.Scenario, error) {
	var opt lab.Options
	dur := func(flag, v string, allowOS bool) (time.Duration, error) {
		if allowOS && (strings.EqualFold(v, "os") || v == "") {
			return 0, nil
		}
		d, err := keepalive.ParseDuration(v)
		if err != nil {
			return 0, usagef("--%s: %v", flag, err)
		}
		if d < 0 {
			return 0, usagef("--%s %s: want a positive duration", flag, v)
		}
		return d, nil
	}
	var err error
	s := &opt.Settings
	if strings.EqualFold(o.idle, "off") {
		s.Idle = -1
	} else if s.Idle, err = dur("idle", o.idle, true); err != nil {
		return opt, nil, err
	}
	if s.Interval, err = dur("interval", o.interval, true); err != nil {
		return opt, nil, err
	}
	if s.UserTimeout, err = dur("user-timeout", o.userTO, false); err != nil {
		return opt, nil, err
	}
	if o.count < 0 || o.count > 127 {
		return opt, nil, usagef("--count %d: want 0 (kernel default) to 127", o.count)
	}
	s.Count = o.count
	for _, c := range []struct {
		flag string
		s    keepalive.Settings
	}{
		{"idle", keepalive.Settings{Idle: max(s.Idle, 0)}},
		{"interval", keepalive.Settings{Interval: s.Interval}},
		{"user-timeout", keepalive.Settings{UserTimeout: s.UserTimeout}},
	} {
		if err := c.s.Validate(); err != nil {
			return opt, nil, usagef("--%s: %v", c.flag, strings.TrimPrefix(err.Error(), "keepalive: "))
		}
	}
	if o.retries2Set {
		if o.retries2 < 0 || o.retries2 > 255 {
			return opt, nil, usagef("--retries2 %d: want 0 to 255", o.retries2)
		}
		opt.Retries2 = o.retries2
		if o.retries2 == 0 {
			opt.Retries2 = -1 // lab.Options' (and keepalive.Kernel's) sysctl at 0
		}
	}
	if opt.IdleClose, err = dur("idle-close", o.idleClose, false); err != nil {
		return opt, nil, err
	}
	if opt.StateTimeout, err = dur("state-timeout", o.stateTimeout, false); err != nil {
		return opt, nil, err
	}
	if opt.IdleClose <= 0 {
		return opt, nil, usagef("--idle-close: want a positive duration")
	}
	if opt.StateTimeout < time.Second || opt.StateTimeout%time.Second != 0 || opt.StateTimeout > lab.MaxStateTimeout {
		return opt, nil, usagef("--state-timeout %v: want whole seconds from 1s to %v", opt.StateTimeout, lab.MaxStateTimeout)
	}
	opt.Long, opt.Userspace = o.long, o.userspace
	if o.html != "" {
		// Say so now, not after a run that may take many minutes.
		if fi, err := os.Stat(filepath.Dir(o.html)); err != nil || !fi.IsDir() {
			return opt, nil, usagef("--html %s: directory %s does not exist", o.html, filepath.Dir(o.html))
		}
		if fi, err := os.Stat(o.html); err == nil && fi.IsDir() {
			return opt, nil, usagef("--html %s: is a directory, want a file name", o.html)
		}
	}
	scs, err := lab.ParseNames(o.scenarios)
	if err != nil {
		return opt, nil, usagef("--scenario: %v", strings.TrimPrefix(err.Error(), "lab: "))
	}
	return opt, scs, nil
}

func runKeepaliveLab(ctx context.Context, o labOptions, stdout, stderr io.Writer) error {
	// Bad flags are a usage error whatever else is asked for.
	opt, scs, err := labFlags(o)
	if err != nil {
		return err
	}
	if o.list {
		for _, sc := range lab.Scenarios {
			root := ""
			if sc.Userspace {
				root = " (also without root)"
			}
			fmt.Fprintf(stdout, "%-17s %s%s\n", sc.Name, sc.Doc, root)
		}
		return nil
	}
	if o.cleanup {
		return labCleanup(stdout)
	}
	if ok, why := lab.Privileged(); !ok && !o.userspace {
		fmt.Fprintf(stderr, "connscope: %s: %s\n", why, lab.UserspaceNotice)
	}
	st := newStatusLine(stderr)
	opt.Status = st.set
	rep, runErr := lab.Run(ctx, scs, opt)
	st.done()
	if rep != nil {
		if o.json {
			err = lab.WriteJSON(stdout, rep)
		} else {
			err = lab.WriteTable(stdout, rep)
		}
		if err == nil && o.html != "" {
			err = lab.WriteHTMLFile(o.html, rep)
		}
	}
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("lab: interrupted; namespaces removed")
		}
		return runErr
	}
	return err
}

func labCleanup(stdout io.Writer) error {
	removed, err := lab.Cleanup()
	for _, n := range removed {
		fmt.Fprintf(stdout, "removed %s\n", n)
	}
	left, lerr := lab.Leftovers()
	for _, l := range left {
		if l.Alive {
			fmt.Fprintf(stdout, "kept %s: process %d is running\n", l.Name, l.PID)
		}
	}
	if len(removed) == 0 && err == nil {
		fmt.Fprintln(stdout, "no leftover lab namespaces")
	}
	return errors.Join(err, lerr)
}

// statusLine shows the lab's progress on stderr: rewritten in place on a
// terminal, one line every 10 s otherwise (logs, CI).
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newStatusLine(w io.Writer) *statusLine {
	s := &statusLine{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			s.tty = true
		}
	}
	return s
}

func (s *statusLine) set(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty {
		fmt.Fprintf(s.w, "\r\033[K%s", msg)
		s.shown = true
		return
	}
	if time.Since(s.last) >= 10*time.Second {
		s.last = time.Now()
		fmt.Fprintln(s.w, msg)
	}
}

func (s *statusLine) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty && s.shown {
		fmt.Fprint(s.w, "\r\033[K")
	}
}
