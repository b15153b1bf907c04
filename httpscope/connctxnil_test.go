package httpscope_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestServerConnContextNilPanicsAsBare: a ConnContext of the program's
// that returns nil is a bug that net/http reports by panicking, in Serve,
// with "ConnContext returned nil". An instrumented server must panic with
// the same value, not with context.WithValue's "cannot create context
// from nil parent".
func TestServerConnContextNilPanicsAsBare(t *testing.T) {
	var ref any
	for i, m := range []diffMode{diffBare, diffServer} {
		srv := &http.Server{ConnContext: func(context.Context, net.Conn) context.Context { return nil }}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if m.server {
			spy := &connscope.Spy{Sink: &memSink{}}
			httpscope.InstrumentServer(spy, srv, nil)
			ln = spy.WrapListener(ln)
		}
		panicked := make(chan any, 1)
		go func() {
			defer func() { panicked <- recover() }()
			srv.Serve(ln)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got := <-panicked
		c.Close()
		srv.Close() // Serve closed its listener as it panicked; nothing else runs
		if i == 0 {
			ref = got
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(ref) {
			t.Errorf("instrumented server panicked with %q, bare with %q", got, ref)
		}
	}
	if ref == nil {
		t.Fatal("the bare server did not panic")
	}
}
