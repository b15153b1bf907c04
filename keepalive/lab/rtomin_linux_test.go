//go:build linux

package lab

import (
	"net"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// TestSendingWithRTOMin: Kernel.RTOMin is documented as "TCP_RTO_MIN (or
// the route's rto_min)". The kernel's give-up bound (tcp_model_timeout) is
// always computed from the constant TCP_RTO_MIN (200 ms); only the real RTOs
// start at the raised minimum. Detect uses RTOMin for both.
func TestSendingWithRTOMin(t *testing.T) {
	l := newTestLab(t, Config{Sysctls: map[string]string{
		"net.ipv4.tcp_retries2":   "5",
		"net.ipv4.tcp_rto_min_us": "1000000", // 1 s (Linux 6.11+)
	}})
	k := keepalive.DefaultKernel()
	k.Retries2, k.RTOMin = 5, time.Second
	want := keepalive.Detect(keepalive.Sending, keepalive.Off, k)

	ln := serverListen(t, l)
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	var c net.Conn
	if err := l.Do(RoleClient, func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc, ok := <-acc; ok {
		defer sc.Close()
	}
	if err := l.Inject(FaultDropBoth); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Late is allowed more than early: a loaded machine (CI runs packages
	// side by side on 2 cores) can measure a handshake RTT that lifts the
	// RTO above its minimum, and each retransmission waits the longer.
	// The bound still tells 15 s from the 63 s of RTOMin used for the
	// give-up bound too, and early from the 12.6 s of the bound alone.
	c.SetReadDeadline(time.Now().Add(want.After + 10*time.Second))
	_, err := c.Read(make([]byte, 1))
	took := time.Since(start)
	t.Logf("read error after %v: %v", took, err)
	if diff := took - want.After; diff < -time.Second || diff > 8*time.Second {
		t.Errorf("sending with route/sysctl RTO min 1s and tcp_retries2=5 aborted after %v; Detect(Sending, RTOMin=1s) says %v (%s)",
			took.Round(10*time.Millisecond), want.After, want.Rule)
	}
}
