package httpscope_test

import (
	"context"
	"net/http"
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

// oneConn limits t to one connection per host, dials in progress
// counted (MaxConnsPerHost), for tests that want requests made one after
// the other on one connection. net/http pools a connection it dialed only
// once it has handed it to the dial's request (a new unencrypted HTTP/2
// connection: Transport.dialConnFor), or found that request gone: a
// request made meanwhile, for h2c even after the first one is over, finds
// the pool empty and dials a second (HTTP/2 then closes it unused). With
// the limit, that request waits for the first connection to be pooled.
func oneConn(t *http.Transport) { t.MaxConnsPerHost = 1 }
