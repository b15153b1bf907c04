package httpscope_test

import (
	"context"
	"net/http/httptrace"
	"syscall"
)

func errRefused() error { return syscall.ECONNREFUSED }

func httptraceContext(gotConn, connectDone *bool) context.Context {
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn:     func(httptrace.GotConnInfo) { *gotConn = true },
		ConnectDone: func(network, addr string, err error) { *connectDone = true },
	})
}
