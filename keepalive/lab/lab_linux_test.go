//go:build linux

package lab

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// needLab skips unless this process can build namespaces.
func needLab(t *testing.T) {
	t.Helper()
	if ok, why := Privileged(); !ok {
		t.Skip("lab needs root:", why)
	}
}

func newTestLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	needLab(t)
	l, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		assertGone(t, l.Name)
	})
	return l
}

// assertGone fails if any namespace of the lab is still mounted.
func assertGone(t *testing.T, name string) {
	t.Helper()
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

// serverListen listens on the lab's server address, in the server's
// namespace, until the test ends.
func serverListen(t *testing.T, l *Lab) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := l.Do(RoleServer, func() (err error) {
		ln, err = net.Listen("tcp4", ServerAddr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestTopologyAndFaults(t *testing.T) {
	l := newTestLab(t, Config{Sysctls: map[string]string{"net.ipv4.tcp_retries2": "3"}})
	ln := serverListen(t, l)
	dial := func() error {
		return l.Do(RoleClient, func() error {
			c, err := net.DialTimeout("tcp4", ln.Addr().String(), 500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := dial(); err != nil {
		t.Fatalf("dial through router: %v", err)
	}
	if err := l.Inject(FaultDropBoth); err != nil {
		t.Fatal(err)
	}
	if n, err := l.RuleCount(); err != nil || n != 1 {
		t.Fatalf("rules = %d, %v", n, err)
	}
	if err := dial(); err == nil {
		t.Fatal("dial succeeded through a drop rule")
	}
	if err := l.Inject(FaultReset); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial through reset rule: %v, want connection refused", err)
	}
	if err := l.Inject(FaultNone); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
}
