//go:build linux

package lab

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
	"github.com/connscope/connscope/tcpinfo"
)

// TestKeepaliveSysctlsZeroMatchKernel: the kernel accepts 0 for
// tcp_keepalive_time and tcp_keepalive_intvl, and a socket with SO_KEEPALIVE
// and no per-socket values then uses 0, not a default. keepalive.Detect, fed
// by keepalive.ReadKernel in the client's namespace, must predict what the
// kernel does to a client whose peer is silenced by a drop on the router,
// counted from the last packet the client received:
//
//   - time 0: the timer does not wait for idleness; it probes every V from
//     the start, so the abort comes (C+1)×V after the last packet.
//   - intvl 0: the probes after the first are one timer tick apart, so the
//     abort comes a few ms after I.
//   - both 0: a probe every tick, and the peer answers at most one per
//     tcp_invalid_ratelimit (500 ms): even a live connection is aborted
//     within ms of its start, with no fault at all.
//   - both 0 and TCP_USER_TIMEOUT U: the abort comes about U after the last
//     packet received; a U under the peer's 500 ms between answers aborts
//     even a live connection (100 and 300 ms here), a longer one (1 s) keeps
//     a live connection and aborts a silenced one.
func TestKeepaliveSysctlsZeroMatchKernel(t *testing.T) {
	l := newTestLab(t, Config{})
	tests := []struct {
		name               string
		time, intvl, count int
		u                  time.Duration // TCP_USER_TIMEOUT
		fault              bool
		live               bool   // no fault, and the connection is not aborted
		note               string // in Detect's note
	}{
		{"time 0", 0, 1, 2, 0, true, false, ""},
		{"intvl 0", 2, 0, 3, 0, true, false, ""},
		{"both 0", 0, 0, 3, 0, false, false, "even a live connection"},
		{"both 0, U=100ms", 0, 0, 3, 100 * time.Millisecond, false, false, "aborts even a live connection at about U"},
		{"both 0, U=300ms", 0, 0, 3, 300 * time.Millisecond, false, false, "aborts even a live connection at about U"},
		{"both 0, U=1s", 0, 0, 3, time.Second, true, false, "a longer U keeps a live connection"},
		{"both 0, U=1s, no fault", 0, 0, 3, time.Second, false, true, "a longer U keeps a live connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range map[string]int{"tcp_keepalive_time": tt.time, "tcp_keepalive_intvl": tt.intvl, "tcp_keepalive_probes": tt.count} {
				if err := l.Sysctl(RoleClient, "net.ipv4."+k, strconv.Itoa(v)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Inject(FaultNone); err != nil {
				t.Fatal(err)
			}
			var k keepalive.Kernel
			if err := l.Do(RoleClient, func() (err error) {
				k, err = keepalive.ReadKernel()
				return err
			}); err != nil {
				t.Fatal(err)
			}
			want := keepalive.Detect(keepalive.Idle, keepalive.Settings{UserTimeout: tt.u}, k)
			if !strings.Contains(want.Note, tt.note) {
				t.Errorf("Detect's note %q does not say %q", want.Note, tt.note)
			}

			c := dialKernelKeepalive(t, l, tt.u)
			fault := time.Now()
			var sinceRecv time.Duration
			if tt.fault {
				// With time 0 the first probe leaves a timer tick after
				// SO_KEEPALIVE; let its answer arrive before the fault.
				time.Sleep(200 * time.Millisecond)
				ti, err := tcpinfo.Get(c.(syscall.Conn))
				if err != nil {
					t.Fatal(err)
				}
				// With both 0 the probes a tick apart go mostly unanswered.
				if ti.Probes != 0 && (tt.time != 0 || tt.intvl != 0) {
					t.Fatalf("before the fault: %d unanswered keepalive probes", ti.Probes)
				}
				sinceRecv = ti.LastAckRecv
				if err := l.Inject(FaultDropBoth); err != nil {
					t.Fatal(err)
				}
				fault = time.Now()
			}
			if tt.live {
				// Bounded: three times U, six of the peer's answers.
				c.SetReadDeadline(time.Now().Add(3 * tt.u))
				_, err := c.Read(make([]byte, 1))
				t.Logf("sysctls %d/%d/%d, U %v, no fault: read error %v", tt.time, tt.intvl, tt.count, tt.u, err)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read error %v, want the test's deadline: a live connection is not aborted", err)
				}
				return
			}
			// Bounded whatever the prediction: a wrong model (2h) must fail
			// here in seconds, not hang.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			took := time.Since(fault) + sinceRecv
			t.Logf("sysctls %d/%d/%d, U %v: read error %v after %v (since the last packet received, or the dial without a fault); Detect: %v", tt.time, tt.intvl, tt.count, tt.u, err, took, want)
			if !errors.Is(err, syscall.ETIMEDOUT) {
				t.Errorf("read error %v, want ETIMEDOUT from keepalive", err)
			}
			// Early by the RTT at most; late by timer slack and scheduling.
			if diff := took - want.After; diff < -100*time.Millisecond || diff > 700*time.Millisecond {
				t.Errorf("keepalive with tcp_keepalive %d/%d/%d aborted %v after the last packet received; keepalive.Detect(Idle) says %v",
					tt.time, tt.intvl, tt.count, took.Round(10*time.Millisecond), want)
			}
		})
	}
}

// dialKernelKeepalive connects the client to a server in the lab whose
// socket has keepalive off, and turns keepalive on for the client without
// per-socket values, so the client's namespace sysctls decide, with
// TCP_USER_TIMEOUT u if not zero.
func dialKernelKeepalive(t *testing.T, l *Lab, u time.Duration) net.Conn {
	t.Helper()
	var ln net.Listener
	if err := l.Do(RoleServer, func() (err error) {
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err = lc.Listen(context.Background(), "tcp4", ServerAddr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { // bounded: ln is closed when this function returns
		c, _ := ln.Accept()
		acc <- c
	}()
	var c net.Conn
	if err := l.Do(RoleClient, func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if err := keepalive.Apply(&d, keepalive.Settings{UserTimeout: u}); err != nil { // "os": SO_KEEPALIVE only
			return err
		}
		var err error
		c, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if sc := <-acc; sc != nil {
		t.Cleanup(func() { sc.Close() })
	}
	return c
}

// TestKeepaliveSysctlsNegative: the kernel accepts a negative
// tcp_keepalive_time or tcp_keepalive_intvl, unlike the probes and
// tcp_retries2, and its keepalive timer compares the value as unsigned:
// the wait it stands for becomes about 2^32 jiffies (ss -tino showed the
// timer at 71582 min after -1 here). Read as 0, as keepalive.ReadKernel did,
// Detect predicted an abort 2 s (time -1: V + V×C) or ~1 s (intvl -1: a
// tick after I) after the last packet; the kernel sends no probe at all
// (time -1) or only the first (intvl -1), and the client is not aborted.
// ReadKernel must refuse such a value, naming the sysctl.
func TestKeepaliveSysctlsNegative(t *testing.T) {
	l := newTestLab(t, Config{})
	tests := []struct {
		name        string
		time, intvl int
		sysctl      string // named by ReadKernel's error
		probes      int    // sent (and dropped) by the end
	}{
		{"time -1", -1, 1, "net.ipv4.tcp_keepalive_time", 0},
		{"intvl -1", 1, -1, "net.ipv4.tcp_keepalive_intvl", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range map[string]int{"tcp_keepalive_time": tt.time, "tcp_keepalive_intvl": tt.intvl, "tcp_keepalive_probes": 1} {
				if err := l.Sysctl(RoleClient, "net.ipv4."+k, strconv.Itoa(v)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Inject(FaultNone); err != nil {
				t.Fatal(err)
			}
			var kerr error
			if err := l.Do(RoleClient, func() error {
				_, kerr = keepalive.ReadKernel()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var se *keepalive.SysctlError
			if !errors.As(kerr, &se) || se.Name != tt.sysctl {
				t.Errorf("ReadKernel with %s = -1: error %v, want a *keepalive.SysctlError naming it", tt.sysctl, kerr)
			}

			c := dialKernelKeepalive(t, l, 0)
			if err := l.Inject(FaultDropBoth); err != nil {
				t.Fatal(err)
			}
			// Bounded: past what a sysctl of 0 would give (2 s), well
			// short of 2^32 jiffies.
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err := c.Read(make([]byte, 1))
			ti, terr := tcpinfo.Get(c.(syscall.Conn))
			if terr != nil {
				t.Fatal(terr)
			}
			t.Logf("sysctls %d/%d/1, peer silenced: read error %v; %d unanswered probes", tt.time, tt.intvl, err, ti.Probes)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("read error %v, want the test's deadline: the kernel does not abort", err)
			}
			if ti.Probes != tt.probes {
				t.Errorf("%d keepalive probes sent, want %d", ti.Probes, tt.probes)
			}
		})
	}
}
