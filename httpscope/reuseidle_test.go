package httpscope_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestRequestErrorOnReusedConnHasIdle: a request that took a pooled
// connection just as the peer closed it (a load balancer's idle timeout)
// fails with an "HTTP(S) Error" that says how long the connection had sat
// idle: the fact that explains the failure, there too where "Reuse
// Socket", a debug event, is not written (WriterOptions.Level warn).
func TestRequestErrorOnReusedConnHasIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		// The second request is read, then the connection closed
		// unanswered: a POST, which net/http does not retry.
		http.ReadRequest(br)
	}()

	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil), Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/first")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) // read to its end, so that the connection is pooled
	resp.Body.Close()
	const idle = 20 * time.Millisecond
	time.Sleep(idle)
	if _, err := client.Post("http://"+ln.Addr().String()+"/second", "text/plain", strings.NewReader("x")); err == nil {
		t.Fatal("POST on a connection closed unanswered succeeded")
	}
	var got *ev
	for _, e := range sink.events(0) {
		if e.Msg == connscope.MsgRequestError {
			got = &e
		}
	}
	if got == nil || got.Request != 2 {
		t.Fatalf("want the second request's HTTP(S) Error, got %+v", got)
	}
	if got.Idle < idle {
		t.Errorf("HTTP(S) Error idle %v, want at least the %v the connection sat in the pool", got.Idle, idle)
	}
}
