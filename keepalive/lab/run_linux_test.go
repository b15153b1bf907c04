//go:build linux

package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// runOne runs one scenario for real and returns its result.
func runOne(t *testing.T, name string, o Options) Result {
	t.Helper()
	needLab(t)
	sc, ok := Lookup(name)
	if !ok {
		t.Fatalf("no scenario %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	rep, err := Run(ctx, []Scenario{sc}, o)
	if rep != nil && rep.Lab != "" {
		t.Cleanup(func() { assertGone(t, rep.Lab) })
	}
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	t.Logf("%s: client %+v", name, r.Client)
	t.Logf("%s: server %+v", name, r.Server)
	if r.Skipped != "" {
		t.Fatalf("skipped: %s", r.Skipped)
	}
	return r
}

// within checks a measured time against the model: keepalive and RTO timers
// fire on jiffies and a little late, so allow 15% + 700 ms late, 300 ms early.
func within(t *testing.T, side string, s Side) {
	t.Helper()
	if !s.Detected {
		t.Errorf("%s: not detected within %v (expected %v)", side, s.Waited, s.Expected)
		return
	}
	exp := s.Expected.After
	if s.After < exp-300*time.Millisecond || s.After > exp+exp*15/100+700*time.Millisecond {
		t.Errorf("%s: detected after %v, expected %v", side, s.After, s.Expected)
	}
}

func TestIdleKeepaliveDetected(t *testing.T) {
	t.Parallel()
	r := runOne(t, "drop-idle", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2}})
	for side, s := range map[string]Side{"client": r.Client, "server": r.Server} {
		if s.Expected.After != 3*time.Second || s.Expected.Timer != "keepalive" {
			t.Errorf("%s: expected %v, want 3s on the keepalive timer", side, s.Expected)
		}
		within(t, side, s)
		if s.Error != "ETIMEDOUT" {
			t.Errorf("%s: error %q, want ETIMEDOUT", side, s.Error)
		}
	}
}

func TestSendingUserTimeoutDetected(t *testing.T) {
	t.Parallel()
	r := runOne(t, "drop-sending", Options{Settings: keepalive.Settings{Idle: -1, UserTimeout: 3 * time.Second}})
	if r.Server.Expected.After != 3*time.Second || r.Server.Expected.Timer != "user-timeout" {
		t.Errorf("server expected %v, want 3s user-timeout", r.Server.Expected)
	}
	within(t, "server", r.Server)
	if r.Server.Error != "ETIMEDOUT" {
		t.Errorf("server error %q, want ETIMEDOUT", r.Server.Error)
	}
	// The client reads with keepalive off: nothing tells it.
	if !r.Client.Expected.Never || r.Client.Detected {
		t.Errorf("client: expected never, got %+v", r.Client)
	}
}

func TestResetSeenAsECONNRESET(t *testing.T) {
	t.Parallel()
	r := runOne(t, "reset", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2}})
	for side, s := range map[string]Side{"client": r.Client, "server": r.Server} {
		if s.Error != "ECONNRESET" {
			t.Errorf("%s: error %q, want ECONNRESET (events %+v)", side, s.Error, s.Events)
		}
		within(t, side, s)
	}
}

func TestIdleCloseSeenAsEOF(t *testing.T) {
	t.Parallel()
	r := runOne(t, "idle-close", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2}, IdleClose: time.Second})
	for side, s := range map[string]Side{"client": r.Client, "server": r.Server} {
		if s.Error != "EOF" {
			t.Errorf("%s: error %q, want EOF", side, s.Error)
		}
		within(t, side, s)
	}
}

func TestUnreachableSeenAsEHOSTUNREACH(t *testing.T) {
	t.Parallel()
	r := runOne(t, "icmp-unreachable", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2, UserTimeout: 3 * time.Second}})
	// ICMP makes the kernel revert RTO backoff (RFC 6069), so the abort comes at
	// the first retransmission timer after U rather than clamped to U: allow 1.5 s.
	if s := r.Server; !s.Detected || s.After < 2700*time.Millisecond || s.After > 4500*time.Millisecond {
		t.Errorf("server: detected=%v after %v, want about 3s", s.Detected, s.After)
	}
	if r.Server.Error != "EHOSTUNREACH" {
		t.Errorf("server: error %q, want EHOSTUNREACH", r.Server.Error)
	}
}

// TestFirewallExpiry: keepalive off, the firewall forgets the idle flow after
// 2 s, the client's request is blackholed and only TCP_USER_TIMEOUT ends it;
// with keepalive below the state timeout the flow survives.
func TestFirewallExpiry(t *testing.T) {
	t.Parallel()
	r := runOne(t, "firewall-expiry", Options{Settings: keepalive.Settings{Idle: -1, UserTimeout: 2 * time.Second}, StateTimeout: 2 * time.Second})
	within(t, "client", r.Client)
	if r.Client.Error != "ETIMEDOUT" {
		t.Errorf("client: error %q, want ETIMEDOUT", r.Client.Error)
	}
	if r.Server.Detected {
		t.Errorf("server detected %+v; keepalive off, it should not", r.Server)
	}
}

func TestFirewallExpiryKeptAlive(t *testing.T) {
	t.Parallel()
	{
		r := runOne(t, "firewall-expiry", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2, UserTimeout: 2 * time.Second}, StateTimeout: 2 * time.Second})
		if r.Client.Detected || r.Server.Detected || !strings.HasPrefix(r.Note, "connection still works") {
			t.Errorf("keepalive 1s under a 2s state timeout: client %+v, note %q; want a working connection", r.Client, r.Note)
		}
	}
}

func TestUserspaceMode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, Scenarios, Options{Userspace: true, IdleClose: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "userspace" || !strings.Contains(rep.Notice, "cannot imitate a silent drop") {
		t.Errorf("mode %q notice %q", rep.Mode, rep.Notice)
	}
	want := map[string]string{"reset": "ECONNRESET", "idle-close": "EOF"}
	for _, r := range rep.Results {
		w, ok := want[r.Scenario]
		if !ok {
			if r.Skipped == "" {
				t.Errorf("%s ran in userspace mode", r.Scenario)
			}
			continue
		}
		if r.Skipped != "" {
			t.Errorf("%s skipped: %s", r.Scenario, r.Skipped)
		}
		for side, s := range map[string]Side{"client": r.Client, "server": r.Server} {
			if s.Error != w || s.After > 500*time.Millisecond {
				t.Errorf("%s %s: %q after %v, want %s at once", r.Scenario, side, s.Error, s.After, w)
			}
		}
	}
}

func TestLongScenarioNeedsLong(t *testing.T) {
	needLab(t)
	t.Parallel()
	sc, _ := Lookup("drop-sending")
	rep, err := Run(context.Background(), []Scenario{sc}, Options{}) // tcp_retries2 15: ~15 min
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Results[0].Skipped; !strings.Contains(s, "--long") {
		t.Errorf("skipped = %q, want a pointer to --long", s)
	}
}

// TestOneWayDropPeerReset: with only server->client dropped, the client's
// keepalive abort sends a RST that reaches the streaming server, long before
// the server's retransmission timer would give up.
func TestOneWayDropPeerReset(t *testing.T) {
	t.Parallel()
	r := runOne(t, "drop-one-way", Options{Settings: keepalive.Settings{Idle: time.Second, Interval: time.Second, Count: 2}, Retries2: 6})
	within(t, "client", r.Client)
	within(t, "server", r.Server)
	if r.Client.Error != "ETIMEDOUT" || r.Server.Error != "ECONNRESET" || r.Server.Expected.Timer != "peer's RST" {
		t.Errorf("client %q, server %q (expected %v); want ETIMEDOUT then the peer's RST", r.Client.Error, r.Server.Error, r.Server.Expected)
	}
}
