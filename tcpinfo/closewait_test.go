//go:build linux

package tcpinfo

import (
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCloseWaitKeepaliveTimer: after the peer's FIN (CLOSE_WAIT) the
// kernel keeps running the keepalive timer (tcp_keepalive_timer skips only
// CLOSE and SYN_SENT); ss -o shows it. Info.Timer must not say "none".
func TestCloseWaitKeepaliveTimer(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("needs ss")
	}
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3}}
	c, s := loopback(t, d, &net.ListenConfig{KeepAlive: -1})
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %v, want EOF", err)
	}
	info, err := Get(c)
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	out, err := exec.Command("ss", "-tnoH", "state", "close-wait", "sport", "= :"+strconv.Itoa(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	t.Logf("ss: %s", strings.TrimSpace(string(out)))
	t.Logf("tcpinfo: state=%s keepalive=%v timer=%s", info.State, info.Keepalive, info.Timer)
	if !strings.Contains(string(out), "timer:(keepalive") {
		t.Skip("kernel shows no keepalive timer in CLOSE_WAIT")
	}
	if info.Timer != "keepalive" {
		t.Errorf("CLOSE_WAIT with SO_KEEPALIVE: Timer = %q, but the kernel runs the keepalive timer (ss: %s)", info.Timer, strings.TrimSpace(string(out)))
	}
}
