package connscope

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestWrapDial: a dial by name reports its lookup (the name looked up, the
// addresses) and its connection; a dial wrapped twice is reported once,
// whether it succeeds or fails.
func TestWrapDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name    string
		twice   bool
		addr    string
		want    []string
		dnsHost string
	}{
		{"by name", false, "localhost:" + port, []string{MsgDNS, MsgConnect, MsgClose}, "localhost"},
		{"by name, wrapped twice", true, "localhost:" + port, []string{MsgDNS, MsgConnect, MsgClose}, "localhost"},
		{"refused, wrapped twice", true, refusedAddr, []string{MsgError}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			dial := spy.WrapDial(nil)
			if tc.twice {
				dial = spy.WrapDial(dial)
			}
			c, err := dial(context.Background(), "tcp4", tc.addr)
			if err == nil {
				c.Close()
			}
			got := sink.messages()
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("events %q, want %q", got, tc.want)
			}
			if tc.dnsHost != "" {
				e := sink.of(MsgDNS, nil)[0]
				if e.Host != tc.dnsHost || !strings.Contains(e.Addrs, "127.0.0.1") {
					t.Errorf("DNS Lookup host %q addresses %q; want %q and 127.0.0.1", e.Host, e.Addrs, tc.dnsHost)
				}
			}
			if st := spy.Stats(); err == nil && st.Opened != 1 {
				t.Errorf("%d connections opened, want 1", st.Opened)
			}
		})
	}
}

// TestResolverDialInsideSpiedDial: a program spies both its resolver's
// dial (Go's DNS client, as README's transparency table shows) and its
// TCP dial, whose net.Dialer uses that resolver. The DNS conns are other
// connections, dialed to another address, but the resolver dials them
// with the TCP dial's context, which carries WrapDial's "already
// instrumented" mark: they go unwrapped, with no record and no event.
func TestResolverDialInsideSpiedDial(t *testing.T) {
	dnsAddr := dnsServer(t) // answers every A question with 192.0.2.7
	var rec recorder
	sink := newCaptureSink()
	spy := &Spy{Sink: sink, Hooks: Hooks{ConnOpened: rec.opened}}

	// Alone, the spied resolver dial is instrumented (TestResolverThroughWrappedDial).
	var plain net.Dialer
	resolverDial := spy.WrapDial(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return plain.DialContext(ctx, network, dnsAddr)
	})
	res := &net.Resolver{PreferGo: true, Dial: resolverDial}

	// The program's dialer uses it. 192.0.2.7 (TEST-NET-1) is unroutable:
	// the connect fails fast or times out; what matters is the lookup.
	d := &net.Dialer{Resolver: res, Timeout: 300 * time.Millisecond}
	dial := spy.WrapDial(d.DialContext)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp4", "service.test.:80")
	if err == nil {
		c.Close()
	}
	t.Logf("dial: %v", err)

	if dns := sink.of(MsgDNS, nil); len(dns) == 0 || dns[0].Addrs != "192.0.2.7" {
		t.Fatalf("the lookup did not go through the spied resolver: DNS events %+v", dns)
	}
	var udp int
	for _, r := range rec.side(Client) {
		if r.Network() == "udp" {
			udp++
		}
	}
	if udp == 0 {
		t.Errorf("the resolver's UDP conn, dialed through spy.WrapDial, was not instrumented (no record, no %q): %v", MsgConnect, sink.messages())
	}
}
