//go:build linux

package lab

import (
	"net"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// TestConnectDetectionMatchesKernel: keepalive.Detect(Connect) must predict
// when a SYN that is never answered makes connect fail. Since Linux 6.5 the
// first tcp_syn_linear_timeouts (default 4) SYN retransmissions are 1 s apart
// and add to tcp_syn_retries, which the model ignores.
func TestConnectDetectionMatchesKernel(t *testing.T) {
	const synRetries = 3
	l := newTestLab(t, Config{Sysctls: map[string]string{"net.ipv4.tcp_syn_retries": "3"}})
	if err := l.Inject(FaultDropBoth); err != nil {
		t.Fatal(err)
	}
	k := keepalive.DefaultKernel()
	k.SynRetries = synRetries
	want := keepalive.Detect(keepalive.Connect, keepalive.Settings{}, k)
	var took time.Duration
	var derr error
	if err := l.Do(RoleClient, func() error {
		d := net.Dialer{Timeout: 60 * time.Second}
		start := time.Now()
		c, err := d.Dial("tcp4", net.JoinHostPort(ServerAddr.String(), "7654"))
		took = time.Since(start)
		if c != nil {
			c.Close()
		}
		derr = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("dial error after %v: %v", took, derr)
	if derr == nil {
		t.Fatal("dial succeeded through a drop rule")
	}
	if diff := took - want.After; diff < -500*time.Millisecond || diff > 1500*time.Millisecond {
		t.Errorf("connect with tcp_syn_retries=%d failed after %v; keepalive.Detect(Connect) says %v (%s)",
			synRetries, took.Round(10*time.Millisecond), want.After, want.Rule)
	}
}
