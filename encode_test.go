package connscope

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTextLineSaysWhatFailed: a text line with an error names the
// operation that failed, as the JSON line's "op" does.
func TestTextLineSaysWhatFailed(t *testing.T) {
	reset := &errnoErr{"read: connection reset by peer", syscall.ECONNRESET}
	for _, tc := range []struct {
		name string
		e    Event
		want string // "" for no op= at all
	}{
		{"write error", Event{Message: MsgError, Op: "write", Err: reset}, "ECONNRESET  op=write  err="},
		{"dial error", Event{Message: MsgError, Op: "dial", Err: errors.New("no route")}, `other  op=dial  err="no route"`},
		{"op without an error", Event{Message: MsgTLS, Op: "tls"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := string(tc.e.AppendText(nil))
			if tc.want == "" && strings.Contains(line, "op=") || !strings.Contains(line, tc.want) {
				t.Errorf("text line %q, want it to hold %q", line, tc.want)
			}
		})
	}
}

type errnoErr struct {
	msg string
	err error
}

func (e *errnoErr) Error() string { return e.msg }
func (e *errnoErr) Unwrap() error { return e.err }

// TestTextLineHasOnlyPrintableRunes: the text format quotes a value
// that holds control bytes, so that one event stays one readable line.
// It lets through runes that are as bad for a person's terminal or
// viewer: U+2028/U+2029 and NEL (U+0085) end lines in many tools, and
// U+202E (RIGHT-TO-LEFT OVERRIDE) reverses what follows on the screen,
// so a request's query, a logged header or an error can fake the rest of
// the line. url.Parse accepts them in a query; strconv.Quote escapes them.
func TestTextLineHasOnlyPrintableRunes(t *testing.T) {
	u, err := url.Parse("https://h/?q=a\u2028b\u0085c\u202Ed")
	if err != nil {
		t.Fatal(err)
	}
	evs := []Event{
		{Time: time.Now(), Message: MsgConnect, Target: Redaction{}.Target("GET", u)},
		{Time: time.Now(), Message: MsgResponse, Headers: []Header{{"X-Request-Id", "1\u202Egnp.exe"}}},
		{Time: time.Now(), Message: MsgError, Op: "read", Err: errors.New("bad\u2028status=200")},
	}
	for _, e := range evs {
		line := string(e.AppendText(nil))
		for _, r := range line {
			if !strconv.IsPrint(r) {
				t.Errorf("%s line holds %U unescaped: %q", e.Message, r, line)
				break
			}
		}
	}
}
