package connscope

import (
	"io"
	"strings"
	"testing"
)

// TestNilWriterClearError: a sink made with a nil io.Writer (bad input)
// drops its events and says why, naming the writer, rather than
// reporting a recovered nil-pointer panic.
func TestNilWriterClearError(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(io.Writer, *WriterOptions) *WriterSink
	}{
		{"NewJSONSink", NewJSONSink},
		{"NewTextSink", NewTextSink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := tc.make(nil, nil)
			spy := &Spy{Sink: sink}
			c, _ := tcpPair(t)
			w := spy.WrapConn(c, Client)
			w.Close()
			err := sink.Close()
			if err == nil {
				t.Fatal("Close: nil error, want one naming the nil writer")
			}
			if msg := err.Error(); !strings.Contains(msg, "nil io.Writer") || strings.Contains(msg, "panicked") {
				t.Errorf("Close: %q, want an error that names the nil io.Writer", msg)
			}
			if sink.Dropped() != 2 || sink.Written() != 0 {
				t.Errorf("Dropped %d, Written %d; want 2, 0", sink.Dropped(), sink.Written())
			}
		})
	}
}
