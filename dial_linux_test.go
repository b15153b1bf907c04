package connscope

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/blackhole"
	"github.com/connscope/connscope/internal/refused"
)

// TestDialTimeoutIsSocketTimeout: a dial whose deadline expires is a
// "Socket Timeout" (warn), as a read's is, whether the deadline is the
// Dialer's Timeout or the context's; a refused one is a "Socket Error".
func TestDialTimeoutIsSocketTimeout(t *testing.T) {
	hang := blackhole.Addr(t)
	refusedAddr := refused.Addr(t)
	for _, tc := range []struct {
		name    string
		dialer  net.Dialer
		timeout time.Duration // of the context, if not 0
		addr    string
		want    string
		level   slog.Level
		cancel  bool // the program cancels the dial's context after timeout
	}{
		{"Dialer.Timeout", net.Dialer{Timeout: 100 * time.Millisecond}, 0, hang, MsgTimeout, slog.LevelWarn, false},
		{"context deadline", net.Dialer{}, 100 * time.Millisecond, hang, MsgTimeout, slog.LevelWarn, false},
		{"refused", net.Dialer{}, 0, refusedAddr, MsgError, slog.LevelError, false},
		// net/http cancels the dials no request waits for: not a failure.
		{"cancelled", net.Dialer{}, 100 * time.Millisecond, hang, MsgError, slog.LevelInfo, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			ctx := context.Background()
			if tc.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer time.AfterFunc(tc.timeout, cancel).Stop()
				defer cancel()
			} else if tc.timeout != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			c, err := spy.WrapDial(tc.dialer.DialContext)(ctx, "tcp4", tc.addr)
			if err == nil {
				c.Close()
				t.Fatalf("dial %s succeeded", tc.addr)
			}
			got := sink.all()
			if len(got) != 1 || got[0].Message != tc.want || got[0].Op != "dial" || got[0].Err != err {
				t.Fatalf("events %q for dial error %v; want one %q with op dial and that error", sink.messages(), err, tc.want)
			}
			if got[0].Level != tc.level {
				t.Errorf("level %v, want %v", got[0].Level, tc.level)
			}
		})
	}
}
