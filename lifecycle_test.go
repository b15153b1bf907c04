package connscope

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// wrappedPair returns the ends of a tcp or unix connection, both wrapped
// by spy (client and server side).
func wrappedPair(t *testing.T, spy *Spy, network string) (client, server net.Conn) {
	t.Helper()
	var c, s net.Conn
	switch network {
	case "tcp":
		c, s = tcpPair(t)
	case "unix":
		c, s = unixPair(t)
	default:
		t.Fatalf("network %q", network)
	}
	return spy.WrapConn(c, Client), spy.WrapConn(s, Server)
}

// TestHalfClose: CloseWrite through the wrapper sends FIN; the peer reads
// its data, then EOF ("Socket End" on the peer's record only), and can
// still write back.
func TestHalfClose(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			c, s := wrappedPair(t, spy, network)
			c.SetDeadline(time.Now().Add(testTimeout))
			s.SetDeadline(time.Now().Add(testTimeout))
			cr, sr := RecordOf(c), RecordOf(s)

			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			cw, ok := c.(interface{ CloseWrite() error })
			if !ok {
				t.Fatalf("%T has no CloseWrite", c)
			}
			if err := cw.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			got, err := io.ReadAll(s) // reads up to EOF
			if err != nil || string(got) != "ping" {
				t.Fatalf("peer read %q, %v; want \"ping\" then EOF", got, err)
			}
			if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("peer's read after FIN = %d, %v; want 0, io.EOF", n, err)
			}
			if evs := sink.of(MsgEnd, sr); len(evs) != 1 {
				t.Errorf("peer got %d %q events, want 1 (one per connection, however many EOF reads)", len(evs), MsgEnd)
			}
			if evs := sink.of(MsgEnd, cr); len(evs) != 0 {
				t.Errorf("the half-closing side got a %q event", MsgEnd)
			}
			if !sr.Snapshot().PeerClosed {
				t.Error("peer's Snapshot().PeerClosed = false after FIN")
			}

			// The other direction still works.
			if _, err := s.Write([]byte("pong")); err != nil {
				t.Fatalf("peer's write after receiving FIN: %v", err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("half-closed side read %q, %v; want \"pong\"", buf, err)
			}
			if cr.BytesWritten() != 4 || cr.BytesRead() != 4 || sr.BytesWritten() != 4 || sr.BytesRead() != 4 {
				t.Errorf("bytes: client r/w %d/%d, server r/w %d/%d; want 4 each",
					cr.BytesRead(), cr.BytesWritten(), sr.BytesRead(), sr.BytesWritten())
			}
			s.Close()
			c.Close()
			for _, r := range []*Record{cr, sr} {
				if evs := sink.of(MsgError, r); len(evs) != 0 {
					t.Errorf("%s: unexpected %q: %v", r.Side(), MsgError, evs[0].Err)
				}
			}
			closes := sink.of(MsgClose, sr)
			if len(closes) != 1 || closes[0].ClosedBy != "remote" || closes[0].HadError {
				t.Errorf("peer's Socket Close events = %+v; want one, closedBy remote, hadError false", closes)
			}
		})
	}
}

// TestCloseOnce: Close called 3 times concurrently reports exactly one
// "Socket Close", brings Stats().Open back, and says who closed first.
func TestCloseOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		first   string // who starts the close: "" this side's Close, "peer", or "closewrite" (this side's FIN, then the peer's)
		wantBy  string
	}{
		{"tcp/local", "tcp", "", "local"},
		{"tcp/remote", "tcp", "peer", "remote"},
		{"tcp/local FIN first", "tcp", "closewrite", "local"},
		{"unix/local", "unix", "", "local"},
		{"unix/remote", "unix", "peer", "remote"},
		{"unix/local FIN first", "unix", "closewrite", "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			var hookCalls sync.Map
			spy := &Spy{Sink: sink, Hooks: Hooks{ConnClosed: func(r *Record) {
				n, _ := hookCalls.LoadOrStore(r, new(int))
				*n.(*int)++
			}}}
			c, s := wrappedPair(t, spy, tc.network)
			cr := RecordOf(c)
			if at := cr.ClosedAt(); !at.IsZero() {
				t.Fatalf("ClosedAt %v on an open connection, want zero", at)
			}
			if st := spy.Stats(); st.Open != 2 || st.Opened != 2 {
				t.Fatalf("Stats after wrapping 2 = %+v", st)
			}
			switch tc.first {
			case "closewrite":
				if err := c.(closeWriterI).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				s.SetReadDeadline(time.Now().Add(testTimeout))
				if _, err := io.ReadAll(s); err != nil {
					t.Fatal(err)
				}
				fallthrough // the peer answers our FIN with its own
			case "peer":
				s.Close()
				c.SetReadDeadline(time.Now().Add(testTimeout))
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read after peer closed: %v, want io.EOF", err)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range 3 {
				wg.Go(func() { errs[i] = c.Close() })
			}
			wg.Wait()
			s.Close()
			nilErrs := 0
			for _, err := range errs {
				if err == nil {
					nilErrs++
				}
			}
			if nilErrs != 1 {
				t.Errorf("Close errors = %v; want exactly one nil (the inner conn's behaviour)", errs)
			}
			closes := sink.of(MsgClose, cr)
			if len(closes) != 1 {
				t.Fatalf("%d %q events, want 1", len(closes), MsgClose)
			}
			e := closes[0]
			if e.HadError || e.ClosedBy != tc.wantBy {
				t.Errorf("Socket Close: hadError %v closedBy %q; want false, %q", e.HadError, e.ClosedBy, tc.wantBy)
			}
			if e.Conn.local.addr == "" {
				t.Error("Socket Close lost the local address")
			}
			if st := spy.Stats(); st.Open != 0 || st.Opened != 2 {
				t.Errorf("Stats after closing = %+v; want Opened 2, Open 0", st)
			}
			if cr.State() != StateClosed {
				t.Errorf("State = %v, want closed", cr.State())
			}
			if at := cr.ClosedAt(); at.Before(cr.Opened()) || time.Since(at) > time.Minute {
				t.Errorf("ClosedAt %v, want a time after Opened %v, a moment ago", at, cr.Opened())
			}
			if n, ok := hookCalls.Load(cr); !ok || *n.(*int) != 1 {
				t.Errorf("ConnClosed hook ran %v times, want 1", n)
			}
			if evs := sink.of(MsgError, nil); len(evs) != 0 {
				t.Errorf("unexpected Socket Error: %v", evs[0].Err)
			}
		})
	}
}
