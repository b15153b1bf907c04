package connscope

import (
	"errors"
	"strings"
	"syscall"
	"testing"
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
