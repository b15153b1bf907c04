package connscope

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// udpConn returns a UDP conn connected to a loopback socket, unwrapped.
func udpConn(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// dnsServer answers every A question on a loopback UDP socket with
// 127.0.0.1, until the test ends; it returns the address. (Loopback: a
// test dials what it resolves.)
func dnsServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			resp := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: q.ID, Response: true, RecursionDesired: true, RecursionAvailable: true},
				Questions: q.Questions,
			}
			if q.Questions[0].Type == dnsmessage.TypeA {
				resp.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}},
				}}
			}
			if b, err := resp.Pack(); err == nil {
				pc.WriteTo(b, addr)
			}
		}
	})
	return pc.LocalAddr().String()
}

// TestResolverThroughWrappedDial: Go's DNS client frames a query by
// whether its conn is a net.PacketConn (UDP) or not (TCP, with a length
// prefix). A wrapped UDP conn must stay one, or every lookup fails.
func TestResolverThroughWrappedDial(t *testing.T) {
	srv := dnsServer(t)
	var rec recorder
	spy := &Spy{Hooks: Hooks{ConnOpened: rec.opened}}
	var d net.Dialer
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, srv)
	}
	r := &net.Resolver{PreferGo: true, Dial: spy.WrapDial(dial)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", "example.test.")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("lookup through wrapped dial: %v, %v; want [127.0.0.1]", addrs, err)
	}
	recs := rec.side(Client)
	if len(recs) == 0 {
		t.Fatal("the resolver's conn was not wrapped")
	}
	if r := recs[0]; r.Network() != "udp" || r.BytesRead() == 0 || r.BytesWritten() == 0 {
		t.Errorf("resolver's conn: network %q, %d bytes read, %d written; want udp and both counted", r.Network(), r.BytesRead(), r.BytesWritten())
	}
}

// TestPacketConnCounts: the ReadFrom and WriteTo of a wrapped PacketConn
// (an unconnected UDP socket, which names its peer) count their bytes.
func TestPacketConnCounts(t *testing.T) {
	spy := &Spy{}
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	w := spy.WrapConn(uc, Client).(net.PacketConn)
	defer w.Close()
	if n, err := w.WriteTo([]byte("ping"), peer.LocalAddr()); n != 4 || err != nil {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	peer.WriteTo([]byte("pong!"), from)
	w.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := w.ReadFrom(buf); n != 5 || err != nil {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	r := RecordOf(w.(net.Conn))
	if r.BytesWritten() != 4 || r.BytesRead() != 5 {
		t.Errorf("counted %d written, %d read; want 4, 5", r.BytesWritten(), r.BytesRead())
	}
}
