package httpscope_test

import (
	"bufio"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// levelSink keeps each event's message, side and level.
type levelSink struct {
	mu  sync.Mutex
	evs []levelEv
}

type levelEv struct {
	msg   string
	side  connscope.Side
	level slog.Level
	err   error
}

func (s *levelSink) Emit(e *connscope.Event) {
	var side connscope.Side
	if e.Conn != nil {
		side = e.Conn.Side()
	}
	s.mu.Lock()
	s.evs = append(s.evs, levelEv{e.Message, side, e.Level, e.Err})
	s.mu.Unlock()
}

// wait returns the server's events once one with message msg arrived.
func (s *levelSink) wait(t *testing.T, msg string) []levelEv {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		var out []levelEv
		found := false
		for _, e := range s.evs {
			if e.side == connscope.Server || e.side == 0 {
				out = append(out, e)
				found = found || e.msg == msg
			}
		}
		s.mu.Unlock()
		if found {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q event; server events: %+v", msg, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerRoutineEndsAreNotWarnings: what a server sees in normal
// operation must not be a warning or an error, or a warn-level log (the
// production setting) fills with it: its own IdleTimeout closing a
// keep-alive connection between requests, and a load balancer's TCP
// health check that connects to a TLS port and leaves without a byte.
// What looks like them but is not stays loud: a request cut short by
// ReadHeaderTimeout, bytes that are not a TLS handshake.
func TestServerRoutineEndsAreNotWarnings(t *testing.T) {
	quiet := log.New(io.Discard, "", 0)
	plain := func(t *testing.T, spy *connscope.Spy, srv *http.Server) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		httpscope.InstrumentServer(spy, srv, nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.Serve(spy.WrapListener(ln))
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
		return ln.Addr().String()
	}
	withTLS := func(t *testing.T, spy *connscope.Spy, srv *http.Server) string {
		u, _ := startTLSServer(t, spy, srv)
		return strings.TrimPrefix(u, "https://")
	}
	for _, tc := range []struct {
		name         string
		start        func(*testing.T, *connscope.Spy, *http.Server) string
		idle, header time.Duration // the server's IdleTimeout, ReadHeaderTimeout
		send         []string      // what the client writes, each after the answer to the one before; then it waits for the server to close, or closes
		close        bool          // the client closes (with a reset if linger0) instead of waiting
		reset        bool
		msg          string
		want         slog.Level
	}{
		{"idle timeout after a request", plain, 50 * time.Millisecond, 0,
			[]string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, false, false, connscope.MsgTimeout, slog.LevelDebug},
		{"header timeout after a request", plain, time.Minute, 50 * time.Millisecond,
			[]string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\n"}, false, false, connscope.MsgTimeout, slog.LevelWarn},
		{"header timeout on a new connection", plain, 0, 50 * time.Millisecond,
			[]string{"GET / HTTP/1.1\r\n"}, false, false, connscope.MsgTimeout, slog.LevelWarn},
		{"TCP health check on a TLS port", withTLS, 0, 0,
			nil, true, false, connscope.MsgTLS, slog.LevelDebug},
		{"TCP health check on a TLS port, reset", withTLS, 0, 0,
			nil, true, true, connscope.MsgTLS, slog.LevelDebug},
		{"plain HTTP to a TLS port", withTLS, 0, 0,
			[]string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, false, false, connscope.MsgTLS, slog.LevelError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &levelSink{}
			spy := &connscope.Spy{Sink: sink}
			srv := &http.Server{IdleTimeout: tc.idle, ReadHeaderTimeout: tc.header, ErrorLog: quiet,
				Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
			addr := tc.start(t, spy, srv)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i, req := range tc.send {
				if i > 0 {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
			}
			if tc.close {
				if tc.reset {
					c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			} else {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, br) // until the server closes
			}
			evs := sink.wait(t, tc.msg)
			for _, e := range evs {
				if e.msg == tc.msg && e.level != tc.want {
					t.Errorf("%s (%v) at level %v, want %v", e.msg, e.err, e.level, tc.want)
				}
				if e.msg != tc.msg && tc.want == slog.LevelDebug && e.level > slog.LevelDebug {
					t.Errorf("%s (%v) at level %v with it: routine, want debug", e.msg, e.err, e.level)
				}
			}
		})
	}
}
