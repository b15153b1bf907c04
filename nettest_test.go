package connscope_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"go.uber.org/goleak"
	"golang.org/x/net/nettest"
)

// lockedBuffer is a bytes.Buffer safe for the sink's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestConnNettest runs x/net's conformance suite for net.Conn over wrapped
// connections (both ends), over tcp and unix, with a real sink so that
// every event is built and encoded on the way.
func TestConnNettest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		how     string // "listener+dial": WrapListener and WrapDial; "conn": WrapConn on both ends
	}{
		{"tcp/listener+dial", "tcp", "listener+dial"},
		{"tcp/conn", "tcp", "conn"},
		{"unix/listener+dial", "unix", "listener+dial"},
		{"unix/conn", "unix", "conn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out lockedBuffer
			sink := connscope.NewJSONSink(&out, &connscope.WriterOptions{FlushInterval: 5 * time.Millisecond})
			text := connscope.NewTextSink(&out, nil)
			spy := &connscope.Spy{Sink: connscope.MultiSink(sink, text), Producer: "nettest"}
			// nettest leaves goroutines behind (chunkedCopy(c2, c2) and
			// the like) that report a peer's FIN or a read error after
			// the pipe's stop: the sinks must outlive them, or those
			// events are rightly dropped as emitted after Close.
			before := goleak.IgnoreCurrent()
			var mu sync.Mutex // nettest may call MakePipe from parallel subtests
			n := 0
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				mu.Lock()
				n++
				mu.Unlock()
				return makeWrappedPipe(t, spy, tc.network, tc.how)
			})
			if err := goleak.Find(before); err != nil {
				t.Fatalf("nettest's goroutines did not end: %v", err)
			}
			if err := sink.Close(); err != nil {
				t.Errorf("JSON sink: %v", err)
			}
			if err := text.Close(); err != nil {
				t.Errorf("text sink: %v", err)
			}
			st := spy.Stats()
			if st.Open != 0 || st.Opened != int64(2*n) || st.HookPanics != 0 {
				t.Errorf("after %d pipes, Stats = %+v; want Opened %d, Open 0", n, st, 2*n)
			}
			if sink.Dropped() != 0 || sink.Written() == 0 {
				t.Errorf("JSON sink wrote %d events, dropped %d", sink.Written(), sink.Dropped())
			}
		})
	}
}

func makeWrappedPipe(t *testing.T, spy *connscope.Spy, network, how string) (c1, c2 net.Conn, stop func(), err error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	dial := (&net.Dialer{}).DialContext
	if how == "listener+dial" {
		ln = spy.WrapListener(ln)
		dial = spy.WrapDial(nil)
	}
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c1, err = dial(ctx, network, ln.Addr().String())
	if err != nil {
		ln.Close()
		<-ch
		return nil, nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		c1.Close()
		return nil, nil, nil, r.err
	}
	c2 = r.c
	if how == "conn" {
		c1 = spy.WrapConn(c1, connscope.Client)
		c2 = spy.WrapConn(c2, connscope.Server)
	}
	if connscope.RecordOf(c1) == nil || connscope.RecordOf(c2) == nil {
		t.Errorf("pipe ends not wrapped: %T %T", c1, c2)
	}
	return c1, c2, func() { c1.Close(); c2.Close() }, nil
}
