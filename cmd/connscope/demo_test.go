package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	for _, want := range []string{"diagnosis: the peer closed 1 idle pooled connection(s)", "IdleConnTimeout = 1m30s"} {
		if !strings.Contains(diag, want) {
			t.Errorf("diagnosis lacks %q:\n%s", want, diag)
		}
	}
	// The fix it suggests is three quarters of the idle time it saw:
	// about the balancer's 400ms timeout, more on a busy machine.
	m := regexp.MustCompile(`(?s)after (\S+) idle.*IdleConnTimeout: (\S+)\.`).FindStringSubmatch(diag)
	if m == nil {
		t.Fatalf("diagnosis lacks the idle time seen or the suggested IdleConnTimeout:\n%s", diag)
	}
	seen, err1 := time.ParseDuration(m[1])
	fix, err2 := time.ParseDuration(m[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("diagnosis: %v, %v:\n%s", err1, err2, diag)
	}
	// seen is rounded to the millisecond; fix is truncated to 10ms.
	if lo, hi := (seen-time.Millisecond/2)*3/4, (seen+time.Millisecond/2)*3/4; fix%(10*time.Millisecond) != 0 || fix > hi || fix <= lo-10*time.Millisecond {
		t.Errorf("diagnosis suggests IdleConnTimeout %v after %v idle, want three quarters of it (300ms for the 400ms timeout):\n%s", fix, seen, diag)
	}
}

func TestSuggestIdle(t *testing.T) {
	for _, tt := range []struct{ seen, want time.Duration }{
		{400 * time.Millisecond, 300 * time.Millisecond},
		{412 * time.Millisecond, 300 * time.Millisecond},
		{420 * time.Millisecond, 310 * time.Millisecond},
		{2 * time.Second, 1500 * time.Millisecond},
		{2345 * time.Millisecond, 1700 * time.Millisecond},
		{15 * time.Second, 11 * time.Second},
	} {
		if got := suggestIdle(tt.seen); got != tt.want {
			t.Errorf("suggestIdle(%v) = %v, want %v", tt.seen, got, tt.want)
		}
	}
}

func TestDemoText(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	o := demoOptions{IdleTimeout: 300 * time.Millisecond, Format: "text", Requests: 2}
	if err := runDemo(context.Background(), o, &out, &errOut); err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	text := out.String()
	for _, want := range []string{"Socket Connect", "Reuse Socket", "req=2", "diagnosis:"} {
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
