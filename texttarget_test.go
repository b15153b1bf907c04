package connscope

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
)

// TestTextTargetControlBytes: the text format quotes and escapes a value
// that holds a control byte. A request's target holds its raw query as
// the program built it (net/http sends a hand-made URL's RawQuery as is),
// so it may hold any byte: DEL (0x7f) is a control byte like the others.
func TestTextTargetControlBytes(t *testing.T) {
	for _, tc := range []struct {
		name, rawQuery string
	}{
		{"DEL", "a=\x7f"},
		{"ESC", "a=\x1b[2J"},
		{"NEL", "a=\u0085"},
		{"RLO", "a=\u202e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := tcpPair(t)
			buf := newMemWriter()
			sink := NewTextSink(buf, nil)
			defer sink.Close()
			spy := &Spy{Sink: sink}
			w := spy.WrapConn(c, Client)
			defer w.Close()
			target := Redaction{}.Target("GET", &url.URL{Scheme: "http", Host: "example.com", Path: "/", RawQuery: tc.rawQuery})
			spy.Emit(Event{Message: MsgReuse, Conn: RecordOf(w), Target: target, Request: 2})
			if err := sink.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, line := range buf.lines() {
				if !strings.Contains(line, MsgReuse) {
					continue
				}
				for _, r := range line {
					if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
						t.Errorf("line holds %U unescaped: %q", r, line)
					}
				}
				return
			}
			t.Fatalf("no %q line in %q", MsgReuse, buf.String())
		})
	}
}
