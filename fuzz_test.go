package connscope

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzEventJSON: whatever bytes a target, a header, an error message, the
// producer or a host hold, AppendJSON writes one valid JSON object whose
// fields decode back to the input (invalid UTF-8 becoming U+FFFD), and
// AppendText does not panic and writes one line.
func FuzzEventJSON(f *testing.F) {
	f.Add("GET https://example.com:443/p?q=1", "X-Request-Id", "abc", "read tcp: connection reset by peer", "connscope", "example.com")
	f.Add("GET http://h:80/\"quoted\"\\back\nslash", "X-\x00Ctl", "\t\r\n\x1f\x7f", "bad utf8: \xff\xfe\xc3", "prod\u2028uct\u2029", "h\xc0st")
	f.Add("", "", "", "", "", "")
	f.Add("POST https://例え.jp:443/パス?キー=値", "Ünïcödé", "😀 \U0010FFFF", "\ufffd", "\x00", "[::1]")
	f.Add(strings.Repeat("A", 300), "=", "\"=\"", "</script><!--", "\\u0000", "a b")
	f.Add("0", "0", "0", "0", "0", "\r") // found by fuzzing: a control byte in an address split the text line
	f.Fuzz(func(t *testing.T, target, hname, hvalue, errMsg, producer, host string) {
		r := &Record{id: ID{1, 2, 3}, side: Client, network: "tcp" + host,
			local: endpoint{addr: host, port: 1}, remote: endpoint{addr: host, port: -1}}
		e := &Event{
			Time: time.Unix(1620407789, 743e6), Message: MsgError, Producer: producer, Conn: r,
			Target: target, Host: host, Protocol: hname, TLS: hvalue, Addrs: host,
			Headers: []Header{{Name: hname, Value: hvalue}, {Name: hvalue, Value: hname}},
			Op:      "read", Err: errors.New(errMsg), Status: 200, Request: 1, TTFB: time.Millisecond,
		}
		b := e.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"error": errMsg, "producer": producer, "host": host, "message": MsgError} {
			if k == "producer" && producer == "" || k == "host" && host == "" {
				continue
			}
			if got, _ := m[k].(string); got != fixUTF8(want) {
				t.Errorf("%s round-trip: got %q, want %q", k, got, want)
			}
		}
		if target != "" {
			if got, _ := m["target"].(string); got != fixUTF8(target) {
				t.Errorf("target round-trip: got %q, want %q", got, target)
			}
		}

		line := e.AppendText(nil)
		if strings.ContainsAny(string(line), "\n\r") {
			t.Errorf("text line spans lines: %q", line)
		}
		e.Conn = nil // the other shape: no connection
		if b := e.AppendJSON(nil); !json.Valid(b) {
			t.Fatalf("invalid JSON without a connection: %q", b)
		}
		e.AppendText(nil)
	})
}

// fixUTF8 replaces each invalid byte by U+FFFD, as encoding/json decodes
// and as appendJSONString encodes.
func fixUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// TestTextUnixPathNewline: a unix socket path may hold a newline; the text
// format must still write one line per event.
func TestTextUnixPathNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a\nb")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("cannot listen on a path with a newline: %v", err)
	}
	defer ln.Close()
	c, s := connectPair(t, ln, "unix", path)
	defer s.Close()
	sink := newCaptureSink()
	wc := (&Spy{Sink: sink}).WrapConn(c, Client)
	wc.Close()
	for _, e := range sink.all() {
		line := string(e.AppendText(nil))
		if strings.ContainsAny(line, "\n\r") {
			t.Errorf("%s: text spans lines: %q", e.Message, line)
		}
		if !json.Valid(e.AppendJSON(nil)) {
			t.Errorf("%s: invalid JSON", e.Message)
		}
	}
}

// TestAppendMs: the integer formatting of milliseconds matches
// strconv.AppendFloat(us/1e3, 'f', -1), the format's definition, for any
// duration a float64 holds exactly in microseconds (the integer form is
// exact beyond).
func TestAppendMs(t *testing.T) {
	check := func(d time.Duration) {
		want := strconv.FormatFloat(float64(d.Microseconds())/1e3, 'f', -1, 64)
		if got := string(appendMs(nil, d)); got != want {
			t.Errorf("appendMs(%v) = %q, want %q", d, got, want)
		}
	}
	for _, d := range []time.Duration{0, 1, time.Microsecond, 4 * time.Microsecond, 10 * time.Microsecond, 1500 * time.Microsecond,
		time.Millisecond, 15300 * time.Microsecond, 16 * time.Millisecond, 1234567 * time.Microsecond, time.Hour,
		-time.Microsecond, -1500 * time.Microsecond, -time.Second, 1<<49*time.Microsecond - 1, -(1<<49*time.Microsecond - 1)} {
		check(d)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		check(time.Duration(rng.Int64N(1<<50)) - 1<<49)
	}
}

// TestJSONStringEveryByteAtEveryOffset: appendJSONString skips plain ASCII
// a word at a time; every byte value, at every offset of strings a few
// words long, must still be escaped exactly when it is not plain, and
// decode back. A multi-byte rune straddling a word boundary too.
func TestJSONStringEveryByteAtEveryOffset(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 17, 25} {
		for pos := range n {
			for c := range 256 {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				s := string(b)
				got := string(appendJSONString(nil, s))
				var back string
				if err := json.Unmarshal([]byte(got), &back); err != nil {
					t.Fatalf("%q: %q is not a JSON string: %v", s, got, err)
				}
				if back != fixUTF8(s) {
					t.Fatalf("%q: decodes to %q", s, back)
				}
				if plain := jsonSafe[c]; plain != (got == `"`+s+`"`) {
					t.Fatalf("byte %#x at %d of %d: got %s, plain=%v", c, pos, n, got, plain)
				}
			}
		}
	}
	for pos := range 24 {
		s := strings.Repeat("a", pos) + "é\u2028😀" + strings.Repeat("b", 9)
		got := string(appendJSONString(nil, s))
		want := `"` + strings.Repeat("a", pos) + `é\u2028😀` + strings.Repeat("b", 9) + `"`
		if got != want {
			t.Errorf("runes at %d: got %s, want %s", pos, got, want)
		}
	}
}
