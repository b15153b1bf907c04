package httpscope_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// printSink prints each event's message and request number, which do not
// change from run to run (ids, ports and times do).
type printSink struct{}

func (printSink) Emit(e *connscope.Event) {
	if e.Conn != nil && e.Conn.Side() == connscope.Server {
		return
	}
	if e.Request != 0 {
		fmt.Printf("%s (request %d)\n", e.Message, e.Request)
		return
	}
	fmt.Println(e.Message)
}

func ExampleWrapTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer srv.Close()

	spy := &connscope.Spy{Sink: printSink{}} // in a program: connscope.NewJSONSink(os.Stderr, nil)
	tr := &http.Transport{}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	for range 2 {
		resp, err := client.Get(srv.URL + "/items?page=1")
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	// Output:
	// Socket Connect
	// HTTP(S) Response (request 1)
	// Socket Idle
	// Reuse Socket (request 2)
	// HTTP(S) Response (request 2)
	// Socket Idle
	// Socket Close
}

func ExampleInstrumentDefault() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	spy := &connscope.Spy{Sink: printSink{}}
	undo := httpscope.InstrumentDefault(spy, nil) // connection-spy's monkeyPatch()
	defer undo()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	resp, err := http.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	// Output:
	// Socket Connect
	// HTTP(S) Response (request 1)
	// Socket Idle
	// Socket Close
}

func ExampleInstrumentServer() {
	var count atomic.Int64
	spy := &connscope.Spy{Sink: countSink{&count}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi")
	}))
	srv.Listener = spy.WrapListener(srv.Listener) // sees accept, bytes, end, close
	httpscope.InstrumentServer(spy, srv.Config, nil)
	srv.Start()

	resp, err := http.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	srv.Close()
	fmt.Println("server events:", count.Load() > 0, "open connections:", spy.Stats().Open)
	// Output:
	// server events: true open connections: 0
}

type countSink struct{ n *atomic.Int64 }

func (c countSink) Emit(e *connscope.Event) { c.n.Add(1) }

// The README's example, compiled only: it serves until the program ends.
func Example() {
	myTransport := &http.Transport{} // the program's own
	srv := &http.Server{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	cert, key := "cert.pem", "key.pem"

	spy := &connscope.Spy{Sink: connscope.NewJSONSink(os.Stderr, nil)}

	client := &http.Client{Transport: httpscope.NewTransport(spy, nil)} // a traced clone of DefaultTransport
	rt := httpscope.WrapTransport(spy, myTransport, nil)                // or your own *http.Transport, in place

	undo := httpscope.InstrumentDefault(spy, nil) // connection-spy's monkeyPatch(): http.Get, http.DefaultClient
	defer undo()

	httpscope.InstrumentServer(spy, srv, nil)     // requests, idle, hijack
	srv.ServeTLS(spy.WrapListener(ln), cert, key) // connections: below TLS, so HTTP/2 stays on

	_, _ = client, rt
}

func ExampleNewTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer srv.Close()

	spy := &connscope.Spy{Sink: printSink{}} // in a program: connscope.NewJSONSink(os.Stderr, nil)
	tr := httpscope.NewTransport(spy, nil)   // a clone of http.DefaultTransport, traced
	client := &http.Client{Transport: tr}
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	// Output:
	// Socket Connect
	// HTTP(S) Response (request 1)
	// Socket Idle
	// Socket Close
}
