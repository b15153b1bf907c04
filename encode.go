package connscope

import (
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e as one JSON object in connection-spy's format
// (its fields first, in its order, then connscope's), without a newline.
// It does not allocate when b has room (but for a cache built on a
// connection's first event), and produces valid JSON whatever
// bytes the target, headers or error hold.
func (e *Event) AppendJSON(b []byte) []byte {
	r := e.Conn
	var head *jsonHead
	if r != nil {
		head = r.jsonHeadFor(e.Producer)
		b = append(b, head.head...)
	} else {
		b = appendJSONHeadOf(b, e.ID, e.Producer, endpoint{port: -1}, endpoint{port: -1})
	}
	if e.Target != "" {
		b = append(b, `,"target":`...)
		b = appendJSONString(b, e.Target)
	}
	if e.Message == MsgClose {
		b = append(b, `,"hadError":`...)
		b = strconv.AppendBool(b, e.HadError)
	}
	b = append(b, `,"level":"`...)
	b = append(b, levelName(e.Level)...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, e.Message)
	b = append(b, `,"_timestamp":"`...)
	b = appendTimestamp(b, e.Time)
	b = append(b, '"')

	if head != nil {
		b = append(b, head.side...)
	}
	b = appendUintField(b, `,"request":`, e.Request)
	b = appendUintField(b, `,"status":`, uint64(max(e.Status, 0)))
	b = appendStringField(b, `,"protocol":`, e.Protocol)
	b = appendStringField(b, `,"host":`, e.Host)
	b = appendStringField(b, `,"addresses":`, e.Addrs)
	b = appendStringField(b, `,"tls":`, e.TLS)
	if len(e.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		for i, h := range e.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, h.Name)
			b = append(b, ':')
			b = appendJSONString(b, h.Value)
		}
		b = append(b, '}')
	}
	b = appendMsField(b, `,"dnsMs":`, e.DNS)
	b = appendMsField(b, `,"connectMs":`, e.Connect)
	b = appendMsField(b, `,"tlsMs":`, e.TLSTime)
	b = appendMsField(b, `,"ttfbMs":`, e.TTFB)
	b = appendMsField(b, `,"idleMs":`, e.Idle)
	b = appendMsField(b, `,"durationMs":`, e.Duration)
	if r != nil {
		b = append(b, `,"bytesRead":`...)
		b = strconv.AppendInt(b, e.BytesRead, 10)
		b = append(b, `,"bytesWritten":`...)
		b = strconv.AppendInt(b, e.BytesWritten, 10)
	}
	b = appendStringField(b, `,"closedBy":`, e.ClosedBy)
	b = appendStringField(b, `,"op":`, e.Op)
	if e.Err != nil {
		kind, errno := Classify(e.Err)
		b = append(b, `,"error":`...)
		b = appendJSONString(b, e.ErrorText())
		b = appendStringField(b, `,"errorKind":`, kind)
		b = appendStringField(b, `,"errno":`, errno)
	}
	b = appendUintField(b, `,"dropped":`, e.Dropped)
	return append(b, '}')
}

// AppendText appends e as one line for a person: time, short id, side,
// message, addresses, then the fields that are set, as key=value.
func (e *Event) AppendText(b []byte) []byte {
	r := e.Conn
	b = appendTimestamp(b, e.Time)
	b = append(b, "  "...)
	id := e.ID
	if r != nil {
		id = r.id
	}
	if id.IsZero() {
		b = append(b, "--------"...)
	} else {
		var full [36]byte
		b = append(b, id.AppendText(full[:0])[:8]...)
	}
	b = append(b, "  "...)
	side := ""
	if r != nil {
		side = r.side.String()
	}
	b = appendPadded(b, side, 6)
	b = append(b, "  "...)
	b = appendPadded(b, e.Message, 16)
	if r != nil {
		b = append(b, "  "...)
		b = appendTextEndpoint(b, r.local)
		b = append(b, " -> "...)
		b = appendTextEndpoint(b, r.remote)
	}
	if e.Target != "" {
		b = append(b, "  "...)
		b = appendTextTarget(b, e.Target)
	}
	kv := func(b []byte, k string) []byte { return append(append(b, ' ', ' '), k...) }
	if e.Request != 0 {
		b = strconv.AppendUint(kv(b, "req="), e.Request, 10)
	}
	if e.Status > 0 {
		b = strconv.AppendInt(kv(b, "status="), int64(e.Status), 10)
	}
	if e.Protocol != "" {
		b = appendTextValue(kv(b, "proto="), e.Protocol)
	}
	if e.Host != "" {
		b = appendTextValue(kv(b, "host="), e.Host)
	}
	if e.Addrs != "" {
		b = appendTextValue(kv(b, "addrs="), e.Addrs)
	}
	if e.TLS != "" {
		b = appendTextValue(kv(b, "tls="), e.TLS)
	}
	for _, h := range e.Headers {
		b = appendTextValue(append(appendTextValue(append(b, ' ', ' '), h.Name), '='), h.Value)
	}
	for _, d := range [...]struct {
		k string
		v time.Duration
	}{{"dns=", e.DNS}, {"connect=", e.Connect}, {"handshake=", e.TLSTime}, {"ttfb=", e.TTFB}, {"idle=", e.Idle}, {"dur=", e.Duration}} {
		if d.v >= time.Microsecond || d.v <= -time.Microsecond { // as the JSON format: less would read 0
			b = append(appendMs(kv(b, d.k), d.v), "ms"...)
		}
	}
	if e.Message == MsgClose {
		b = strconv.AppendBool(kv(b, "hadError="), e.HadError)
		b = strconv.AppendInt(kv(b, "read="), e.BytesRead, 10)
		b = strconv.AppendInt(kv(b, "written="), e.BytesWritten, 10)
	}
	if e.ClosedBy != "" {
		b = append(kv(b, "closedBy="), e.ClosedBy...)
	}
	if e.Err != nil {
		kind, errno := Classify(e.Err)
		if errno != "" {
			b = append(kv(b, ""), errno...)
		} else {
			b = append(kv(b, ""), kind...)
		}
		if e.Op != "" { // what failed: a read, a write, the dial...
			b = appendTextValue(kv(b, "op="), e.Op)
		}
		b = appendTextValue(kv(b, "err="), e.ErrorText())
	}
	if e.Dropped != 0 {
		b = strconv.AppendUint(kv(b, "dropped="), e.Dropped, 10)
	}
	return b
}

// jsonHead is the part of a connection's JSON lines that never changes:
// the object's start up to remotePort, and its side and network fields.
// Formatting the id and addresses was a third of the cost of an event.
type jsonHead struct {
	producer   string
	head, side []byte
}

// jsonHeadFor returns r's cached head for producer, building it on the
// connection's first event. Every event of a Spy has the same producer,
// so the cache holds; an event with another one gets a head of its own.
func (r *Record) jsonHeadFor(producer string) *jsonHead {
	if h := r.jsonHead.Load(); h != nil && h.producer == producer {
		return h
	}
	h := &jsonHead{producer: producer, head: appendJSONHeadOf(nil, r.id, producer, r.local, r.remote)}
	h.side = append(h.side, `,"side":"`...)
	h.side = append(h.side, r.side.String()...)
	h.side = append(h.side, `","network":`...)
	h.side = appendJSONString(h.side, r.network)
	r.jsonHead.CompareAndSwap(nil, h)
	return h
}

// appendJSONHeadOf appends connection-spy's leading fields: id, producer,
// and the local and remote addresses and ports.
func appendJSONHeadOf(b []byte, id ID, producer string, local, remote endpoint) []byte {
	b = append(b, `{"id":`...)
	if id.IsZero() {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = id.AppendText(b)
		b = append(b, '"')
	}
	b = append(b, `,"producer":`...)
	b = appendJSONString(b, producer)
	b = appendEndpoint(b, `,"localAddress":`, `,"localPort":`, local)
	return appendEndpoint(b, `,"remoteAddress":`, `,"remotePort":`, remote)
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

func appendEndpoint(b []byte, addrKey, portKey string, ep endpoint) []byte {
	b = append(b, addrKey...)
	if ep.addr == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, ep.addr)
	}
	b = append(b, portKey...)
	if ep.port < 0 || ep.addr == "" {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(ep.port), 10)
}

func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendMsField(b []byte, key string, d time.Duration) []byte {
	if d < time.Microsecond && d > -time.Microsecond { // would print as 0
		return b
	}
	return appendMs(append(b, key...), d)
}

// appendMs writes d in milliseconds with microsecond precision, without
// trailing zeros (1.5, 16, 0.004), as strconv.AppendFloat(us/1e3, 'f', -1)
// would, in integer arithmetic: float formatting was a third of the cost
// of an event.
func appendMs(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us // cannot overflow: |MinInt64| / 1000 fits
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	d0, d1, d2 := byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10)
	switch {
	case d2 != '0':
		return append(b, '.', d0, d1, d2)
	case d1 != '0':
		return append(b, '.', d0, d1)
	case d0 != '0':
		return append(b, '.', d0)
	}
	return b
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// appendTimestamp writes t as ISO 8601 UTC with milliseconds, like
// JavaScript's Date.toISOString: 2021-05-07T17:16:29.743Z.
func appendTimestamp(b []byte, t time.Time) []byte {
	sec := t.Unix()
	// Events come many to a second: format the date and time once per second.
	p := tsCache.Load()
	if p == nil || p.sec != sec {
		p = &tsPrefix{sec: sec}
		p.n = len(formatTimestampPrefix(p.buf[:0], t))
		tsCache.Store(p)
	}
	b = append(b, p.buf[:p.n]...)
	ms := t.Nanosecond() / 1e6
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// tsPrefix is "2021-05-07T17:16:29." for one second.
type tsPrefix struct {
	sec int64
	n   int
	buf [32]byte
}

var tsCache atomic.Pointer[tsPrefix]

func formatTimestampPrefix(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	return append(b, '.')
}

func appendDigits(b []byte, v, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for v > 0 || width > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}

func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainUntil returns the first index at or after i where fewer than
// eight bytes remain or a word of eight holds a byte that is not
// jsonSafe: below 0x20, at or above 0x80, '"' or '\\'. Targets and
// messages are mostly plain ASCII, and this skips it a word at a time.
// (The byte tests are the classic "has a byte less than n" and "has a
// zero byte" word tricks: exact over the word, which is all this needs.)
func plainUntil(s string, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q, bs := x^('"'*ones), x^('\\'*ones)
		control := (x - 0x20*ones) & ^x
		quote := (q - ones) & ^q
		backslash := (bs - ones) & ^bs
		if (x|control|quote|backslash)&highs != 0 {
			break
		}
	}
	return i
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, so the output is valid JSON for any input bytes.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := plainUntil(s, 0); i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			i = plainUntil(s, i)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			i = plainUntil(s, i)
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			i = plainUntil(s, i)
			continue
		}
		i += size
		i = plainUntil(s, i)
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTextValue writes s for the text format: as is when it has no
// spaces, quotes, '=' or control bytes, quoted otherwise.
func appendTextValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '=' || c == 0x7f {
			return strconv.AppendQuote(b, s)
		}
	}
	if !printable(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// printable reports whether s is valid UTF-8 whose non-ASCII runes are
// all printable: no line or paragraph separator, NEL, C1 control or
// bidirectional override that would break or disguise a text line.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			for _, r := range s[i:] {
				if r >= utf8.RuneSelf && (r == utf8.RuneError || !strconv.IsPrint(r)) {
					return false
				}
			}
			return utf8.ValidString(s)
		}
	}
	return true
}

// appendTextEndpoint writes ep as host:port, quoted when the address holds
// bytes that would break the line: a unix socket path may hold any byte.
func appendTextEndpoint(b []byte, ep endpoint) []byte {
	for i := 0; i < len(ep.addr); i++ {
		if c := ep.addr[i]; c < ' ' || c == '"' || c == 0x7f {
			return strconv.AppendQuote(b, ep.String())
		}
	}
	if !printable(ep.addr) {
		return strconv.AppendQuote(b, ep.String())
	}
	return ep.appendHostPort(b)
}

// appendTextTarget writes a "METHOD url" target unquoted when it is
// printable, for readability.
func appendTextTarget(b []byte, s string) []byte {
	if isTarget(s) && printable(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

// isTarget reports whether s looks like "METHOD url": the one value the
// text format prints with a space unquoted, for readability.
func isTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			rest := s[i+1:]
			for j := 0; j < len(rest); j++ {
				if rest[j] <= ' ' || rest[j] == '"' || rest[j] == 0x7f { // DEL is a control byte too
					return false
				}
			}
			return i > 0
		}
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return false
}
