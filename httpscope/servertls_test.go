package httpscope_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/connscope/connscope"
)

// TestServerTLSHandshakeFailure: a client that fails the server's
// handshake (it does not trust the certificate, or it speaks plain HTTP
// to the TLS port) gets a server-side "TLS Handshake" event with the
// handshake's error on that connection, once; net/http still logs it to
// the server's ErrorLog, as without the spy.
func TestServerTLSHandshakeFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(t *testing.T, addr string)
		err    string // in the event's error
		log    string // in the ErrorLog line
	}{
		{"untrusted certificate", func(t *testing.T, addr string) {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "127.0.0.1"})
			if err == nil {
				c.Close()
				t.Fatal("handshake with an untrusted certificate succeeded")
			}
		}, "bad certificate", "bad certificate"},
		{"plain HTTP", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			io.Copy(io.Discard, c) // net/http answers 400 and closes
		}, "does not look like a TLS handshake", "client sent an HTTP request to an HTTPS server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			var errLog syncBuffer
			srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(&errLog, "", 0)}
			url, _ := startTLSServer(t, spy, srv)
			tc.client(t, strings.TrimPrefix(url, "https://"))

			var fail ev
			waitFor(t, "the server's TLS Handshake event", func() bool {
				for _, e := range sink.events(connscope.Server) {
					if e.Msg == connscope.MsgTLS {
						fail = e
						return true
					}
				}
				return false
			})
			if fail.Err == nil || !strings.Contains(fail.Err.Error(), tc.err) {
				t.Errorf("server TLS Handshake error %v, want one with %q", fail.Err, tc.err)
			}
			waitFor(t, "the ErrorLog line", func() bool { return strings.Contains(errLog.String(), "TLS handshake error") })
			if !strings.Contains(errLog.String(), tc.log) {
				t.Errorf("ErrorLog %q lacks %q", errLog.String(), tc.log)
			}
			evs := sink.events(connscope.Server)
			var n int
			for _, e := range evs {
				if e.ID != fail.ID {
					t.Errorf("event %q of another connection", e.Msg)
				}
				if e.Msg == connscope.MsgTLS {
					n++
				}
			}
			if n != 1 || evs[0].Msg != connscope.MsgAccept {
				t.Errorf("server events %q; want Socket Accept first and one TLS Handshake", messages(evs))
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger on another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
