package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/connscope/connscope"
)

type demoLine struct {
	ID            *string `json:"id"`
	Producer      string  `json:"producer"`
	LocalAddress  *string `json:"localAddress"`
	LocalPort     *int    `json:"localPort"`
	RemoteAddress *string `json:"remoteAddress"`
	RemotePort    *int    `json:"remotePort"`
	Target        string  `json:"target"`
	HadError      *bool   `json:"hadError"`
	Level         string  `json:"level"`
	Message       string  `json:"message"`
	Timestamp     string  `json:"_timestamp"`
	Request       int     `json:"request"`
	IdleMs        float64 `json:"idleMs"`
	ClosedBy      string  `json:"closedBy"`
	Protocol      string  `json:"protocol"`
}

func TestDemoEventSequence(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	o := demoOptions{IdleTimeout: 400 * time.Millisecond, Format: "json", Requests: 3}
	if err := runDemo(context.Background(), o, &out, &errOut); err != nil {
		t.Fatalf("runDemo: %v\n%s", err, errOut.String())
	}
	var lines []demoLine
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l demoLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stdout line is not JSON (%v): %s", err, sc.Text())
		}
		lines = append(lines, l)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Message)
	}
	want := []string{
		connscope.MsgConnect, connscope.MsgTLS, connscope.MsgResponse, connscope.MsgIdle, // request 1 dials
		connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle, // request 2, before the idle timeout
		connscope.MsgEnd, connscope.MsgClose, // the balancer closes the idle socket
		connscope.MsgConnect, connscope.MsgTLS, connscope.MsgResponse, connscope.MsgIdle, // request 3 dials again
		connscope.MsgClose, // the demo closes its pool
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	// The seed's own sequence, with its fields.
	var seed []string
	for _, m := range got {
		switch m {
		case connscope.MsgConnect, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgEnd, connscope.MsgClose:
			seed = append(seed, m)
		}
	}
	if !slices.Equal(seed[:8], []string{"Socket Connect", "HTTP(S) Response", "Reuse Socket", "HTTP(S) Response", "Socket End", "Socket Close", "Socket Connect", "HTTP(S) Response"}) {
		t.Errorf("seed messages out of order: %q", seed)
	}
	first, second := *lines[0].ID, *lines[9].ID
	for i, l := range lines {
		if l.ID == nil || l.LocalAddress == nil || l.LocalPort == nil || l.RemoteAddress == nil || l.RemotePort == nil {
			t.Errorf("line %d (%s) lacks id or addresses", i, l.Message)
			continue
		}
		wantID := first
		if i >= 9 {
			wantID = second
		}
		if *l.ID != wantID {
			t.Errorf("line %d (%s): id %s, want %s", i, l.Message, *l.ID, wantID)
		}
		if l.Producer != connscope.DefaultProducer || l.Timestamp == "" || !strings.HasSuffix(l.Timestamp, "Z") {
			t.Errorf("line %d: producer %q timestamp %q", i, l.Producer, l.Timestamp)
		}
	}
	if first == second {
		t.Error("the connection dialed after the idle close has the old id")
	}
	if !strings.HasSuffix(lines[0].Target, "/headers?a=b") || !strings.HasSuffix(lines[4].Target, "/headers?c=d") || !strings.HasSuffix(lines[9].Target, "/headers?e=f") {
		t.Errorf("targets: %q %q %q", lines[0].Target, lines[4].Target, lines[9].Target)
	}
	if lines[4].Request != 2 || lines[4].IdleMs < 150 {
		t.Errorf("Reuse Socket: request %d after %vms idle; want request 2 after ~200ms", lines[4].Request, lines[4].IdleMs)
	}
	if l := lines[7]; l.IdleMs < 350 || l.IdleMs > 1000 {
		t.Errorf("Socket End after %vms idle, want about the 400ms idle timeout", l.IdleMs)
	}
	if l := lines[8]; l.HadError == nil || *l.HadError || l.ClosedBy != "remote" {
		t.Errorf("Socket Close: hadError %v closedBy %q, want false and remote", l.HadError, l.ClosedBy)
	}
	if l := lines[13]; l.ClosedBy != "local" {
		t.Errorf("final Socket Close: closedBy %q, want local", l.ClosedBy)
	}
	if lines[2].Protocol != "HTTP/2.0" {
		t.Errorf("protocol %q: the demo's client should negotiate HTTP/2", lines[2].Protocol)
	}
	diag := errOut.String()
	if !strings.HasPrefix(diag, "diagnosis: ") {
		t.Errorf("stderr does not begin with the diagnosis:\n%q", diag)
	}
	for _, want := range []string{"diagnosis: the peer closed 1 idle pooled connection after", "IdleConnTimeout = 1m30s"} {
		if !strings.Contains(diag, want) {
			t.Errorf("diagnosis lacks %q:\n%s", want, diag)
		}
	}
	checkSuggestion(t, o, lines, diag)
}

// TestDemoShortIdleTimeout runs the demo with a short idle timeout, next
// to which a busy machine's delays are large: a close noticed late must
// not push the suggested fix above the timeout.
func TestDemoShortIdleTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	o := demoOptions{IdleTimeout: 100 * time.Millisecond, Format: "json", Requests: 3}
	if err := runDemo(context.Background(), o, &out, &errOut); err != nil {
		t.Fatalf("runDemo: %v\n%s", err, errOut.String())
	}
	var lines []demoLine
	for l := range strings.Lines(out.String()) {
		var d demoLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("stdout line is not JSON (%v): %s", err, l)
		}
		lines = append(lines, d)
	}
	checkSuggestion(t, o, lines, errOut.String())
}

// checkSuggestion checks the IdleConnTimeout the diagnosis suggests
// against the demo's events: no more than the longest idle after which a
// reused connection got its response, nor than three quarters of the
// shortest idle after which the balancer closed one; so below the
// balancer's timeout whatever the delays.
func checkSuggestion(t *testing.T, o demoOptions, lines []demoLine, diag string) {
	t.Helper()
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	type req struct {
		id string
		n  int
	}
	reused := map[req]time.Duration{}
	var allowed, closed time.Duration
	for _, l := range lines {
		if l.ID == nil {
			continue
		}
		switch k := (req{*l.ID, l.Request}); l.Message {
		case connscope.MsgReuse:
			reused[k] = ms(l.IdleMs)
		case connscope.MsgResponse:
			if idle, ok := reused[k]; ok {
				allowed = max(allowed, idle)
			}
		case connscope.MsgEnd:
			if closed == 0 || ms(l.IdleMs) < closed {
				closed = ms(l.IdleMs)
			}
		}
	}
	if allowed == 0 || closed == 0 {
		t.Fatalf("the events show no reuse that got its response (%v) or no close (%v)", allowed, closed)
	}
	m := regexp.MustCompile(`IdleConnTimeout: (\S+)\.\n`).FindStringSubmatch(diag)
	if m == nil {
		t.Fatalf("diagnosis suggests no IdleConnTimeout:\n%s", diag)
	}
	fix, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("diagnosis: %v:\n%s", err, diag)
	}
	// The events' times are in microseconds; the fix is truncated.
	bound := min(allowed, closed*3/4) + time.Microsecond
	if fix <= 0 || fix > bound || fix >= o.IdleTimeout {
		t.Errorf("diagnosis suggests IdleConnTimeout %v; want at most %v (reused after %v idle, closed after %v), below the %v timeout:\n%s",
			fix, bound, allowed, closed, o.IdleTimeout, diag)
	}
	// The diagnosis rounds the exact idle, of which the events have the
	// microseconds.
	if !slices.ContainsFunc([]time.Duration{allowed - time.Microsecond, allowed, allowed + time.Microsecond}, func(d time.Duration) bool {
		return strings.Contains(diag, "between "+roundDur(d).String()+" and")
	}) {
		t.Errorf("diagnosis does not give the reuse after %v idle as the lower bound:\n%s", allowed, diag)
	}
}

func TestSuggestIdle(t *testing.T) {
	for _, tt := range []struct{ allowed, closed, want time.Duration }{
		{151 * time.Millisecond, 300 * time.Millisecond, 150 * time.Millisecond},
		{201 * time.Millisecond, 400 * time.Millisecond, 200 * time.Millisecond},
		// A close noticed late (a busy machine): more than 4/3 of the
		// 300ms timeout, whose three quarters (330ms) would exceed it.
		{150 * time.Millisecond, 450 * time.Millisecond, 150 * time.Millisecond},
		{150 * time.Millisecond, 900 * time.Millisecond, 150 * time.Millisecond},
		{1000955 * time.Microsecond, 2000978 * time.Microsecond, time.Second},
		{1234 * time.Millisecond, 5 * time.Second, 1200 * time.Millisecond},
		// A reuse nearly as long as the timeout: keep a margin below it.
		{59 * time.Second, 60 * time.Second, 45 * time.Second},
		{390 * time.Millisecond, 400 * time.Millisecond, 300 * time.Millisecond},
		{25300 * time.Microsecond, 50200 * time.Microsecond, 25 * time.Millisecond},
		{15 * time.Second, 0, 15 * time.Second},
		{500 * time.Microsecond, 50 * time.Millisecond, 500 * time.Microsecond}, // not 0: that is no limit
		// Nothing bounds the timeout from below: no suggestion.
		{0, 300 * time.Millisecond, 0},
	} {
		if got := suggestIdle(tt.allowed, tt.closed); got != tt.want {
			t.Errorf("suggestIdle(%v, %v) = %v, want %v", tt.allowed, tt.closed, got, tt.want)
		}
	}
}

// TestIdleDiagnosis feeds the diagnosis events about a real connection:
// only a reuse whose request got its response bounds the peer's timeout
// from below, and the diagnosis says only what the events showed.
func TestIdleDiagnosis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	defer s.Close()
	spy := &connscope.Spy{}
	cw, sw := spy.WrapConn(c, connscope.Client), spy.WrapConn(s, connscope.Server)
	defer cw.Close()
	defer sw.Close()
	client, server := connscope.RecordOf(cw), connscope.RecordOf(sw)
	o := demoOptions{IdleTimeout: 300 * time.Millisecond}
	ms := time.Millisecond

	tests := []struct {
		name   string
		events []connscope.Event
		want   []string
		not    []string
	}{
		{"nothing", nil,
			[]string{"closed no idle pooled connection in this run"}, []string{"Fix", "reused"}},
		{"reuse only", []connscope.Event{
			{Message: connscope.MsgReuse, Conn: client, Request: 2, Idle: 151 * ms},
			{Message: connscope.MsgResponse, Conn: client, Request: 2},
		}, []string{"closed no idle pooled connection", "reused after 151ms idle got its response"}, []string{"Fix"}},
		{"both", []connscope.Event{
			{Message: connscope.MsgReuse, Conn: client, Request: 2, Idle: 151 * ms},
			{Message: connscope.MsgResponse, Conn: client, Request: 2},
			{Message: connscope.MsgEnd, Conn: client, Idle: 450 * ms},
		}, []string{
			"closed 1 idle pooled connection after 450ms idle (load balancer idle timeout: 300ms)",
			"between 151ms and about 450ms",
			"IdleConnTimeout: 150ms.",
		}, nil},
		{"a reuse that got no response", []connscope.Event{
			{Message: connscope.MsgReuse, Conn: client, Request: 2, Idle: 151 * ms},
			{Message: connscope.MsgResponse, Conn: client, Request: 2},
			{Message: connscope.MsgReuse, Conn: client, Request: 3, Idle: 299 * ms}, // raced the close
			{Message: connscope.MsgResponse, Conn: client, Request: 2},              // an earlier request's
			{Message: connscope.MsgEnd, Conn: client, Idle: 301 * ms},
		}, []string{"between 151ms and about 301ms", "IdleConnTimeout: 150ms."}, []string{"299ms"}},
		{"no reuse", []connscope.Event{
			{Message: connscope.MsgEnd, Conn: client, Idle: 301 * ms},
			{Message: connscope.MsgEnd, Conn: client, Idle: 320 * ms},
		}, []string{
			"closed 2 idle pooled connections after 301ms to 320ms idle",
			"at most about 301ms",
			"cannot say how far below",
		}, []string{"e.g.", "between"}},
		{"server side", []connscope.Event{
			{Message: connscope.MsgReuse, Conn: server, Request: 2, Idle: 151 * ms},
			{Message: connscope.MsgResponse, Conn: server, Request: 2},
			{Message: connscope.MsgEnd, Conn: server, Idle: 301 * ms},
		}, []string{"closed no idle pooled connection"}, []string{"Fix", "reused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d idleDiagnosis
			for _, e := range tt.events {
				d.Emit(&e)
			}
			var b strings.Builder
			d.write(&b, o, 90*time.Second)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("diagnosis lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("diagnosis says %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestDemoText(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	o := demoOptions{IdleTimeout: 300 * time.Millisecond, Format: "text", Requests: 3}
	if err := runDemo(context.Background(), o, &out, &errOut); err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	text := out.String()
	for _, want := range []string{"Socket Connect", "Reuse Socket", "req=2", "closedBy=local\n\ndiagnosis:"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, `"message"`) {
		t.Error("text format printed JSON")
	}
}

func TestDemoBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
		help string // the command whose --help the error points to: the one that lists the flag
	}{
		{[]string{"demo", "--format", "xml"}, "--format", "connscope demo"},
		{[]string{"demo", "--idle-timeout", "nope"}, "--idle-timeout", "connscope demo"},
		{[]string{"demo", "--idle-timeout", "-1s"}, "--idle-timeout", "connscope demo"},
		{[]string{"demo", "--idle-timeout", "1h"}, "--idle-timeout", "connscope demo"},
		{[]string{"demo", "--requests", "0"}, "--requests", "connscope demo"},
		{[]string{"demo", "--requests", "1"}, "--requests", "connscope demo"}, // no reuse, no idle close
		{[]string{"demo", "--requests", "2"}, "--requests", "connscope demo"}, // no idle close
		{[]string{"demo", "--requests", "101"}, "--requests", "connscope demo"},
		{[]string{"demo", "--requests", "x"}, "--requests", "connscope demo"},
		{[]string{"demo", "--bogus"}, "--bogus", "connscope demo"},
		{[]string{"demo", "extra"}, "extra", "connscope demo"},
		{[]string{"nosuch"}, "nosuch", "connscope"},
		{nil, "missing command", "connscope"},
		{[]string{"keepalive", "lab", "--html", "/nonexistent-dir/r.html"}, "--html", "connscope keepalive lab"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := execute(context.Background(), tt.args, &out, &errOut)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr %q does not name %q", errOut.String(), tt.want)
			}
			if help := "Run '" + tt.help + " --help' for usage."; !strings.Contains(errOut.String(), help) {
				t.Errorf("stderr %q does not say %q", errOut.String(), help)
			}
			if out.Len() != 0 {
				t.Errorf("usage error printed to stdout: %q", out.String())
			}
			if len(tt.args) > 0 && (tt.args[0] == "demo" || tt.args[0] == "keepalive") &&
				!strings.HasPrefix(errOut.String(), "connscope "+tt.args[0]) {
				t.Errorf("stderr %q does not name the subcommand %q first", errOut.String(), tt.args[0])
			}
			if strings.Contains(errOut.String(), "connscope: connscope") {
				t.Errorf("stderr %q names the program twice", errOut.String())
			}
		})
	}
}
