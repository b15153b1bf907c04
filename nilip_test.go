package connscope

import (
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// tunnelConn is a real connection that reports other addresses, as a
// tunnel's channel does (x/crypto/ssh gives a forwarded channel a
// *net.TCPAddr with a nil IP when the host is a name).
type tunnelConn struct {
	net.Conn
	remote net.Addr
}

func (c tunnelConn) RemoteAddr() net.Addr { return c.remote }

// hostlessAddr is an address of a type the spy does not know, with a
// port and no host.
type hostlessAddr struct{}

func (hostlessAddr) Network() string { return "tcp" }
func (hostlessAddr) String() string  { return ":8080" }

// TestAddressWithoutIP: a connection whose remote address has no valid
// IP has an unknown address, as one with a nil address has: null address
// and port in JSON (as the README's event reference says), "-" in the
// text format and in Snapshot, no attributes in slog; never the "invalid
// IP" that netip writes for it. The local address, a real one, is kept.
func TestAddressWithoutIP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote net.Addr
	}{
		{"TCPAddr with nil IP", &net.TCPAddr{}},
		{"TCPAddr with nil IP and a port", &net.TCPAddr{Port: 8080}},
		{"nil *TCPAddr", (*net.TCPAddr)(nil)},
		{"UDPAddr with nil IP", &net.UDPAddr{}},
		{"TCPAddr with a 3-byte IP", &net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 1}},
		{"a port without a host", hostlessAddr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jsonOut, textOut, slogOut := newMemWriter(), newMemWriter(), newMemWriter()
			jsonSink, textSink := NewJSONSink(jsonOut, nil), NewTextSink(textOut, nil)
			spy := &Spy{Sink: MultiSink(jsonSink, textSink,
				NewSlogSink(slog.New(slog.NewJSONHandler(slogOut, &slog.HandlerOptions{Level: slog.LevelDebug}))))}
			c, _ := tcpPair(t)
			local := c.LocalAddr().(*net.TCPAddr)
			w := spy.WrapConn(tunnelConn{c, tc.remote}, Client)
			if got := RecordOf(w).Snapshot().Remote; got != "-" {
				t.Errorf("Snapshot().Remote = %q, want \"-\"", got)
			}
			w.Close()
			for _, s := range []*WriterSink{jsonSink, textSink} {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			for name, out := range map[string]*memWriter{"JSON": jsonOut, "text": textOut, "slog": slogOut} {
				if strings.Contains(out.String(), "invalid") {
					t.Errorf("%s output has %q:\n%s", name, "invalid", out)
				}
				if len(out.lines()) != 2 {
					t.Errorf("%s output has %d lines, want 2 (connect, close):\n%s", name, len(out.lines()), out)
				}
			}
			for _, line := range jsonOut.lines() {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				for _, k := range []string{"remoteAddress", "remotePort"} {
					if v, ok := m[k]; !ok || v != nil {
						t.Errorf("JSON %s = %v (present %v), want null: %s", k, v, ok, line)
					}
				}
				if m["localAddress"] != "127.0.0.1" || m["localPort"] != float64(local.Port) {
					t.Errorf("JSON local address %v:%v, want 127.0.0.1:%d", m["localAddress"], m["localPort"], local.Port)
				}
			}
			for _, line := range textOut.lines() {
				if want := " 127.0.0.1:" + itoa(int64(local.Port)) + " -> -  "; !strings.Contains(line+"  ", want) {
					t.Errorf("text line lacks %q: %s", want, line)
				}
			}
			for _, line := range slogOut.lines() {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				for _, k := range []string{"remoteAddress", "remotePort"} {
					if v, ok := m[k]; ok {
						t.Errorf("slog record has %s = %v, want none: %s", k, v, line)
					}
				}
				if m["localAddress"] != "127.0.0.1" {
					t.Errorf("slog localAddress %v, want 127.0.0.1", m["localAddress"])
				}
			}
		})
	}
}
