package connscope

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/refused"
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
	refusedAddr := refused.Addr(t)

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
// TCP dial, whose net.Dialer uses that resolver. The resolver dials its
// DNS conns with the TCP dial's context, which carries WrapDial's
// "already instrumented" mark, but they are other connections, to
// another address: each is still wrapped, with its own record.
func TestResolverDialInsideSpiedDial(t *testing.T) {
	dnsAddr := dnsServer(t) // answers every A question with 127.0.0.1
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var rec recorder
	sink := newCaptureSink()
	spy := &Spy{Sink: sink, Hooks: Hooks{ConnOpened: rec.opened}}

	// Alone, the spied resolver dial is instrumented (TestResolverThroughWrappedDial).
	var plain net.Dialer
	resolverDial := spy.WrapDial(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return plain.DialContext(ctx, network, dnsAddr)
	})
	res := &net.Resolver{PreferGo: true, Dial: resolverDial}

	// The program's dialer uses it.
	d := &net.Dialer{Resolver: res}
	dial := spy.WrapDial(d.DialContext)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp4", net.JoinHostPort("service.test.", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatalf("dial through the spied resolver: %v", err)
	}
	c.Close()

	if dns := sink.of(MsgDNS, nil); len(dns) == 0 || dns[0].Addrs != "127.0.0.1" {
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

// TestWrapDialNoConnNoError: a faulty dial function that returns neither
// a connection nor an error is passed through as it is, for the caller to
// report (net/http fails the request with "Transport.DialContext hook
// returned (nil, nil)"), not wrapped: wrapping a nil conn panicked, on the
// transport's dial goroutine, where nothing recovers.
func TestWrapDialNoConnNoError(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	c, err := spy.WrapDial(func(context.Context, string, string) (net.Conn, error) { return nil, nil })(context.Background(), "tcp", "127.0.0.1:1")
	if c != nil || err != nil {
		t.Errorf("got %v, %v; want nil, nil as the dial function returned", c, err)
	}
	if s := spy.Stats(); s.Opened != 0 {
		t.Errorf("%d connections opened, want 0", s.Opened)
	}
	for _, e := range sink.all() {
		if e.Message == MsgConnect {
			t.Errorf("a Socket Connect for no connection: %+v", e)
		}
	}
}

// TestContextWithDialID: a dial takes the id its context carries, for its
// connection or for the event of its failure; a context without one gets
// a new id per dial.
func TestContextWithDialID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sink := newCaptureSink()
	dial := (&Spy{Sink: sink}).WrapDial(nil)

	id := NewID()
	c, err := dial(ContextWithDialID(context.Background(), id), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := RecordOf(c).ID(); got != id {
		t.Errorf("connection id %v, want the context's %v", got, id)
	}

	failed := NewID()
	if _, err := dial(ContextWithDialID(context.Background(), failed), "tcp", refused.Addr(t)); err == nil {
		t.Fatal("dial to a refused address succeeded")
	}
	if evs := sink.of(MsgError, nil); len(evs) != 1 || evs[0].ID != failed {
		t.Errorf("failed dial events %+v, want one Socket Error with id %v", evs, failed)
	}

	c1, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if a, b := RecordOf(c1).ID(), RecordOf(c2).ID(); a.IsZero() || a == b || a == id {
		t.Errorf("dials without an id in their context got %v and %v", a, b)
	}
}

// TestDialIDNotSharedWithNestedDial: the id a context carries
// (ContextWithDialID) is its dial's alone. A spied dial made while
// dialing, such as the resolver's to its DNS server, is a connection of
// its own: it took the outer dial's id, so that two connections had one
// (httpscope sets one on every dial of an instrumented transport).
func TestDialIDNotSharedWithNestedDial(t *testing.T) {
	dnsAddr := dnsServer(t) // answers every A question with 127.0.0.1
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var rec recorder
	spy := &Spy{Hooks: Hooks{ConnOpened: rec.opened}}
	var plain net.Dialer
	res := &net.Resolver{PreferGo: true, Dial: spy.WrapDial(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return plain.DialContext(ctx, network, dnsAddr)
	})}
	dial := spy.WrapDial((&net.Dialer{Resolver: res}).DialContext)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := NewID()
	c, err := dial(ContextWithDialID(ctx, id), "tcp4", net.JoinHostPort("service.test.", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatalf("dial through the spied resolver: %v", err)
	}
	c.Close()
	if got := RecordOf(c).ID(); got != id {
		t.Errorf("connection id %v, want the context's %v", got, id)
	}
	var udp int
	for _, r := range rec.side(Client) {
		if r.Network() != "udp" {
			continue
		}
		udp++
		if r.ID() == id {
			t.Errorf("the resolver's UDP connection has the id of the dial it resolved for, %v", id)
		}
	}
	if udp == 0 {
		t.Fatal("the resolver's UDP conn was not instrumented")
	}
}
