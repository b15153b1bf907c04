package connscope

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSlogSinkKeepsEventTime: an event made earlier than it is emitted
// (httpscope holds a request's events until the one before it has
// returned, and they keep the time they happened at) reaches slog with
// that time, as the JSON format's _timestamp has it, not the time of
// the call.
func TestSlogSinkKeepsEventTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration
	}{
		{"held 1.5s", 1500 * time.Millisecond},
		{"held 1h", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := tcpPair(t)
			buf := newMemWriter()
			spy := &Spy{Sink: NewSlogSink(slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))}
			w := spy.WrapConn(c, Client)
			defer w.Close()
			at := time.Now().Add(-tc.age).Round(0)
			spy.Emit(Event{Time: at, Message: MsgIdle, Conn: RecordOf(w)})
			var got time.Time
			for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
				var m struct {
					Time time.Time `json:"time"`
					Msg  string    `json:"msg"`
				}
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				if m.Msg == MsgIdle {
					got = m.Time
				}
			}
			if !got.Equal(at) {
				t.Errorf("slog record time %v, want the event's %v (off by %v)", got, at, got.Sub(at))
			}
		})
	}
}
