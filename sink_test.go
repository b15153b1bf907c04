package connscope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memWriter records what a sink writes; fail makes writes fail.
type memWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   atomic.Bool
	wrote  chan struct{}
}

func newMemWriter() *memWriter { return &memWriter{wrote: make(chan struct{}, 1)} }

func (w *memWriter) Write(p []byte) (int, error) {
	if w.fail.Load() {
		return 0, errors.New("disk on fire")
	}
	w.mu.Lock()
	w.buf.Write(p)
	w.writes++
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *memWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *memWriter) lines() []string {
	s := strings.TrimSuffix(w.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitWrite waits for the sink's goroutine to write, or fails.
func (w *memWriter) waitWrite(t *testing.T, what string) {
	t.Helper()
	select {
	case <-w.wrote:
	case <-time.After(testTimeout):
		t.Fatalf("%s: nothing written after %v", what, testTimeout)
	}
}

func testEvent(msg string) *Event {
	return &Event{Time: time.Date(2021, 5, 7, 17, 16, 29, 743_000_000, time.UTC), Message: msg, Producer: "test", Target: "GET http://example.com:80/"}
}

func TestWriterSinkFlushes(t *testing.T) {
	const never = time.Hour
	t.Run("on size", func(t *testing.T) {
		w := newMemWriter()
		s := NewJSONSink(w, &WriterOptions{FlushBytes: 512, FlushInterval: never})
		defer s.Close()
		for range 20 { // ~200 bytes each: past FlushBytes
			s.Emit(testEvent(MsgConnect))
		}
		w.waitWrite(t, "flush on size")
		if len(w.lines()) == 0 {
			t.Fatal("no complete line written")
		}
	})
	t.Run("on interval", func(t *testing.T) {
		w := newMemWriter()
		s := NewJSONSink(w, &WriterOptions{FlushInterval: 5 * time.Millisecond})
		defer s.Close()
		s.Emit(testEvent(MsgConnect))
		w.waitWrite(t, "flush on interval")
		if got := w.lines(); len(got) != 1 {
			t.Fatalf("lines %q, want 1", got)
		}
	})
	t.Run("on Close", func(t *testing.T) {
		w := newMemWriter()
		s := NewJSONSink(w, &WriterOptions{FlushInterval: never})
		for range 3 {
			s.Emit(testEvent(MsgConnect))
		}
		if w.String() != "" {
			t.Fatal("written before Close with no size or interval trigger")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := w.lines(); len(got) != 3 || s.Written() != 3 || s.Dropped() != 0 {
			t.Fatalf("after Close: %d lines, Written %d, Dropped %d; want 3, 3, 0", len(got), s.Written(), s.Dropped())
		}
		s.Emit(testEvent(MsgConnect)) // after Close: dropped, no panic
		if s.Dropped() != 1 {
			t.Errorf("Dropped after an Emit past Close = %d, want 1", s.Dropped())
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("on Flush", func(t *testing.T) {
		w := newMemWriter()
		s := NewTextSink(w, &WriterOptions{FlushInterval: never})
		defer s.Close()
		s.Emit(testEvent(MsgConnect))
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := w.lines(); len(got) != 1 || !strings.Contains(got[0], MsgConnect) {
			t.Fatalf("text lines %q", got)
		}
	})
}

func TestWriterSinkFailingWriter(t *testing.T) {
	w := newMemWriter()
	w.fail.Store(true)
	s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour})
	for range 5 {
		s.Emit(testEvent(MsgConnect))
	}
	if err := s.Flush(); err == nil {
		t.Fatal("Flush to a failing writer returned nil")
	}
	if s.Dropped() != 5 {
		t.Errorf("Dropped = %d, want 5", s.Dropped())
	}
	if s.Err() == nil {
		t.Error("Err() = nil after a failed write")
	}
	for range 2 {
		s.Emit(testEvent(MsgConnect))
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "dropped") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Close = %v; want an error naming the drops and the write error", err)
	}
	if !strings.HasPrefix(err.Error(), "connscope: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

// TestWriterSinkRecovers: after a failing period, the next successful
// write starts with an "Events Dropped" line that counts the loss.
func TestWriterSinkRecovers(t *testing.T) {
	w := newMemWriter()
	w.fail.Store(true)
	s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour})
	defer s.Close()
	for range 3 {
		s.Emit(testEvent(MsgConnect))
	}
	s.Flush()
	w.fail.Store(false)
	s.Emit(testEvent(MsgClose))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := w.lines()
	if len(lines) != 2 {
		t.Fatalf("lines %q, want the drop report then the event", lines)
	}
	var drop, next map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &drop); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(lines[1]), &next)
	if drop["message"] != MsgDropped || drop["dropped"] != 3.0 || drop["level"] != "warn" {
		t.Errorf("first line %s; want %q with dropped 3", lines[0], MsgDropped)
	}
	if next["message"] != MsgClose {
		t.Errorf("second line %s", lines[1])
	}
	// Reported once: the next write has no report.
	s.Emit(testEvent(MsgConnect))
	s.Flush()
	if got := w.lines(); len(got) != 3 {
		t.Errorf("after one more event: %d lines, want 3", len(got))
	}
	// Every emitted event is either written or dropped, once; the report
	// line is the sink's own, in neither.
	if s.Written() != 2 || s.Dropped() != 3 {
		t.Errorf("Written %d, Dropped %d; want 2 and 3 for 5 emitted", s.Written(), s.Dropped())
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

// TestWriterSinkBlockedWriter: a writer that never returns does not block
// Emit (events beyond MaxPending are dropped and counted), and Close gives
// up after CloseTimeout with an error.
func TestWriterSinkBlockedWriter(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	s := NewJSONSink(w, &WriterOptions{FlushBytes: 1024, MaxPending: 8 << 10, FlushInterval: time.Millisecond, CloseTimeout: 50 * time.Millisecond})
	defer func() {
		close(w.release) // let the sink's goroutine finish, for goleak
		select {
		case <-s.done:
		case <-time.After(testTimeout):
			t.Error("sink goroutine did not exit after the writer returned")
		}
	}()
	s.Emit(testEvent(MsgConnect))
	select {
	case <-w.entered:
	case <-time.After(testTimeout):
		t.Fatal("the sink never wrote")
	}
	const n = 10000 // ~2 MB of events: far beyond MaxPending
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for range n {
			s.Emit(testEvent(MsgConnect))
		}
	}()
	select {
	case <-emitted:
	case <-time.After(testTimeout):
		t.Fatal("Emit blocked behind a blocked writer")
	}
	if d := s.Dropped(); d == 0 || d > n {
		t.Errorf("Dropped = %d, want between 1 and %d", d, n)
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending > 8<<10 {
		t.Errorf("%d bytes pending, above MaxPending", pending)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Close() }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "blocked") || !strings.Contains(err.Error(), "dropped") {
			t.Errorf("Close = %v; want an error saying the writer is blocked and events were dropped", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close did not return after CloseTimeout")
	}
}

// TestWriterSinkOrderAcrossChunks: events that fill many chunks while
// the writer's goroutine runs (or not) come out complete and in order,
// from several goroutines at once, each goroutine's own in its order.
func TestWriterSinkOrderAcrossChunks(t *testing.T) {
	w := newMemWriter()
	s := NewJSONSink(w, &WriterOptions{FlushBytes: 300, FlushInterval: time.Millisecond})
	const goroutines, each = 4, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := testEvent(MsgResponse)
				e.Status = 100 + g // which goroutine
				e.Request = uint64(i + 1)
				s.Emit(e)
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := w.lines()
	if len(lines) != goroutines*each || s.Written() != goroutines*each || s.Dropped() != 0 {
		t.Fatalf("%d lines, Written %d, Dropped %d; want %d, %d, 0", len(lines), s.Written(), s.Dropped(), goroutines*each, goroutines*each)
	}
	next := make(map[int]uint64)
	for _, line := range lines {
		var v struct {
			Status  int    `json:"status"`
			Request uint64 `json:"request"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if want := next[v.Status] + 1; v.Request != want {
			t.Fatalf("goroutine %d: request %d after %d: out of order", v.Status-100, v.Request, next[v.Status])
		}
		next[v.Status] = v.Request
	}
}

// TestWriterSinkMaxPendingBoundsMemory: with the writer blocked, the
// chunks held waiting for it stay within MaxPending, whatever FlushBytes
// (a queued chunk keeps its whole allocation, not just the bytes in it).
func TestWriterSinkMaxPendingBoundsMemory(t *testing.T) {
	const maxPending = 256 << 10
	for _, flushBytes := range []int{1, 256, 4096, 64 << 10} {
		w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
		s := NewJSONSink(w, &WriterOptions{FlushBytes: flushBytes, MaxPending: maxPending,
			FlushInterval: time.Millisecond, CloseTimeout: 10 * time.Millisecond})
		s.Emit(testEvent(MsgConnect))
		select {
		case <-w.entered:
		case <-time.After(testTimeout):
			t.Fatal("the sink never wrote")
		}
		for range 5000 { // ~1 MB of events: past MaxPending
			s.Emit(testEvent(MsgConnect))
		}
		s.mu.Lock()
		held := cap(s.cur)
		for _, c := range s.ready {
			held += cap(c.b)
		}
		s.mu.Unlock()
		// MaxPending, plus the current chunk's room and one event.
		if limit := maxPending + 2*flushBytes + 4096; held > limit {
			t.Errorf("FlushBytes %d: %d bytes held waiting for a blocked writer, MaxPending %d", flushBytes, held, maxPending)
		}
		if s.Dropped() == 0 {
			t.Errorf("FlushBytes %d: nothing dropped past MaxPending", flushBytes)
		}
		s.Close()
		close(w.release)
		<-s.done
	}
}

// stepWriter blocks each Write until step lets one through, or until
// all is closed.
type stepWriter struct {
	entered chan struct{} // a Write began
	step    chan struct{}
	all     chan struct{}
}

func newStepWriter() *stepWriter {
	return &stepWriter{entered: make(chan struct{}, 1), step: make(chan struct{}), all: make(chan struct{})}
}

func (w *stepWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	select {
	case <-w.step:
	case <-w.all:
	}
	return len(p), nil
}

func (w *stepWriter) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-w.entered:
	case <-time.After(testTimeout):
		t.Fatal("the sink never wrote")
	}
}

// TestWriterSinkMaxPendingCountsWriting: MaxPending bounds every byte
// held for the writer, the chunks its goroutine is writing included.
// With a slow writer in the middle of writing a flush's MaxPending worth
// of chunks, Emit must not queue another MaxPending behind them: it
// drops, and counts, what does not fit.
func TestWriterSinkMaxPendingCountsWriting(t *testing.T) {
	const flushBytes, maxPending = 1024, 16 << 10
	w := newStepWriter()
	s := NewJSONSink(w, &WriterOptions{FlushBytes: flushBytes, MaxPending: maxPending,
		FlushInterval: time.Millisecond, CloseTimeout: testTimeout})
	released := false
	release := func() {
		if !released {
			released = true
			close(w.all)
		}
	}
	defer func() {
		release()
		if err := s.Close(); err != nil && !strings.Contains(err.Error(), "dropped") {
			t.Error(err)
		}
	}()
	// held is what the sink holds for the writer, from its chunks: a
	// full one's whole allocation, a partial one's bytes.
	held := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := len(s.cur)
		for _, cs := range [][]chunk{s.ready, s.writing} {
			for _, c := range cs {
				if len(c.b) >= flushBytes {
					n += cap(c.b)
				} else {
					n += len(c.b)
				}
			}
		}
		return n
	}
	most := 0
	emitted := 1
	s.Emit(testEvent(MsgConnect))
	w.waitEntered(t) // the first write, of one event, is blocked
	emit := func() {
		t.Helper()
		for range 200 { // ~60 KiB of events: past MaxPending
			s.Emit(testEvent(MsgConnect))
			emitted++
			most = max(most, held())
		}
	}
	emit()
	// The first write returns; the next flush takes what is queued,
	// about MaxPending, and blocks writing it ("Events Dropped" first).
	w.step <- struct{}{}
	w.waitEntered(t)
	s.mu.Lock()
	queued := len(s.ready)
	s.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d chunks still queued: the flush did not take them", queued)
	}
	if n := held(); n < maxPending/2 {
		t.Fatalf("%d bytes held while the flush writes: the test wants about MaxPending (%d) in the write", n, maxPending)
	}
	emit()
	if most > maxPending {
		t.Errorf("up to %d bytes held for the writer, MaxPending %d", most, maxPending)
	}
	release()
	if err := s.Close(); err != nil && !strings.Contains(err.Error(), "dropped") {
		t.Fatal(err)
	}
	if s.Dropped() == 0 || s.Written()+s.Dropped() != uint64(emitted) {
		t.Errorf("Written %d + Dropped %d, want %d emitted, some dropped", s.Written(), s.Dropped(), emitted)
	}
	// Everything written counts nothing any more: no bytes leak from the
	// count, which would drop events for good.
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending != 0 {
		t.Errorf("pending %d once everything is written, want 0", pending)
	}
}

// TestSlogSink: events reach a slog JSON handler with the JSON format's
// field names; the logger's level filters them.
func TestSlogSink(t *testing.T) {
	buf := newMemWriter()
	l := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spy := &Spy{Sink: NewSlogSink(l), Producer: "slogtest"}
	c, s := tcpPair(t)
	wc := spy.WrapConn(c, Client)
	wc.Write([]byte("hello"))
	s.SetReadDeadline(time.Now().Add(testTimeout))
	io.ReadFull(s, make([]byte, 5)) // unread data would turn the peer's FIN into a RST
	s.Close()
	wc.SetReadDeadline(time.Now().Add(testTimeout))
	wc.Read(make([]byte, 1)) // EOF
	wc.Close()

	var msgs []string
	var closeRec map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		msgs = append(msgs, m["msg"].(string))
		if m["msg"] == MsgClose {
			closeRec = m
		}
	}
	if want := []string{MsgConnect, MsgEnd, MsgClose}; !equalStrings(msgs, want) {
		t.Fatalf("messages %q, want %q", msgs, want)
	}
	for _, k := range []string{"id", "producer", "localAddress", "localPort", "remoteAddress", "remotePort", "side", "network", "bytesRead", "bytesWritten", "hadError", "closedBy", "durationMs"} {
		if _, ok := closeRec[k]; !ok {
			t.Errorf("Socket Close record lacks %q: %v", k, closeRec)
		}
	}
	if closeRec["producer"] != "slogtest" || closeRec["closedBy"] != "remote" || closeRec["bytesWritten"] != 5.0 || closeRec["side"] != "client" || closeRec["level"] != "DEBUG" {
		t.Errorf("Socket Close record %v", closeRec)
	}

	// Level filtering is the logger's: at Info, only warnings and errors pass.
	buf2 := newMemWriter()
	spy2 := &Spy{Sink: NewSlogSink(slog.New(slog.NewJSONHandler(buf2, nil)))}
	spy2.Emit(Event{Message: MsgConnect})
	spy2.Emit(Event{Message: MsgError, Op: "dial", Err: errors.New("boom")})
	if out := buf2.String(); strings.Contains(out, MsgConnect) || !strings.Contains(out, `"error":"boom"`) || !strings.Contains(out, `"errorKind":"other"`) {
		t.Errorf("Info logger got %q", out)
	}
}

// TestSlogSinkNilLogger: NewSlogSink(nil) logs to slog.Default() as it
// is at each event, like log/slog's top-level functions: a default set
// after the sink was made is used, and so is the next one. No event may
// be lost to a panic (a nil *slog.Logger's methods dereference it).
func TestSlogSinkNilLogger(t *testing.T) {
	oldDefault, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	t.Cleanup(func() {
		slog.SetDefault(oldDefault)
		// SetDefault sends package log's output to the handler it is
		// given, and setting the old default back does not undo that.
		log.SetOutput(oldOut)
		log.SetFlags(oldFlags)
	})
	messages := func(w *memWriter) []string {
		var msgs []string
		for _, line := range w.lines() {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			msgs = append(msgs, fmt.Sprint(m["msg"]))
		}
		return msgs
	}

	sink := NewSlogSink(nil) // before the program sets its default logger
	first, second := newMemWriter(), newMemWriter()
	slog.SetDefault(slog.New(slog.NewJSONHandler(first, &slog.HandlerOptions{Level: slog.LevelDebug})))
	spy := &Spy{Sink: sink}
	c, _ := tcpPair(t)
	wc := spy.WrapConn(c, Client)
	slog.SetDefault(slog.New(slog.NewJSONHandler(second, &slog.HandlerOptions{Level: slog.LevelDebug})))
	wc.Close()

	if got, want := messages(first), []string{MsgConnect}; !slices.Equal(got, want) {
		t.Errorf("first default logger got %q, want %q", got, want)
	}
	if got, want := messages(second), []string{MsgClose}; !slices.Equal(got, want) {
		t.Errorf("second default logger got %q, want %q", got, want)
	}
	if n := spy.Stats().SinkPanics; n != 0 {
		t.Errorf("Stats().SinkPanics = %d, want 0", n)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestHookPanics: a hook that panics is recovered, counted and reported as
// "Hook Panic"; the events themselves still reach the sink.
func TestHookPanics(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink, Hooks: Hooks{
		ConnOpened: func(*Record) { panic("opened") },
		ConnClosed: func(*Record) { panic("closed") },
		Event:      func(*Event) { panic("event") },
	}}
	a, b := net.Pipe()
	defer b.Close()
	c := spy.WrapConn(a, Client)
	c.Close()
	if got := spy.Stats().HookPanics; got != 4 {
		t.Errorf("HookPanics = %d, want 4 (ConnOpened, Event x2, ConnClosed)", got)
	}
	panics := sink.of(MsgHookPanic, nil)
	var ops []string
	for _, e := range panics {
		ops = append(ops, e.Op)
		if e.Level != slog.LevelError || e.Err == nil || !strings.HasPrefix(e.Err.Error(), "connscope: hook ") {
			t.Errorf("Hook Panic event: level %v err %v", e.Level, e.Err)
		}
	}
	if want := []string{"ConnOpened", "Event", "Event", "ConnClosed"}; !equalStrings(ops, want) {
		t.Errorf("Hook Panic ops %q, want %q", ops, want)
	}
	if len(sink.of(MsgConnect, nil)) != 1 || len(sink.of(MsgClose, nil)) != 1 {
		t.Errorf("events %q: the panicking hook swallowed events", sink.messages())
	}
}

// panicHandler is a slog.Handler with a bug: Handle panics.
type panicHandler struct{ slog.Handler }

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("handler bug") }

// TestSinkPanics: a sink whose Emit panics (here a slog handler behind
// NewSlogSink) does not take the program down through the connection's
// Read, Write or Close: the events are counted as lost, the I/O returns
// as it would without the spy.
func TestSinkPanics(t *testing.T) {
	spy := &Spy{Sink: NewSlogSink(slog.New(panicHandler{}))}
	c, peer := tcpPair(t)
	w := spy.WrapConn(c, Client)
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	if _, err := w.Read(buf); err != io.EOF {
		t.Errorf("Read after the peer's FIN = %v, want io.EOF", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	// Socket Connect, Socket End, Socket Close.
	if got := spy.Stats().SinkPanics; got != 3 {
		t.Errorf("SinkPanics = %d, want 3", got)
	}
}

// TestMultiSink: every sink gets every event, also the sinks after one
// that panics; the panic is counted once per event, as for a single sink.
func TestMultiSink(t *testing.T) {
	panicky := sinkFunc(func(*Event) { panic("sink broke") })
	for _, tc := range []struct {
		name   string
		sinks  func(a, b Sink) []Sink
		panics uint64
	}{
		{"two sinks", func(a, b Sink) []Sink { return []Sink{a, b} }, 0},
		{"a panicking sink first", func(a, b Sink) []Sink { return []Sink{panicky, a, b} }, 1},
		{"a panicking sink between", func(a, b Sink) []Sink { return []Sink{a, panicky, b} }, 1},
		{"two panicking sinks", func(a, b Sink) []Sink { return []Sink{panicky, a, panicky, b} }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newCaptureSink(), newCaptureSink()
			spy := &Spy{Sink: MultiSink(tc.sinks(a, b)...)}
			spy.Emit(Event{Message: MsgConnect})
			if len(a.all()) != 1 || len(b.all()) != 1 {
				t.Errorf("MultiSink delivered %d and %d events, want 1 and 1", len(a.all()), len(b.all()))
			}
			if got := spy.Stats().SinkPanics; got != tc.panics {
				t.Errorf("SinkPanics = %d, want %d", got, tc.panics)
			}
		})
	}
}

type sinkFunc func(*Event)

func (f sinkFunc) Emit(e *Event) { f(e) }

// TestJSONFormat checks connection-spy's field order, nulls and timestamp.
func TestJSONFormat(t *testing.T) {
	c, _ := tcpPair(t)
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	wc := spy.WrapConn(c, Client)
	wc.Close()
	ev := sink.of(MsgClose, nil)[0]
	line := ev.AppendJSON(nil)
	keys := jsonKeys(t, line)
	want := []string{"id", "producer", "localAddress", "localPort", "remoteAddress", "remotePort", "hadError", "level", "message", "_timestamp"}
	if !equalStrings(keys[:len(want)], want) {
		t.Errorf("keys %q; want prefix %q", keys, want)
	}
	var m map[string]any
	json.Unmarshal(line, &m)
	if m["localAddress"] != "127.0.0.1" || m["remoteAddress"] != "127.0.0.1" || m["localPort"] == nil || m["side"] != "client" || m["closedBy"] != "local" || m["hadError"] != false {
		t.Errorf("Socket Close line %s", line)
	}
	if ts, _ := m["_timestamp"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ts) {
		t.Errorf("_timestamp %q is not ISO 8601 UTC with milliseconds", ts)
	}

	// No connection: id and addresses are null, as in the seed.
	e := testEvent(MsgError)
	e.Level = slog.LevelError
	got := string(e.AppendJSON(nil))
	const wantLine = `{"id":null,"producer":"test","localAddress":null,"localPort":null,"remoteAddress":null,"remotePort":null,"target":"GET http://example.com:80/","level":"error","message":"Socket Error","_timestamp":"2021-05-07T17:16:29.743Z"}`
	if got != wantLine {
		t.Errorf("AppendJSON =\n%s\nwant\n%s", got, wantLine)
	}
}

func jsonKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	var keys []string
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestWriterSinkLevel: WriterOptions.Level keeps the events at or above
// it; nil keeps all of them, as connection-spy does.
func TestWriterSinkLevel(t *testing.T) {
	msgs := []string{MsgConnect, MsgReuse, MsgIdle, MsgTimeout, MsgError, MsgRequestError, MsgClose}
	for _, tc := range []struct {
		level slog.Leveler
		want  []string
	}{
		{nil, msgs},
		{slog.LevelDebug, msgs},
		{slog.LevelInfo, []string{MsgTimeout, MsgError, MsgRequestError}},
		{slog.LevelWarn, []string{MsgTimeout, MsgError, MsgRequestError}},
		{slog.LevelError, []string{MsgError, MsgRequestError}},
	} {
		t.Run(fmt.Sprint(tc.level), func(t *testing.T) {
			var buf bytes.Buffer
			sink := NewJSONSink(&buf, &WriterOptions{Level: tc.level})
			spy := &Spy{Sink: sink}
			for _, m := range msgs {
				spy.Emit(Event{Message: m})
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for line := range strings.Lines(buf.String()) {
				var e struct{ Message string }
				if err := json.Unmarshal([]byte(line), &e); err != nil {
					t.Fatal(err)
				}
				got = append(got, e.Message)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("written %q, want %q", got, tc.want)
			}
			if sink.Written() != uint64(len(tc.want)) || sink.Dropped() != 0 {
				t.Errorf("Written %d, Dropped %d; want %d, 0 (filtered events are not drops)", sink.Written(), sink.Dropped(), len(tc.want))
			}
		})
	}
}

// shortOnceWriter writes half of its first write and fails it, as a full
// disk does (os.File returns n < len(p) and ENOSPC), then works again.
type shortOnceWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
}

func (w *shortOnceWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.calls == 1 {
		n := len(p)/2 + 7 // not on a line boundary
		w.buf.Write(p[:n])
		return n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

// TestWriterSinkShortWrite: after a short write, the file still holds
// only whole JSON lines but for the broken one, which is ended so that
// the next line stands alone; the lines written count as written, the
// rest as dropped, and the drop report says how many.
func TestWriterSinkShortWrite(t *testing.T) {
	w := &shortOnceWriter{}
	s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour})
	spy := &Spy{Sink: s}
	const first, second = 6, 2
	for range first {
		spy.Emit(Event{Message: MsgIdle, Target: "GET http://h:80/"})
	}
	if err := s.Flush(); err == nil {
		t.Fatal("Flush: no error from the short write")
	}
	for range second {
		spy.Emit(Event{Message: MsgIdle})
	}
	s.Close()
	var events, broken int
	var reported uint64
	for line := range strings.Lines(w.buf.String()) {
		var e struct {
			Message string
			Dropped uint64
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			broken++
			continue
		}
		if e.Message == MsgDropped {
			reported += e.Dropped
			continue
		}
		events++
	}
	if broken != 1 {
		t.Errorf("%d broken lines, want the 1 the short write cut:\n%s", broken, w.buf.String())
	}
	if uint64(events) != s.Written() || s.Written()+s.Dropped() != first+second || reported != s.Dropped() {
		t.Errorf("%d event lines, Written %d, Dropped %d, reported dropped %d; want Written = lines, Written + Dropped = %d, reported = Dropped",
			events, s.Written(), s.Dropped(), reported, first+second)
	}
	if s.Written() <= second {
		t.Errorf("Written %d: the whole lines before the cut were not counted", s.Written())
	}
}

// gateWriter blocks every Write until release is closed, then writes
// through, recording what it wrote and how many writes.
type gateWriter struct {
	release   chan struct{}
	entered   chan struct{}
	enterOnce sync.Once
	openOnce  sync.Once
	mu        sync.Mutex
	buf       bytes.Buffer
	writes    int
}

func newGateWriter() *gateWriter {
	return &gateWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.enterOnce.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *gateWriter) open() { w.openOnce.Do(func() { close(w.release) }) }

func (w *gateWriter) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-w.entered:
	case <-time.After(testTimeout):
		t.Fatalf("the sink did not write within %v", testTimeout)
	}
}

func (w *gateWriter) written() (lines []string, writes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for l := range strings.Lines(w.buf.String()) {
		lines = append(lines, l)
	}
	return lines, w.writes
}

// releaseSink lets a sink's blocked writer go, closes the sink and waits
// for its goroutine, for goleak.
func releaseSink(t *testing.T, w *gateWriter, s *WriterSink) {
	w.open()
	s.Close()
	select {
	case <-s.done:
	case <-time.After(testTimeout):
		t.Errorf("sink goroutine did not exit within %v of the writer returning", testTimeout)
	}
}

// TestWriterSinkCloseTimeoutCounts: when Close gives up on a blocked
// writer, every event not yet written (in the write in progress, in the
// queued chunks, in the current one) counts as dropped, so that Written +
// Dropped is what was emitted. A write that completes after Close adds
// nothing to Written, and the sink writes nothing after it.
func TestWriterSinkCloseTimeoutCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		late bool // the blocked write completes after Close
	}{
		{"writer still blocked", false},
		{"write completes after Close", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newGateWriter()
			s := NewJSONSink(w, &WriterOptions{FlushBytes: 512, FlushInterval: time.Millisecond, CloseTimeout: 50 * time.Millisecond})
			t.Cleanup(func() { releaseSink(t, w, s) })
			var emitted uint64
			for range 5 {
				s.Emit(testEvent(MsgConnect))
				emitted++
			}
			w.waitEntered(t)
			// ~200 bytes each: until there are queued chunks and events in
			// the current one (the blocked write took 3 or 5 events).
			for {
				s.mu.Lock()
				queued, inCur := len(s.ready), s.curEvents
				s.mu.Unlock()
				if queued > 0 && inCur > 0 {
					break
				}
				if emitted == 100 {
					t.Fatalf("%d queued chunks, %d events in the current one after %d events", queued, inCur, emitted)
				}
				s.Emit(testEvent(MsgConnect))
				emitted++
			}
			err := s.Close()
			if err == nil || !strings.Contains(err.Error(), "blocked") || !strings.Contains(err.Error(), fmt.Sprintf("; %d events dropped", emitted)) {
				t.Errorf("Close = %v; want the writer blocked and %d events dropped", err, emitted)
			}
			if s.Written() != 0 || s.Dropped() != emitted {
				t.Errorf("after Close: Written %d, Dropped %d; want 0, %d", s.Written(), s.Dropped(), emitted)
			}
			if !tc.late {
				return
			}
			w.open()
			select {
			case <-s.done:
			case <-time.After(testTimeout):
				t.Fatalf("sink goroutine did not exit within %v of the writer returning", testTimeout)
			}
			if s.Written() != 0 || s.Dropped() != emitted {
				t.Errorf("after the late write: Written %d, Dropped %d; want 0, %d (counted once, as dropped)", s.Written(), s.Dropped(), emitted)
			}
			if _, writes := w.written(); writes != 1 {
				t.Errorf("%d writes; want only the one in progress when Close gave up", writes)
			}
		})
	}
}

// TestWriterSinkFlushTimeout: Flush waits at most CloseTimeout for a
// blocked writer, says so, and leaves the sink working: once the writer
// returns, the next Flush writes everything.
func TestWriterSinkFlushTimeout(t *testing.T) {
	w := newGateWriter()
	s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour, CloseTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { releaseSink(t, w, s) })
	s.Emit(testEvent(MsgConnect))
	errc := make(chan error, 1)
	go func() { errc <- s.Flush() }()
	select {
	case err := <-errc:
		if err == nil || !strings.HasPrefix(err.Error(), "connscope: ") || !strings.Contains(err.Error(), "blocked after 50ms") {
			t.Fatalf("Flush = %v; want an error naming the 50ms timeout", err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("Flush still blocked after %v, CloseTimeout 50ms", testTimeout)
	}
	w.waitEntered(t)
	w.open()
	s.Emit(testEvent(MsgClose))
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush once the writer returned: %v", err)
	}
	if lines, _ := w.written(); len(lines) != 2 || s.Written() != 2 || s.Dropped() != 0 {
		t.Errorf("%d lines, Written %d, Dropped %d; want 2, 2, 0", len(lines), s.Written(), s.Dropped())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Errorf("Flush after Close = %v, want nil", err)
	}
}

// TestWriterSinkDroppedProducer: the "Events Dropped" line carries the
// producer of the events the sink received, as the lines around it do.
func TestWriterSinkDroppedProducer(t *testing.T) {
	for _, tc := range []struct{ producer, want string }{
		{"myapp", "myapp"},
		{"", DefaultProducer},
	} {
		t.Run(tc.want, func(t *testing.T) {
			w := newMemWriter()
			w.fail.Store(true)
			s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour})
			spy := &Spy{Sink: s, Producer: tc.producer}
			spy.Emit(Event{Message: MsgIdle})
			s.Flush() // fails: 1 dropped
			w.fail.Store(false)
			spy.Emit(Event{Message: MsgIdle})
			s.Close()
			var msgs []string
			for _, line := range w.lines() {
				var e struct{ Producer, Message string }
				if err := json.Unmarshal([]byte(line), &e); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				msgs = append(msgs, e.Message)
				if e.Producer != tc.want {
					t.Errorf("producer %q, want %q: %s", e.Producer, tc.want, line)
				}
			}
			if want := []string{MsgDropped, MsgIdle}; !slices.Equal(msgs, want) {
				t.Errorf("messages %q, want %q", msgs, want)
			}
		})
	}
}

// misbehavingWriter panics, or returns a count io.Writer forbids, on the
// writes it is told to; the others go to memWriter.
type misbehavingWriter struct {
	*memWriter
	mode atomic.Value // string: "panic", "negative", "toomany", "short", ""
}

func (w *misbehavingWriter) Write(p []byte) (int, error) {
	switch w.mode.Load() {
	case "panic":
		panic("writer bug")
	case "negative":
		return -1, nil
	case "toomany":
		return len(p) + 10, nil
	case "short":
		// Half the bytes, no error: a broken io.Writer.
		return w.memWriter.Write(p[:len(p)/2])
	}
	return w.memWriter.Write(p)
}

// TestWriterSinkMisbehavingWriter: a writer that panics or breaks the
// io.Writer contract neither crashes the program (the panic would be on
// the sink's goroutine) nor loses events silently: they count as dropped,
// Err says why, and the sink writes again once the writer behaves.
func TestWriterSinkMisbehavingWriter(t *testing.T) {
	for _, tt := range []struct {
		mode, err string
		written   uint64 // whole lines before the failure
	}{
		{"panic", "writer panicked: writer bug", 0},
		{"negative", "writer returned count -1", 0},
		{"toomany", "writer returned count", 0},
		// Half of three lines: the first one whole.
		{"short", io.ErrShortWrite.Error(), 1},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			w := &misbehavingWriter{memWriter: newMemWriter()}
			w.mode.Store(tt.mode)
			s := NewJSONSink(w, &WriterOptions{FlushInterval: time.Hour})
			for range 3 {
				s.Emit(testEvent(MsgConnect))
			}
			err := s.Flush()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Flush = %v, want an error with %q", err, tt.err)
			}
			if got := s.Err(); got == nil || !strings.Contains(got.Error(), tt.err) {
				t.Errorf("Err() = %v, want an error with %q", got, tt.err)
			}
			if s.Dropped() != 3-tt.written || s.Written() != tt.written {
				t.Errorf("Dropped %d, Written %d; want %d and %d", s.Dropped(), s.Written(), 3-tt.written, tt.written)
			}
			w.mode.Store("")
			s.Emit(testEvent(MsgClose))
			if err := s.Flush(); err != nil {
				t.Fatalf("Flush after the writer recovered: %v", err)
			}
			// What follows starts on a line of its own: after a short
			// write, the half line is ended first.
			var msgs []string
			for _, l := range w.lines() {
				if l == "" || !json.Valid([]byte(l)) {
					continue // the half line of the short write, ended
				}
				var m map[string]any
				json.Unmarshal([]byte(l), &m)
				msgs = append(msgs, m["message"].(string))
			}
			want := []string{MsgDropped, MsgClose}
			if tt.written == 1 {
				want = append([]string{MsgConnect}, want...)
			}
			if !slices.Equal(msgs, want) {
				t.Errorf("valid lines after recovery: %q, want %q (all: %q)", msgs, want, w.lines())
			}
			s.Close()
		})
	}
}

// TestWriterSinkMaxPendingUnderChunkKeepsWriting: a MaxPending between
// FlushBytes and a chunk's allocation cannot hold a full chunk with its
// room. The event that fills a chunk must still go to a writer that keeps
// up (it is written as the bytes it is), not be dropped, and every event
// after it too, while nothing is written until FlushInterval.
func TestWriterSinkMaxPendingUnderChunkKeepsWriting(t *testing.T) {
	const flushBytes, maxPending = 4096, 6000 // a chunk's allocation: 8192
	w := newMemWriter()
	s := NewJSONSink(w, &WriterOptions{FlushBytes: flushBytes, MaxPending: maxPending,
		FlushInterval: time.Hour, CloseTimeout: testTimeout})
	const n = 100 // ~20 KiB: five chunks' worth
	for range n {
		s.Emit(testEvent(MsgConnect))
		s.mu.Lock()
		most := s.pending
		s.mu.Unlock()
		if most > maxPending {
			t.Fatalf("%d bytes pending, over MaxPending %d", most, maxPending)
		}
		// The writer keeps up: a chunk's worth is written before the
		// next event.
		deadline := time.Now().Add(testTimeout)
		for {
			s.mu.Lock()
			idle := s.pending == len(s.cur) && len(s.cur) < flushBytes
			s.mu.Unlock()
			if idle {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the writer never took the full chunk")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("%d of %d events dropped with an idle writer (written before Close: %d)", d, n, s.Written())
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if s.Written()+s.Dropped() != n {
		t.Errorf("written %d + dropped %d, want %d", s.Written(), s.Dropped(), n)
	}
}

// TestWriterSinkShortWriteChunkReusedAtOnce: after a short write the
// sink's goroutine looks at the chunk's last byte written, to know whether
// it cut a line; the chunk must not be back in use by then, where an Emit
// may already be filling it (a data race, and a newline that ends the
// broken line missed or added by what that Emit wrote). Run with -race.
func TestWriterSinkShortWriteChunkReusedAtOnce(t *testing.T) {
	w := &shortOnceWriter{}
	const flushBytes = 512
	s := NewJSONSink(w, &WriterOptions{FlushBytes: flushBytes, FlushInterval: time.Hour, CloseTimeout: testTimeout})
	s.Emit(testEvent(MsgConnect))
	s.Emit(testEvent(MsgConnect))
	// Hold the sink's goroutine after the failed write, at its error, so
	// that nothing it does afterwards orders it before the Emits below.
	s.errMu.Lock()
	go s.Flush() // its reply would order the sink's goroutine before this one
	deadline := time.Now().Add(testTimeout)
	for {
		s.mu.Lock()
		recycled := len(s.free) > 0 && s.inFlight == 0
		s.mu.Unlock()
		if recycled {
			break
		}
		if time.Now().After(deadline) {
			s.errMu.Unlock()
			t.Fatal("the failed chunk was not taken back")
		}
		time.Sleep(time.Millisecond)
	}
	// Fill cur, which queues it and takes the failed chunk back from
	// the free list, then write into that one.
	for range 2 * flushBytes / 100 {
		s.Emit(testEvent(MsgConnect))
	}
	s.errMu.Unlock()
	s.Close()
	if s.Written()+s.Dropped() != 2+2*flushBytes/100 {
		t.Errorf("written %d + dropped %d, want %d", s.Written(), s.Dropped(), 2+2*flushBytes/100)
	}
}

// TestWriterSinkMaxPendingUnderFlushBytesKeepsWriting: with MaxPending at
// or under FlushBytes, the buffer never reaches FlushBytes, so a kick on
// size alone never comes: events waited for FlushInterval, and those past
// MaxPending in the meantime were dropped although the writer was idle.
func TestWriterSinkMaxPendingUnderFlushBytesKeepsWriting(t *testing.T) {
	for _, tc := range []struct{ flushBytes, maxPending int }{
		{64 << 10, 2000},
		{4096, 4096},
	} {
		t.Run(fmt.Sprintf("flush=%d,max=%d", tc.flushBytes, tc.maxPending), func(t *testing.T) {
			w := newMemWriter()
			s := NewJSONSink(w, &WriterOptions{FlushBytes: tc.flushBytes, MaxPending: tc.maxPending,
				FlushInterval: time.Hour, CloseTimeout: testTimeout})
			line := len(testEvent(MsgConnect).AppendJSON(nil)) + 1
			const n = 60 // several times MaxPending
			for i := range n {
				s.Emit(testEvent(MsgConnect))
				// The writer keeps up: what is buffered is written before
				// the buffer is full.
				deadline := time.Now().Add(testTimeout)
				for {
					s.mu.Lock()
					room := s.pending+2*line <= tc.maxPending
					s.mu.Unlock()
					if room {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("event %d: the writer never took the buffer (written %d)", i, s.Written())
					}
					time.Sleep(time.Millisecond)
				}
			}
			if d := s.Dropped(); d != 0 {
				t.Errorf("%d of %d events dropped with an idle writer", d, n)
			}
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			if s.Written()+s.Dropped() != n {
				t.Errorf("written %d + dropped %d, want %d", s.Written(), s.Dropped(), n)
			}
		})
	}
}
