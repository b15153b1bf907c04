package connscope_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/connscope/connscope"
)

// printEvent is an Event hook for examples: it prints the fields that do
// not change from run to run (not ids, ports or times).
func printEvent(e *connscope.Event) {
	fmt.Print(e.Message)
	if r := e.Conn; r != nil {
		fmt.Printf(" side=%s read=%d written=%d", r.Side(), e.BytesRead, e.BytesWritten)
	}
	if e.ClosedBy != "" {
		fmt.Printf(" hadError=%v closedBy=%s", e.HadError, e.ClosedBy)
	}
	fmt.Println()
}

func ExampleSpy_WrapConn() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() { // a server that says hello and hangs up
		c, _ := ln.Accept()
		c.Write([]byte("hello"))
		c.Close()
	}()

	spy := &connscope.Spy{Hooks: connscope.Hooks{Event: printEvent}}
	raw, _ := net.Dial("tcp", ln.Addr().String())
	c := spy.WrapConn(raw, connscope.Client)
	b, err := io.ReadAll(c) // the server's FIN: "Socket End"
	fmt.Printf("read %q, %v\n", b, err)
	c.Close()
	// Output:
	// Socket Connect side=client read=0 written=0
	// Socket End side=client read=5 written=0
	// read "hello", <nil>
	// Socket Close side=client read=5 written=0 hadError=false closedBy=remote
}

func ExampleSpy_WrapDial() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	spy := &connscope.Spy{Hooks: connscope.Hooks{Event: func(e *connscope.Event) { fmt.Println(e.Message) }}}
	// MaxConnsPerHost 1 keeps this output stable: the second request waits
	// for the pooled connection instead of racing it with a new dial.
	tr := &http.Transport{DialContext: spy.WrapDial(nil), MaxConnsPerHost: 1}
	client := &http.Client{Transport: tr}
	for range 2 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fmt.Println("connections:", spy.Stats().Opened) // both requests used one pooled connection
	tr.CloseIdleConnections()
	// Output:
	// Socket Connect
	// connections: 1
	// Socket Close
}

func ExampleSpy_WrapListener() {
	spy := &connscope.Spy{Hooks: connscope.Hooks{Event: printEvent}}
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	ln := spy.WrapListener(raw)
	defer ln.Close()
	done := make(chan struct{})
	go func() { // the server: its connections are wrapped
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 4)
		io.ReadFull(c, buf)
		c.Write([]byte("pong"))
		c.Close()
	}()

	c, _ := net.Dial("tcp", ln.Addr().String())
	c.Write([]byte("ping"))
	reply, _ := io.ReadAll(c)
	c.Close()
	<-done
	fmt.Printf("client got %q\n", reply)
	// Output:
	// Socket Accept side=server read=0 written=0
	// Socket Close side=server read=4 written=4 hadError=false closedBy=local
	// client got "pong"
}

func ExampleNewJSONSink() {
	var out bytes.Buffer // os.Stderr or a file in real use
	sink := connscope.NewJSONSink(&out, nil)
	spy := &connscope.Spy{Sink: sink, Producer: "example"}

	// A dial that failed: one event, in connection-spy's format (a fixed
	// time here, so that the output does not change).
	spy.Emit(connscope.Event{
		Time:    time.Date(2021, 5, 7, 17, 16, 29, 743_000_000, time.UTC),
		Message: connscope.MsgError,
		Target:  "GET https://example.com:443/",
		Op:      "dial",
		Err:     &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
	})
	if err := sink.Close(); err != nil { // flushes
		fmt.Println(err)
	}
	fmt.Print(out.String())
	// Output:
	// {"id":null,"producer":"example","localAddress":null,"localPort":null,"remoteAddress":null,"remotePort":null,"target":"GET https://example.com:443/","level":"error","message":"Socket Error","_timestamp":"2021-05-07T17:16:29.743Z","op":"dial","error":"dial tcp: connect: connection refused","errorKind":"refused","errno":"ECONNREFUSED"}
}

func ExampleNewTextSink() {
	var out bytes.Buffer // os.Stderr in real use
	sink := connscope.NewTextSink(&out, nil)
	spy := &connscope.Spy{Sink: sink}

	spy.Emit(connscope.Event{
		Time:    time.Date(2021, 5, 7, 17, 16, 29, 743_000_000, time.UTC),
		Message: connscope.MsgError,
		Target:  "GET https://example.com:443/",
		Op:      "dial",
		Err:     &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
	})
	sink.Close()
	fmt.Print(out.String())
	// Output:
	// 2021-05-07T17:16:29.743Z  --------          Socket Error      GET https://example.com:443/  ECONNREFUSED  op=dial  err="dial tcp: connect: connection refused"
}

// MultiSink sends each event to several sinks: here, everything to a
// file and only what went wrong to the terminal.
func ExampleMultiSink() {
	var file, terminal bytes.Buffer // a file and os.Stderr in real use
	all := connscope.NewJSONSink(&file, nil)
	problems := connscope.NewTextSink(&terminal, &connscope.WriterOptions{Level: slog.LevelWarn})
	spy := &connscope.Spy{Sink: connscope.MultiSink(all, problems)}

	c1, c2 := net.Pipe()
	conn := spy.WrapConn(c1, connscope.Client)
	conn.Close()
	c2.Close()
	all.Close()
	problems.Close()
	fmt.Println("file:", strings.Count(file.String(), "\n"), "events")
	fmt.Println("terminal:", strings.Count(terminal.String(), "\n"), "events")
	// Output:
	// file: 2 events
	// terminal: 0 events
}

func ExampleNewSlogSink() {
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey { // for a stable output
				return slog.Attr{}
			}
			return a
		},
	})
	spy := &connscope.Spy{Sink: connscope.NewSlogSink(slog.New(h)), Producer: "example"}
	spy.Emit(connscope.Event{Message: connscope.MsgTimeout, Op: "read", Err: os.ErrDeadlineExceeded})
	// Output:
	// level=WARN msg="Socket Timeout" producer=example op=read error="i/o timeout" errorKind=deadline
}

func ExampleRedaction_Target() {
	u, _ := url.Parse("https://alice:hunter2@api.example.com/v1/items?page=2&api_key=abc123#top")
	fmt.Println(connscope.Redaction{}.Target("GET", u))
	fmt.Println(connscope.Redaction{OmitQuery: true}.Target("GET", u))
	v6, _ := url.Parse("http://[::1]/health")
	fmt.Println(connscope.Redaction{}.Target("HEAD", v6))
	// Output:
	// GET https://api.example.com:443/v1/items?page=2&api_key=REDACTED
	// GET https://api.example.com:443/v1/items
	// HEAD http://[::1]:80/health
}

func ExampleClassify() {
	for _, err := range []error{
		io.EOF,
		&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded},
		&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)},
		&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
		context.Canceled,
		errors.New("something else"),
	} {
		kind, errno := connscope.Classify(err)
		fmt.Printf("%-12s %-13s %v\n", kind, errno, err)
	}
	// Output:
	// eof                        EOF
	// deadline                   read tcp: i/o timeout
	// timeout      ETIMEDOUT     read tcp: read: connection timed out
	// reset        ECONNRESET    read tcp: read: connection reset by peer
	// refused      ECONNREFUSED  dial tcp: connect: connection refused
	// canceled                   context canceled
	// other                      something else
}

func ExampleRecordOf() {
	spy := &connscope.Spy{}
	a, b := net.Pipe()
	defer b.Close()
	c := spy.WrapConn(a, connscope.Client)
	defer c.Close()
	// Layers that expose NetConn, such as TLS, are looked through.
	tc := tls.Client(c, &tls.Config{ServerName: "example.com"})

	r := connscope.RecordOf(tc)
	fmt.Println(r.Side(), r.Network(), r.State(), r.ID() == connscope.RecordOf(c).ID())
	fmt.Println(connscope.RecordOf(b) == nil) // not wrapped
	// Output:
	// client pipe active true
	// true
}

// The package documentation's example, compiled only: it dials the
// internet.
func Example() {
	ctx := context.Background()

	spy := &connscope.Spy{Sink: connscope.NewJSONSink(os.Stderr, nil)}
	defer spy.Sink.(*connscope.WriterSink).Close()
	conn, err := spy.WrapDial(nil)(ctx, "tcp", "example.com:443")

	if err != nil {
		return
	}
	conn.Close()
}

// The README's library example, compiled only: ids and ports change from
// run to run.
func ExampleSpy() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return
	}

	sink := connscope.NewJSONSink(os.Stderr, nil) // or NewTextSink; any Sink: NewSlogSink(logger), MultiSink(...)
	defer sink.Close()                            // writes what is buffered
	spy := &connscope.Spy{Sink: sink}             // the zero Spy works too: records, no events

	conn = spy.WrapConn(conn, connscope.Client)       // connection-spy's spyNewSocket
	dial := spy.WrapDial((&net.Dialer{}).DialContext) // usable as http.Transport.DialContext
	ln = spy.WrapListener(ln)                         // servers: accepted connections

	r := connscope.RecordOf(conn) // also through a *tls.Conn
	fmt.Println(r.ID(), r.BytesRead(), r.Snapshot().State)

	_ = &http.Transport{DialContext: dial}
	conn.Close()
	ln.Close()
}

func ExampleErrno() {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	fmt.Printf("%q\n", connscope.Errno(reset))
	fmt.Printf("%q\n", connscope.Errno(io.EOF)) // no system error inside
	// Output:
	// "ECONNRESET"
	// ""
}

// DefaultSecretKeys is the list to extend: here, a query key of the
// program's own that holds a secret.
func ExampleDefaultSecretKeys() {
	rd := connscope.Redaction{SecretKeys: append(connscope.DefaultSecretKeys(), "ticket")}
	u, _ := url.Parse("https://api.example.com/v1/items?ticket=t-123&access_token=abc&page=2")
	fmt.Println(rd.Target("GET", u))
	fmt.Println(rd.IsSecret("X-Ticket"), rd.IsSecret("Cookie"), rd.IsSecret("Accept"))
	// Output:
	// GET https://api.example.com:443/v1/items?ticket=REDACTED&access_token=REDACTED&page=2
	// true true false
}

func ExampleNewID() {
	id := connscope.NewID()
	s := id.String() // random: 8-4-4-4-12 hex digits, version 4
	fmt.Println(len(s), s[14:15], id.IsZero(), connscope.ID{}.IsZero())
	// Output: 36 4 false true
}

// ContextWithTarget names the request a dial is made for, as httpscope
// does, so that "Socket Connect" carries it.
func ExampleContextWithTarget() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	spy := &connscope.Spy{Hooks: connscope.Hooks{Event: func(e *connscope.Event) {
		fmt.Printf("%s: %s\n", e.Message, e.Target)
	}}}
	u, _ := url.Parse("https://api.example.com/v1/items?token=abc")
	ctx := connscope.ContextWithTarget(context.Background(), spy.Redaction.Target("GET", u))
	fmt.Println(connscope.TargetFromContext(ctx))

	c, err := spy.WrapDial(nil)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	c.Close()
	// Output:
	// GET https://api.example.com:443/v1/items?token=REDACTED
	// Socket Connect: GET https://api.example.com:443/v1/items?token=REDACTED
	// Socket Close: GET https://api.example.com:443/v1/items?token=REDACTED
}

func ExampleContextWithDialID() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	// The caller chooses the dial's id, so that its own events, or its
	// error, can name the connection, or the dial if it fails.
	id := connscope.NewID()
	spy := &connscope.Spy{Hooks: connscope.Hooks{Event: func(e *connscope.Event) {
		fmt.Println(e.Message, e.Conn.ID() == id)
	}}}
	ctx := connscope.ContextWithDialID(context.Background(), id)
	c, err := spy.WrapDial(nil)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	fmt.Println("record:", connscope.RecordOf(c).ID() == id)
	c.Close()
	// Output:
	// Socket Connect true
	// record: true
	// Socket Close true
}
