//go:build linux

package lab

import (
	"context"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// TestNewReturnsLinksUp: New returns only when every veth end is
// operationally up. The end brought up before its peer gets its carrier when
// the peer comes up, but the kernel activates its transmit queue later, in
// the linkwatch work, which needs the RTNL lock; until then it drops what it
// is given. TestTopologyAndFaults flaked that way on a loaded machine
// ("dial through router: i/o timeout"): the router dropped its first ARP
// (skb:kfree_skb QDISC_DROP on to-client or to-server) and the first
// connection waited for a 1 s retransmission, past the 500 ms dial timeout.
// Here another namespace keeps the RTNL lock busy, which left a link down at
// New's return in about a third of the labs.
func TestNewReturnsLinksUp(t *testing.T) {
	needLab(t)
	contendRTNL(t)
	contendRTNL(t)
	for i := 0; i < 100; i++ {
		l := newTestLab(t, Config{})
		for _, r := range []Role{RoleClient, RoleRouter, RoleServer} {
			if err := l.Do(r, func() error {
				// A dump: looking up one link may bring its state up to date.
				links, err := netlink.LinkList()
				for _, lk := range links {
					if a := lk.Attrs(); a.Name != "lo" && a.OperState != netlink.OperUp {
						t.Errorf("lab %d: %s's %s is %s when New returns", i, r, a.Name, a.OperState)
					}
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		ln := serverListen(t, l)
		if err := l.Do(RoleClient, func() error {
			c, err := net.DialTimeout("tcp4", ln.Addr().String(), 500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			t.Errorf("lab %d: first dial through the router: %v", i, err)
		}
		ln.Close()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
}

// contendRTNL keeps the RTNL lock busy until the test ends, from a
// throwaway namespace whose forwarding sysctl it toggles (each write takes
// the lock). The namespace goes with its thread.
func contendRTNL(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			started <- err
			return
		}
		started <- nil
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile("/proc/sys/net/ipv4/conf/all/forwarding", []byte(strconv.Itoa(n%2)), 0o644)
		}
	}()
	if err := <-started; err != nil {
		wg.Wait()
		t.Fatal(err)
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}
