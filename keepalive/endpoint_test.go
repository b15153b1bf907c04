package keepalive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope/tcpinfo"
)

// syncBuffer is a bytes.Buffer safe for the endpoints' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) events(t *testing.T) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// runClient runs a Client against ln's port within 5 s.
func runClient(t *testing.T, c *Client, ln net.Listener) Result {
	t.Helper()
	c.Port = port(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.DialAndRun(ctx, "127.0.0.1")
	if err != nil {
		t.Fatalf("DialAndRun: %v (result %+v)", err, r)
	}
	return r
}

// peer accepts one connection on ln and hands it to f in a goroutine.
func peer(t *testing.T, ln net.Listener, f func(c *net.TCPConn)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f(c.(*net.TCPConn))
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func TestErrno(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{io.EOF, "EOF"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}, "ETIMEDOUT"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "deadline"},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, "ECONNRESET"},
		{fmt.Errorf("write: %w", syscall.EPIPE), "EPIPE"},
		{syscall.EHOSTUNREACH, "EHOSTUNREACH"},
		{net.ErrClosed, "closed"},
		{syscall.Errno(200), "errno 200"},
		{errors.New("x"), "other"},
	}
	for _, tt := range tests {
		if got := Errno(tt.err); got != tt.want {
			t.Errorf("Errno(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// A server and a client over loopback: data flows, nothing fails, and
// both stop when the context ends.
func TestServerClient(t *testing.T) {
	var slog, clog syncBuffer
	results := make(chan Result, 1)
	srv := &Server{Addr: "127.0.0.1", Endpoint: Endpoint{Log: &slog, Every: 20 * time.Millisecond,
		Settings: &Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}},
		OnResult: func(r Result) { results <- r }}
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, ln) }()

	cli := &Client{Port: port(ln), Endpoint: Endpoint{Log: &clog, Verbose: true, Heartbeat: 50 * time.Millisecond,
		Settings: &Settings{Idle: 3 * sec, Interval: sec, Count: 2}}}
	cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	r, err := cli.DialAndRun(cctx, "127.0.0.1")
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) || !r.Detected.IsZero() || r.LastRecv.IsZero() {
		t.Errorf("client: %+v, %v; want no failure, data received, context error", r, err)
	}
	cancel()
	if err := <-serveErr; err != nil {
		t.Errorf("Serve = %v", err)
	}
	sr := <-results
	if sr.Side != "server" {
		t.Errorf("server result %+v", sr)
	}

	var gotPong, gotData bool
	for _, ev := range clog.events(t) {
		gotPong = gotPong || ev.Data == "pong"
		gotData = gotData || strings.HasPrefix(ev.Data, "data ")
		if ev.Event == "connected" && ev.Settings != "3s/1s/2" {
			t.Errorf("client connected with %q, want 3s/1s/2", ev.Settings)
		}
		if ev.SinceRecvMS == nil {
			t.Errorf("event %+v has no since_recv_ms", ev)
		}
	}
	if !gotPong || !gotData {
		t.Errorf("client log: pong %v, data %v; want both\n%s", gotPong, gotData, clog.b.String())
	}
	var connected bool
	for _, ev := range slog.events(t) {
		if ev.Event == "connected" {
			connected = true
			if ev.Settings != "2s/1s/3 user-timeout=5s" {
				t.Errorf("server connected with %q", ev.Settings)
			}
		}
	}
	if !connected {
		t.Errorf("server log has no connected event:\n%s", slog.b.String())
	}
}

func TestClientDetects(t *testing.T) {
	tests := []struct {
		name  string
		cli   Client
		peer  func(c *net.TCPConn)
		op    string
		errno string
	}{
		{"FIN is EOF", Client{}, func(c *net.TCPConn) {
			bufio.NewReader(c).ReadString('\n') // the hello: unread data would make the close a reset
			c.Write([]byte("bye\n"))
		}, "read", "EOF"},
		{"RST is ECONNRESET", Client{}, func(c *net.TCPConn) {
			bufio.NewReader(c).ReadString('\n') // the hello, so the close sends RST, not FIN
			c.SetLinger(0)
		}, "read", "ECONNRESET"},
		{"read deadline", Client{Endpoint: Endpoint{ReadDeadline: 100 * time.Millisecond}},
			func(c *net.TCPConn) { io.Copy(io.Discard, c) }, "read-deadline", "deadline"},
		{"heartbeat unanswered", Client{Endpoint: Endpoint{Heartbeat: 50 * time.Millisecond}},
			func(c *net.TCPConn) { io.Copy(io.Discard, c) }, "heartbeat", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t)
			peer(t, ln, tt.peer)
			var log syncBuffer
			tt.cli.Log = &log
			r := runClient(t, &tt.cli, ln)
			if r.Op != tt.op || r.Errno != tt.errno || r.Detected.IsZero() || len(r.Errors) == 0 {
				t.Errorf("result %+v; want op %s, errno %s", r, tt.op, tt.errno)
			}
			var found bool
			for _, ev := range log.events(t) {
				if ev.Event == "error" {
					found = true
					if ev.Errno != tt.errno || ev.Op != tt.op || ev.TCPInfo == nil || ev.SinceRecvMS == nil {
						t.Errorf("error event %+v", ev)
					}
				}
			}
			if !found {
				t.Errorf("no error event in log:\n%s", log.b.String())
			}
		})
	}
}

// A client that stops reading closes its window: the flooding server's
// socket runs the persist timer. The client notices the server's reset by
// polling, since it does not read.
func TestStopReading(t *testing.T) {
	ln := listen(t)
	infos := make(chan tcpinfo.Info, 1)
	peer(t, ln, func(c *net.TCPConn) {
		chunk := make([]byte, 64<<10)
		var info tcpinfo.Info
		for i := 0; i < 500; i++ {
			c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			c.Write(chunk)
			info, _ = tcpinfo.Get(c)
			if info.Timer == "persist" {
				break
			}
		}
		infos <- info
		c.SetLinger(0) // the close resets the connection
	})
	r := runClient(t, &Client{Endpoint: Endpoint{Pattern: StopReading}}, ln)
	if info := <-infos; info.Timer != "persist" {
		t.Errorf("flooding server's timer = %q, want persist (%+v)", info.Timer, info)
	}
	if r.Op != "poll" || r.Errno != "ECONNRESET" {
		t.Errorf("client result %+v; want poll, ECONNRESET", r)
	}
}

func TestServerPortInUse(t *testing.T) {
	ln := listen(t)
	srv := &Server{Addr: "127.0.0.1", Port: port(ln)}
	_, err := srv.Listen(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.HasPrefix(err.Error(), "keepalive: ") {
		t.Errorf("Listen on a used port: %v", err)
	}
}

// TestServerListensOnLoopbackByDefault: endpoints bind to 127.0.0.1 unless
// told otherwise, as `connscope keepalive server` does; an empty Addr
// listened on every address.
func TestServerListensOnLoopbackByDefault(t *testing.T) {
	free := listen(t)
	p := port(free)
	free.Close()
	ln, err := (&Server{Port: p}).Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a := ln.Addr().(*net.TCPAddr); !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("Server with an empty Addr listens on %v, want 127.0.0.1:%d", a, p)
	}
}

func TestBadPattern(t *testing.T) {
	ln := listen(t)
	peer(t, ln, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	cli := &Client{Port: port(ln), Endpoint: Endpoint{Pattern: "bogus"}}
	if _, err := cli.DialAndRun(context.Background(), "127.0.0.1"); err == nil {
		t.Error("DialAndRun accepted pattern bogus")
	}
}

func TestApplyConn(t *testing.T) {
	ln := listen(t)
	peer(t, ln, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := Settings{Idle: 4 * sec, Interval: 2 * sec, Count: 5, UserTimeout: 1234 * time.Millisecond}
	if err := ApplyConn(c, want); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(c.(*net.TCPConn)); err != nil || got != want {
		t.Errorf("Read = %+v, %v; want %+v", got, err, want)
	}
}

func TestParsePattern(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Pattern
	}{
		{"stream", Stream}, {"STREAM", Stream}, {"Burst", Burst}, {"idle", Quiet}, {"Idle", Quiet},
		{"Stop-Reading", StopReading}, {"FLOOD", Flood}, {"bogus", ""}, {"", ""},
	} {
		got, err := ParsePattern(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("ParsePattern(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestPatternAnyCase: a Pattern accepted without regard to case behaves
// as its canonical one: "Stream" streams.
func TestPatternAnyCase(t *testing.T) {
	ln := listen(t)
	lines := make(chan string, 2)
	peer(t, ln, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // bounded if nothing streams
		sc := bufio.NewScanner(c)
		for i := 0; i < 2 && sc.Scan(); i++ {
			lines <- sc.Text()
		}
		close(lines)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := &Client{Port: port(ln), Endpoint: Endpoint{Pattern: "Stream", Every: 10 * time.Millisecond}}
	done := make(chan error, 1)
	go func() {
		_, err := cli.DialAndRun(ctx, "127.0.0.1")
		done <- err
	}()
	var got []string
	for l := range lines {
		got = append(got, l)
	}
	cancel()
	<-done
	if len(got) != 2 || got[0] != "hello" || got[1] != "data 1" {
		t.Errorf("client with pattern %q sent %q; want hello, then a stream", "Stream", got)
	}
}
