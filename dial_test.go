package connscope

import (
	"context"
	"net"
	"strings"
	"testing"
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
