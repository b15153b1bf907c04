package httpscope

import (
	"context"
	"net/http/httptrace"
	"testing"
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
