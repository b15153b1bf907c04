package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
	"go.uber.org/goleak"
)

// cmd/connscope's TestMain belongs to no one file: check leaks per test.

func TestKeepaliveBadInput(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"keepalive"}, "missing subcommand"},
		{[]string{"keepalive", "explain", "--idle", "1.5s"}, "--idle"},
		{[]string{"keepalive", "explain", "--idle", "x"}, "--idle"},
		{[]string{"keepalive", "explain", "--interval", "0s"}, "--interval"},
		{[]string{"keepalive", "explain", "--count", "0"}, "--count"},
		{[]string{"keepalive", "explain", "--count", "three"}, "--count"},
		{[]string{"keepalive", "explain", "--count", "500"}, "--count"},
		{[]string{"keepalive", "explain", "--user-timeout", "-1s"}, "--user-timeout"},
		{[]string{"keepalive", "explain", "--retries2", "-1"}, "--retries2"},
		{[]string{"keepalive", "explain", "--retries2", "256"}, "--retries2"},
		{[]string{"keepalive", "explain", "--lb-idle", "soon"}, "--lb-idle"},
		{[]string{"keepalive", "explain", "--keepalive", "2/1"}, "--keepalive"},
		{[]string{"keepalive", "explain", "--keepalive", "2/1/3", "--idle", "2s"}, "--keepalive"},
		{[]string{"keepalive", "explain", "extra"}, "unexpected argument"},
		{[]string{"keepalive", "client"}, "HOST"},
		{[]string{"keepalive", "client", "a", "b"}, "HOST"},
		{[]string{"keepalive", "client", "localhost", "--pattern", "bogus"}, "--pattern"},
		{[]string{"keepalive", "client", "localhost", "--read-deadline", "-1s"}, "--read-deadline"},
		{[]string{"keepalive", "client", "localhost", "--heartbeat", "often"}, "--heartbeat"},
		{[]string{"keepalive", "client", "localhost", "--dial-timeout", "0s"}, "--dial-timeout"},
		{[]string{"keepalive", "server", "--port", "70000"}, "--port"},
		{[]string{"keepalive", "server", "--keepalive", "2/1/0"}, "--keepalive"},
		{[]string{"keepalive", "server", "--every", "0s"}, "--every"},
		// Found in review r29: these ran, or failed with exit 1 without
		// naming the flag.
		{[]string{"keepalive", "bogus"}, "unexpected argument"},
		{[]string{"keepalive", "explain", "--keepalive", ""}, "--keepalive"},                                                 // ran with the kernel's values
		{[]string{"keepalive", "explain", "--keepalive", "2/1/3 user-timeout=5s", "--user-timeout", "6s"}, "--user-timeout"}, // 6s won silently
		{[]string{"keepalive", "explain", "--lb-idle", "1ns"}, "--lb-idle"},                                                  // recommended IdleConnTimeout 0: no limit
		{[]string{"keepalive", "explain", "--path-idle", "500us"}, "--path-idle"},
		{[]string{"keepalive", "server", "--keepalive", ""}, "--keepalive"},
		{[]string{"keepalive", "server", "--addr", "127.0.0.1:80"}, "--addr"}, // exit 1: lookup 127.0.0.1:80: no such host
		{[]string{"keepalive", "server", "--addr", "[::1]"}, "--addr"},        // exit 1: missing port in address
		{[]string{"keepalive", "server", "--addr", "198.51.100.7"}, "--addr"}, // exit 1: cannot assign requested address
		{[]string{"keepalive", "server", "--addr", ""}, "--addr"},             // listened on 127.0.0.1 only, unlike Go's ":port"
		{[]string{"keepalive", "client", ""}, "HOST"},                         // dialed ":7654", this host
		{[]string{"keepalive", "client", "localhost:7654"}, "HOST"},           // exit 1: lookup localhost:7654: no such host
		{[]string{"keepalive", "client", "[::1]"}, "HOST"},
		{[]string{"keepalive", "client", "localhost", "--keepalive", ""}, "--keepalive"},
		// Found in review r35: exit 1, or a message without the flag.
		{[]string{"keepalive", "explain", "--user-timeout", "1000h"}, "--user-timeout"},             // "keepalive: user timeout 1000h0m0s: ..."
		{[]string{"keepalive", "client", "localhost", "--user-timeout", "1000h"}, "--user-timeout"}, // the same
		{[]string{"keepalive", "client", "fe80::1%nosuch"}, "HOST"},                                 // exit 1: connect: invalid argument
		{[]string{"keepalive", "server", "--addr", "fe80::1%nosuch"}, "--addr"},                     // exit 1: bind: invalid argument
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		// Bounded: a server or client that starts must not run forever.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := execute(ctx, tt.args, &out, &errOut)
		cancel()
		if code != 2 || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message naming %s", tt.args, code, errOut.String(), tt.want)
		}
	}
}

func TestKeepaliveServerPortInUse(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var out, errOut bytes.Buffer
	code := execute(context.Background(), []string{"keepalive", "server", "--addr", "127.0.0.1", "--port", port}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "address already in use") {
		t.Errorf("exit %d, stderr %q; want 1 and address already in use", code, errOut.String())
	}
}

func TestKeepaliveExplain(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	code := execute(context.Background(), []string{"keepalive", "explain", "--idle", "2s", "--interval", "1s", "--count", "3", "--lb-idle", "60s"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"idle         5s              keepalive       I + V×C = 2s + 1s×3",
		"sending      15m24.6s        retransmission",
		"zero-window  never",
		"recommended: keepalive 2s/1s/3 user-timeout=5s",
		"IdleConnTimeout 54s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// The seed: only the idle time set.
	out.Reset()
	if code := execute(context.Background(), []string{"keepalive", "explain", "--keepalive", "2s/os/os", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var v struct {
		Detect map[string]struct {
			AfterSeconds float64 `json:"after_seconds"`
			Never        bool    `json:"never"`
			Timer        string  `json:"timer"`
		} `json:"detect"`
		Recommendation struct {
			Notes []string `json:"notes"`
		} `json:"recommendation"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if d := v.Detect["idle"]; d.AfterSeconds != 677 || d.Timer != "keepalive" {
		t.Errorf("idle detection %+v, want 677 s by keepalive", d)
	}
	if d := v.Detect["zero-window"]; !d.Never {
		t.Errorf("zero-window detection %+v, want never", d)
	}
	if len(v.Recommendation.Notes) == 0 {
		t.Error("no recommendation notes")
	}
}

// The client logs JSON lines and a final "detected" event naming the error.
func TestKeepaliveClientDetectsFIN(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		bufio.NewReader(c).ReadString('\n') // hello
		c.Write([]byte("bye\n"))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	err = runKeepaliveClient(ctx, keepaliveClientOpts{Host: "127.0.0.1",
		Client: keepalive.Client{Port: ln.Addr().(*net.TCPAddr).Port, Endpoint: keepalive.Endpoint{Settings: &keepalive.Settings{Idle: 2 * time.Second, Interval: time.Second, Count: 3}}}}, &out)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	events := jsonLines(t, &out)
	last := events[len(events)-1]
	if last["event"] != "detected" || last["errno"] != "EOF" {
		t.Errorf("last event %v, want detected EOF\n%s", last, out.String())
	}
}

// A server and a client from the CLI's run functions, over loopback.
func TestKeepaliveServerClient(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // the server reopens it; a race with another process is unlikely on loopback

	ctx, cancel := context.WithCancel(context.Background())
	var sout bytes.Buffer
	served := make(chan error, 1)
	go func() {
		served <- runKeepaliveServer(ctx, keepaliveServerOpts{Server: keepalive.Server{Addr: "127.0.0.1", Port: port,
			Endpoint: keepalive.Endpoint{Every: 20 * time.Millisecond}}}, &sout)
	}()
	var cout bytes.Buffer
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	for i := 0; i < 50; i++ { // until the server listens
		cout.Reset()
		err = runKeepaliveClient(cctx, keepaliveClientOpts{Host: "127.0.0.1", Client: keepalive.Client{Port: port}}, &cout)
		if err == nil || cctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	if err != nil && cctx.Err() == nil {
		t.Fatalf("client: %v", err)
	}
	var data bool
	for _, ev := range jsonLines(t, &cout) {
		data = data || ev["event"] == "data"
	}
	if !data {
		t.Errorf("client received no data:\n%s", cout.String())
	}
	if !strings.Contains(sout.String(), `"event":"listening"`) {
		t.Errorf("server log:\n%s", sout.String())
	}
}

func jsonLines(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	return evs
}

// explain's doc: "Unset keepalive flags mean the kernel's value". Giving
// only --user-timeout must not turn them into Go's 15s/15s/9.
func TestKeepaliveExplainUserTimeoutAloneKeepsKernelKeepalive(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	if code := execute(context.Background(), []string{"keepalive", "explain", "--user-timeout", "5s", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var v struct {
		Settings struct {
			Text string `json:"text"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if want := "os/os/os user-timeout=5s"; v.Settings.Text != want {
		t.Errorf("explain --user-timeout 5s: settings %q, want %q (unset keepalive flags are the kernel's)", v.Settings.Text, want)
	}
}

// Endpoints bind to loopback unless told otherwise: "keepalive server"
// without --addr must not listen on every address.
func TestKeepaliveServerListensOnLoopbackByDefault(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	code := make(chan int, 1)
	go func() {
		c := execute(ctx, []string{"keepalive", "server", "--port", port}, pw, &errOut)
		pw.Close()
		code <- c
	}()
	line, err := bufio.NewReader(pr).ReadString('\n') // the "listening" event
	cancel()
	go io.Copy(io.Discard, pr) // until the server returns
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, errOut.String())
	}
	if err != nil {
		t.Fatalf("no listening event: %v", err)
	}
	var ev struct{ Event, Local string }
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if ev.Event != "listening" || ev.Local != "127.0.0.1:"+port {
		t.Errorf("first event %q; want listening on 127.0.0.1:%s", line, port)
	}
}

// TestKeepaliveExplainRetries2Zero: --retries2 0 is what the kernel does
// with tcp_retries2=0 (TestExplainSysctlsSetToZero measures it): unacked
// data gives up at the first RTO expiry. It was refused as a usage error.
func TestKeepaliveExplainRetries2Zero(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	if code := execute(context.Background(), []string{"keepalive", "explain", "--retries2", "0", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var v struct {
		Kernel map[string]any `json:"kernel"`
		Detect map[string]struct {
			AfterSeconds float64 `json:"after_seconds"`
		} `json:"detect"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if got := v.Kernel["tcp_retries2"]; got != 0.0 {
		t.Errorf("kernel tcp_retries2 %v, want 0", got)
	}
	if got := v.Detect["sending"].AfterSeconds; got <= 0 || got > 1 {
		t.Errorf("sending detection after %v s with --retries2 0, want the first RTO expiry (0.2 s with Linux's RTO minimum)", got)
	}
}

// TestKeepaliveExplainSynLinearTimeoutsAbsent: a kernel without
// tcp_syn_linear_timeouts (before 6.5) shows none, while one with the
// sysctl at 0 shows 0 (TestExplainSynLinearTimeoutsZero); both count no
// linear SYN retries.
func TestKeepaliveExplainSynLinearTimeoutsAbsent(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tt := range []struct {
		name  string
		k     keepalive.Kernel
		shown any // nil: not shown
		rule0 bool
	}{
		{"absent", keepalive.Kernel{SynLinearTimeouts: -1, SynLinearTimeoutsAbsent: true}, nil, false},
		{"sysctl 0", keepalive.Kernel{SynLinearTimeouts: -1}, 0.0, true},
		{"default", keepalive.Kernel{}, 4.0, false},
	} {
		var out bytes.Buffer
		k := keepalive.DefaultKernel()
		k.SynLinearTimeouts, k.SynLinearTimeoutsAbsent = tt.k.SynLinearTimeouts, tt.k.SynLinearTimeoutsAbsent
		if err := runKeepaliveExplain(context.Background(), keepaliveExplainOpts{Kernel: k, JSON: true}, &out); err != nil {
			t.Fatal(err)
		}
		var v struct {
			Kernel map[string]any `json:"kernel"`
			Detect map[string]struct {
				AfterSeconds float64 `json:"after_seconds"`
				Rule         string  `json:"rule"`
			} `json:"detect"`
		}
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if got := v.Kernel["tcp_syn_linear_timeouts"]; got != tt.shown {
			t.Errorf("%s: tcp_syn_linear_timeouts shown as %v, want %v", tt.name, got, tt.shown)
		}
		if got := strings.Contains(v.Detect["connect"].Rule, "tcp_syn_linear_timeouts = 0"); got != tt.rule0 {
			t.Errorf("%s: connect rule %q; saying tcp_syn_linear_timeouts = 0: %v, want %v", tt.name, v.Detect["connect"].Rule, got, tt.rule0)
		}
	}
}

// TestKeepaliveExplainTextShowsSynLinearTimeouts: the connect rule counts
// tcp_syn_linear_timeouts, but the text header listed the kernel's values
// without it; it must show it, or say the kernel has none.
func TestKeepaliveExplainTextShowsSynLinearTimeouts(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tt := range []struct {
		name   string
		lin    int
		absent bool
		want   string
	}{
		{"default", 0, false, ", tcp_syn_retries 6, tcp_syn_linear_timeouts 4\n"},
		{"sysctl 2", 2, false, ", tcp_syn_retries 6, tcp_syn_linear_timeouts 2\n"},
		{"sysctl 0", -1, false, ", tcp_syn_retries 6, tcp_syn_linear_timeouts 0\n"},
		{"absent", -1, true, ", tcp_syn_retries 6, no tcp_syn_linear_timeouts (before Linux 6.5)\n"},
	} {
		k := keepalive.DefaultKernel()
		k.SynLinearTimeouts, k.SynLinearTimeoutsAbsent = tt.lin, tt.absent
		var out bytes.Buffer
		if err := runKeepaliveExplain(context.Background(), keepaliveExplainOpts{Kernel: k}, &out); err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(out.String(), "\n\n")
		if !strings.HasSuffix(header+"\n", tt.want) {
			t.Errorf("%s: header\n%s\nwant its kernel line to end %q", tt.name, header, tt.want)
		}
	}
}

// TestKeepaliveHostDoesNotResolve: a host name that does not resolve is a
// bad argument, exit 2 naming the argument and the host; it was exit 1
// with the resolver's message. No query leaves this host: names under
// .invalid are refused before any lookup, and a 64-byte label is not a DNS
// name, which Go's resolver and glibc's both refuse without a query.
func TestKeepaliveHostDoesNotResolve(t *testing.T) {
	defer goleak.VerifyNone(t)
	long := strings.Repeat("x", 64) + ".example"
	for _, tt := range []struct {
		args       []string
		flag, host string
	}{
		{[]string{"keepalive", "client", "nosuch.invalid"}, "HOST", "nosuch.invalid"},
		{[]string{"keepalive", "client", "NoSuch.INVALID."}, "HOST", "NoSuch.INVALID."},
		{[]string{"keepalive", "client", "invalid"}, "HOST", "invalid"},
		{[]string{"keepalive", "client", long, "--dial-timeout", "2s"}, "HOST", long},
		{[]string{"keepalive", "server", "--addr", "nosuch.invalid"}, "--addr", "nosuch.invalid"},
		{[]string{"keepalive", "server", "--addr", long}, "--addr", long},
	} {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := execute(ctx, tt.args, &out, &errOut)
		cancel()
		if code != 2 || !strings.Contains(errOut.String(), tt.flag+" "+strconv.Quote(tt.host)+" does not resolve") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message naming %s %q", tt.args, code, errOut.String(), tt.flag, tt.host)
		}
	}
}
