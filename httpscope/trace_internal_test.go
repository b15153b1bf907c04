package httpscope

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptrace"
	"testing"

	"golang.org/x/net/http2"

	"github.com/connscope/connscope"
)

// TestReqTraceIsTheContext: the fast path (no context.WithValue per
// request) holds: httptrace finds the request's trace in the reqTrace
// itself, and every other key goes to the caller's context.
func TestReqTraceIsTheContext(t *testing.T) {
	if clientTraceKey() == nil {
		t.Fatal("httptrace's context key was not learnt: every request pays for context.WithValue")
	}
	type key struct{}
	rt := &reqTrace{Context: context.WithValue(context.Background(), key{}, "v")}
	if got := httptrace.ContextClientTrace(rt); got != &rt.ct {
		t.Errorf("ContextClientTrace = %p, want the reqTrace's own %p", got, &rt.ct)
	}
	if got := rt.Value(key{}); got != "v" {
		t.Errorf("caller's value through the reqTrace = %v", got)
	}
	if got, _ := rt.Value(reqTraceKey{}).(*reqTrace); got != rt {
		t.Errorf("reqTraceKey gives %p, want %p", got, rt)
	}

	// The caller's own trace: httptrace composes it into rt.ct, which the
	// reqTrace hands out.
	var called bool
	callerTrace := &httptrace.ClientTrace{GotFirstResponseByte: func() { called = true }}
	rt = &reqTrace{}
	rt.setHooks(false)
	rt.Context = httptrace.WithClientTrace(httptrace.WithClientTrace(context.Background(), callerTrace), &rt.ct)
	httptrace.ContextClientTrace(rt).GotFirstResponseByte()
	if !called {
		t.Error("the caller's hook was not called through the composed trace")
	}
}

// TestStreamFailed: which errors of an HTTP/2 request leave its
// connection pooled (the stream's alone) and which may be the
// connection's, with the texts of net/http's own errors.
func TestStreamFailed(t *testing.T) {
	spy := &connscope.Spy{}
	a, b := net.Pipe()
	defer b.Close()
	w := spy.WrapConn(a, connscope.Client)
	r := connscope.RecordOf(w)
	for _, tc := range []struct {
		name    string
		err     error
		ctxDone bool
		want    bool
	}{
		{"caller cancelled", context.Canceled, true, true},
		{"reset by the server", fmt.Errorf("wrapped: %w", http2.StreamError{StreamID: 3, Code: http2.ErrCodeInternal}), false, true},
		{"response header timeout", errors.New("http2: timeout awaiting response headers"), false, true},
		{"the request body's error", errors.New("the caller's body failed"), false, true},
		{"connection lost (no PING answer)", errors.New("http2: client connection lost"), false, false},
		{"connection closed", errors.New("http2: client conn is closed"), false, false},
		{"connection-level protocol error", errors.New("connection error: PROTOCOL_ERROR"), false, false},
		{"GOAWAY", errors.New("http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=\"\""), false, false},
		{"unexpected EOF", io.ErrUnexpectedEOF, false, false},
		{"x/net's ConnectionError", http2.ConnectionError(http2.ErrCodeProtocol), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := streamFailed(r, tc.err, tc.ctxDone); got != tc.want {
				t.Errorf("streamFailed(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	w.Close() // a broken connection fails every stream with it
	if streamFailed(r, context.Canceled, true) {
		t.Error("streamFailed on a closed connection = true, want false")
	}
}
