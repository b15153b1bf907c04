package connscope

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// A Sink receives events. Emit is called from the goroutines that use the
// connections, so it must be quick and safe for concurrent use; the event
// is valid only during the call.
//
// Some events are emitted while net/http holds a lock of its own: a
// "Socket Close" of an idle HTTP/2 connection comes from inside the
// transport's CloseIdleConnections, and "Socket Idle" from the
// connection's read goroutine, before the response's caller may go on.
// So Emit must not wait for network I/O, and above all must not make a
// request through a transport that the Spy instruments: that request can
// wait for the very lock or goroutine the event came from. A sink that
// exports over the network hands its events to a goroutine of its own,
// as WriterSink does with its writer. The same holds for Hooks.
type Sink interface {
	Emit(e *Event)
}

// WriterOptions configure a WriterSink. The zero value works.
type WriterOptions struct {
	// FlushBytes is the buffer size that triggers a write (default 64 KiB).
	FlushBytes int
	// MaxPending bounds the bytes held for a slow writer: buffered,
	// queued and being written. Events that do not fit are dropped and
	// counted (default 4 MiB).
	MaxPending int
	// FlushInterval is the longest an event waits before it is written
	// (default 100ms).
	FlushInterval time.Duration
	// CloseTimeout bounds how long Close and Flush wait for a blocked
	// writer (default 5s).
	CloseTimeout time.Duration
	// Level is the least level of the events written. Events carry slog
	// levels: "Socket Error", "HTTP(S) Error", "Hook Panic" and any other
	// event that carries an error are errors, "Socket Timeout", "Events
	// Dropped" and "Socket Not Spied" warnings, the rest of a connection's
	// life debug, and so are a server's routine ends: its own idle
	// timeout, and a connection that ends without a byte either way (a
	// load balancer's health check). nil writes every event, as
	// connection-spy does; slog.LevelWarn keeps only what went wrong, and
	// skips the encoding of the rest. The "Events Dropped" report is
	// written whatever the level.
	Level slog.Leveler
}

// A WriterSink encodes events into a buffer and writes them to an
// io.Writer from its own goroutine: on size, on an interval, on Flush and
// on Close. A slow or failing writer never blocks the program: events that
// do not fit, or whose write failed, are dropped, counted (Dropped), and
// reported by an "Events Dropped" line once the writer works again.
type WriterSink struct {
	w    io.Writer
	text bool // AppendText, not AppendJSON
	opts WriterOptions

	// Events are encoded into cur; a cur that reaches FlushBytes joins
	// ready, in order, for the writer. Emit never waits for the writer's
	// goroutine to wake up (on a busy machine that takes milliseconds):
	// it changes chunks and goes on, and no chunk is ever copied to grow.
	mu        sync.Mutex // guards cur, curEvents, ready, pending, free, closed, producer, inFlight, abandoned
	cur       []byte
	curEvents uint64
	ready     []chunk
	// Bytes held for the writer, at most MaxPending: cur's events, and
	// the chunks in ready and writing (their held).
	pending int
	free    [][]byte // empty chunks to reuse
	closed  bool
	// The last event's producer, for the "Events Dropped" line: it
	// speaks for the program that emitted the events it counts.
	producer string
	// Events taken by a flush and not yet counted as written or
	// dropped: what Close must count as dropped if it gives up.
	inFlight uint64
	// Close gave up on a blocked writer and counted everything not yet
	// written as dropped: no more writes, and no more counting.
	abandoned bool

	// Only the sink's goroutine writes (Flush asks it to), so that a
	// blocked writer blocks that goroutine alone. These are its own.
	writing  []chunk // the chunks being written
	reported uint64  // dropped count already reported
	// A short write ended in the middle of a line.
	brokenLine bool

	kick    chan struct{}
	flushes chan chan error // Flush's requests, each with room for the reply
	stop    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
	written atomic.Uint64
	errMu   sync.Mutex
	lastErr error
}

// chunk is encoded events waiting for the writer.
type chunk struct {
	b      []byte
	events uint64
	// What it counts in pending until written: its whole allocation if
	// it filled up (see Emit), its bytes if a flush took it as cur, whose
	// room is not counted.
	held int
}

// maxFreeChunks bounds the chunks kept for reuse after a burst.
const maxFreeChunks = 16

// NewJSONSink returns a sink that writes one JSON object per line, in
// connection-spy's format (see Event.AppendJSON). opts may be nil.
func NewJSONSink(w io.Writer, opts *WriterOptions) *WriterSink {
	return newWriterSink(w, opts, false)
}

// NewTextSink returns a sink that writes aligned lines for a person (see
// Event.AppendText). opts may be nil.
func NewTextSink(w io.Writer, opts *WriterOptions) *WriterSink {
	return newWriterSink(w, opts, true)
}

func newWriterSink(w io.Writer, opts *WriterOptions, text bool) *WriterSink {
	s := &WriterSink{w: w, text: text, kick: make(chan struct{}, 1), flushes: make(chan chan error),
		stop: make(chan struct{}), done: make(chan struct{})}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.FlushBytes <= 0 {
		s.opts.FlushBytes = 64 << 10
	}
	if s.opts.MaxPending <= 0 {
		s.opts.MaxPending = 4 << 20
	}
	if s.opts.FlushInterval <= 0 {
		s.opts.FlushInterval = 100 * time.Millisecond
	}
	if s.opts.CloseTimeout <= 0 {
		s.opts.CloseTimeout = 5 * time.Second
	}
	s.cur = s.newChunk()
	go s.loop()
	return s
}

// newChunk returns an empty chunk, with room for the event that takes
// it past FlushBytes. Called with mu held or before the sink is shared.
func (s *WriterSink) newChunk() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return make([]byte, 0, s.chunkCap())
}

// chunkCap is a chunk's size: FlushBytes plus room for the event that
// takes it past, but no more than twice FlushBytes, so that a small
// FlushBytes does not mean mostly empty chunks.
func (s *WriterSink) chunkCap() int { return s.opts.FlushBytes + min(4096, s.opts.FlushBytes) }

// encode appends e's line to b. A method, not a func field: a call
// through a func value would make every event escape to the heap.
func (s *WriterSink) encode(b []byte, e *Event) []byte {
	if s.text {
		return append(e.AppendText(b), '\n')
	}
	return append(e.AppendJSON(b), '\n')
}

// Emit encodes e into the buffer; it never waits for the writer.
func (s *WriterSink) Emit(e *Event) {
	if l := s.opts.Level; l != nil && e.Level < l.Level() {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.producer = e.Producer
	n := len(s.cur)
	s.cur = s.encode(s.cur, e)
	add := len(s.cur) - n
	full := len(s.cur) >= s.opts.FlushBytes
	// A queued chunk holds its whole allocation until written: count its
	// unused room too, so MaxPending bounds the memory held. Unless
	// MaxPending cannot hold a chunk's allocation at all: counting the
	// room would then drop every event that fills a chunk, even with an
	// idle writer. The chunk stays cur, counted by its bytes (cur cannot
	// outgrow its allocation under such a MaxPending), and the writer is
	// kicked to take it as a flush takes cur.
	queue := full && s.opts.MaxPending >= s.chunkCap()
	if queue {
		add += cap(s.cur) - len(s.cur)
	}
	if s.pending+add > s.opts.MaxPending {
		s.cur = s.cur[:n]
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.pending += add
	s.curEvents++
	if queue {
		s.ready = append(s.ready, chunk{s.cur, s.curEvents, cap(s.cur)})
		s.cur, s.curEvents = s.newChunk(), 0
	}
	// Kick the writer at half of MaxPending too: with MaxPending under
	// FlushBytes the buffer is never full, and events would wait for
	// FlushInterval, or be dropped meanwhile.
	kick := full || 2*s.pending >= s.opts.MaxPending
	s.mu.Unlock()
	if kick {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *WriterSink) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		var reply chan error
		select {
		case <-s.kick:
		case <-t.C:
		case reply = <-s.flushes:
		case <-s.stop:
			s.flush()
			return
		}
		err := s.flush()
		if reply != nil {
			reply <- err // never blocks: room for one
		}
	}
}

// Flush writes what is buffered and returns the writer's error, if any.
// It waits at most CloseTimeout for a blocked writer, then returns an
// error; the sink goes on buffering (up to MaxPending) and writes once
// the writer returns.
func (s *WriterSink) Flush() error {
	reply := make(chan error, 1) // the sink's goroutine must not wait for a Flush that gave up
	timeout := time.NewTimer(s.opts.CloseTimeout)
	defer timeout.Stop()
	select {
	case s.flushes <- reply:
	case <-s.done:
		return nil // closed: Close wrote what there was
	case <-timeout.C:
		return fmt.Errorf("connscope: sink: flush: writer still blocked after %v", s.opts.CloseTimeout)
	}
	select {
	case err := <-reply:
		return err
	case <-timeout.C:
		return fmt.Errorf("connscope: sink: flush: writer still blocked after %v", s.opts.CloseTimeout)
	}
}

// flush writes what is buffered. Only the sink's goroutine calls it.
func (s *WriterSink) flush() error {
	s.mu.Lock()
	if s.abandoned {
		s.mu.Unlock()
		return nil
	}
	// Take every chunk, cur included; ready keeps its array (the
	// previous writing one) so that the steady state allocates nothing.
	// The chunks stay counted in pending until written, so that Emit
	// cannot queue another MaxPending behind a slow write.
	s.writing, s.ready = s.ready, s.writing[:0]
	if len(s.cur) > 0 {
		s.writing = append(s.writing, chunk{s.cur, s.curEvents, len(s.cur)})
		s.cur, s.curEvents = s.newChunk(), 0
	}
	for _, c := range s.writing {
		s.inFlight += c.events
	}
	producer := s.producer
	s.mu.Unlock()
	if producer == "" {
		producer = DefaultProducer // events emitted without a Spy
	}
	var err error
	if s.brokenLine {
		// A failed write left half a line: end it, so that what follows
		// starts a line of its own.
		if _, err = s.write([]byte{'\n'}); err == nil {
			s.brokenLine = false
		}
	}
	if drops := s.dropped.Load(); err == nil && drops > s.reported {
		// Say what was lost before what follows it.
		e := Event{Time: time.Now(), Level: levelFor(MsgDropped, nil), Message: MsgDropped, Producer: producer, Dropped: drops - s.reported}
		line := s.encode(nil, &e)
		var n int
		if n, err = s.write(line); err == nil {
			s.reported = drops
		} else if n > 0 && n < len(line) {
			s.brokenLine = true
		}
	}
	// Close may have given up while the report was being written.
	s.mu.Lock()
	gone := s.abandoned
	s.mu.Unlock()
	for i, c := range s.writing {
		var n int
		if err == nil && !gone {
			n, err = s.write(c.b)
		}
		// Before recycle: once the chunk is free, an Emit may fill it.
		broken := err != nil && n > 0 && c.b[n-1] != '\n'
		s.mu.Lock()
		// If Close gave up during this write, it counted this chunk and
		// the rest as dropped: count nothing, write nothing more.
		if gone = s.abandoned; !gone {
			s.inFlight -= c.events
			s.pending -= c.held
			if err != nil {
				// A short write (a full disk) wrote the lines before n:
				// they count as written, the rest as dropped.
				done := uint64(bytes.Count(c.b[:n], []byte{'\n'}))
				s.written.Add(done)
				s.dropped.Add(c.events - done)
			} else {
				s.written.Add(c.events)
			}
			s.recycle(c.b)
		}
		s.mu.Unlock()
		if broken {
			s.brokenLine = true
		}
		s.writing[i] = chunk{}
	}
	if err != nil {
		s.errMu.Lock()
		s.lastErr = err
		s.errMu.Unlock()
	}
	return err
}

// write is s.w.Write with a panic turned into an error: the writer is the
// user's, and a panic on the sink's goroutine would end the program. What
// the writer did with p before it panicked is unknown: it counts as not
// written (n 0), so its events count as dropped.
func (s *WriterSink) write(p []byte) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, fmt.Errorf("connscope: sink: writer panicked: %v", v)
		}
	}()
	if s.w == nil {
		// Bad input to NewJSONSink or NewTextSink: say so, not a nil dereference.
		return 0, errors.New("connscope: sink: nil io.Writer")
	}
	n, err = s.w.Write(p)
	switch {
	case n < 0 || n > len(p):
		// A broken writer's count would slice past the chunk.
		n, err = 0, fmt.Errorf("connscope: sink: writer returned count %d for %d bytes", n, len(p))
	case n < len(p) && err == nil:
		err = io.ErrShortWrite // as io.Copy says it: the rest was not written
	}
	return n, err
}

// recycle keeps b for reuse unless a huge event made it grow, or enough
// are kept already. Called with mu held.
func (s *WriterSink) recycle(b []byte) {
	if cap(b) <= 2*s.chunkCap() && len(s.free) < maxFreeChunks {
		s.free = append(s.free, b[:0])
	}
}

// Dropped returns how many events were lost: did not fit while the writer
// was slow, or were in a write that failed, or were not yet written when
// Close gave up on a blocked writer, or came after Close.
func (s *WriterSink) Dropped() uint64 { return s.dropped.Load() }

// Written returns how many emitted events were written (the sink's own
// "Events Dropped" lines are not counted), so that Written + Dropped is
// what was emitted at or above Level once the sink is closed.
func (s *WriterSink) Written() uint64 { return s.written.Load() }

// Err returns the last error the writer returned, or nil.
func (s *WriterSink) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

// Close writes what is buffered and stops the sink's goroutine. It waits
// at most CloseTimeout for a blocked writer; if it gives up, every event
// not yet written counts as dropped, those of the write in progress
// included, and the sink writes nothing more. Should that write complete
// later, its events stay dropped, though they reached the writer: so
// that once Close returns, Written + Dropped is what was emitted, and
// stays so. It reports lost events and the writer's last error.
func (s *WriterSink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	select {
	case <-s.done:
	case <-time.After(s.opts.CloseTimeout):
		s.mu.Lock()
		s.abandoned = true
		lost := s.curEvents + s.inFlight
		for _, c := range s.ready {
			lost += c.events
		}
		s.cur, s.curEvents, s.ready, s.pending, s.inFlight, s.free = nil, 0, nil, 0, 0, nil
		s.dropped.Add(lost)
		s.mu.Unlock()
		return fmt.Errorf("connscope: sink: writer still blocked after %v; %d events dropped", s.opts.CloseTimeout, s.dropped.Load())
	}
	var errs []error
	if err := s.Err(); err != nil {
		errs = append(errs, fmt.Errorf("connscope: sink: write: %w", err))
	}
	if d := s.dropped.Load(); d > 0 {
		errs = append(errs, fmt.Errorf("connscope: sink: %d events dropped", d))
	}
	return errors.Join(errs...)
}

// NewSlogSink returns a sink that logs each event to l, with the message
// as the record's message and the JSON format's field names as attributes.
// Level filtering is the logger's. A nil l logs to slog.Default() as it
// is at each event, as log/slog's top-level functions do.
func NewSlogSink(l *slog.Logger) Sink { return slogSink{l} }

type slogSink struct{ l *slog.Logger }

func (s slogSink) Emit(e *Event) {
	l := s.l
	if l == nil {
		// Looked up per event: the program may set its default logger
		// after it made the sink.
		l = slog.Default()
	}
	ctx := context.Background()
	if !l.Enabled(ctx, e.Level) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	dur := func(k string, d time.Duration) {
		if d >= time.Microsecond || d <= -time.Microsecond { // as the JSON format: less would read 0
			attrs = append(attrs, slog.Float64(k, float64(d.Microseconds())/1e3))
		}
	}
	id := e.ID
	if r := e.Conn; r != nil {
		id = r.id
	}
	if !id.IsZero() {
		attrs = append(attrs, slog.String("id", id.String()))
	}
	str("producer", e.Producer)
	if r := e.Conn; r != nil {
		// A port without an address is unknown too, as in the JSON format.
		str("localAddress", r.local.addr)
		if r.local.port >= 0 && r.local.addr != "" {
			attrs = append(attrs, slog.Int("localPort", r.local.port))
		}
		str("remoteAddress", r.remote.addr)
		if r.remote.port >= 0 && r.remote.addr != "" {
			attrs = append(attrs, slog.Int("remotePort", r.remote.port))
		}
		str("side", r.side.String())
		str("network", r.network)
		attrs = append(attrs, slog.Int64("bytesRead", e.BytesRead), slog.Int64("bytesWritten", e.BytesWritten))
	}
	str("target", e.Target)
	if e.Message == MsgClose {
		attrs = append(attrs, slog.Bool("hadError", e.HadError))
	}
	if e.Request != 0 {
		attrs = append(attrs, slog.Uint64("request", e.Request))
	}
	if e.Status > 0 {
		attrs = append(attrs, slog.Int("status", e.Status))
	}
	str("protocol", e.Protocol)
	str("host", e.Host)
	str("addresses", e.Addrs)
	str("tls", e.TLS)
	for _, h := range e.Headers {
		attrs = append(attrs, slog.String("header."+h.Name, h.Value))
	}
	dur("dnsMs", e.DNS)
	dur("connectMs", e.Connect)
	dur("tlsMs", e.TLSTime)
	dur("ttfbMs", e.TTFB)
	dur("idleMs", e.Idle)
	dur("durationMs", e.Duration)
	str("closedBy", e.ClosedBy)
	str("op", e.Op)
	if e.Err != nil {
		kind, errno := Classify(e.Err)
		str("error", e.ErrorText())
		str("errorKind", kind)
		str("errno", errno)
	}
	if e.Dropped != 0 {
		attrs = append(attrs, slog.Uint64("dropped", e.Dropped))
	}
	// The event's own time, not the call's: an event may be emitted after
	// it happened (httpscope holds a request's events until the one before
	// it has returned), and the JSON format writes e.Time.
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	rec := slog.NewRecord(t, e.Level, e.Message, 0)
	rec.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, rec) // as LogAttrs: a handler's error goes nowhere
}

// MultiSink returns a sink that emits each event to every sink in turn. A
// sink that panics does not keep the event from the ones after it: once
// every sink had it, MultiSink panics again with the first panic's value,
// so that the Spy counts it (Stats.SinkPanics) as for a single sink.
func MultiSink(sinks ...Sink) Sink { return multiSink(sinks) }

type multiSink []Sink

func (m multiSink) Emit(e *Event) {
	var first any
	for _, s := range m {
		if v := emitRecovering(s, e); v != nil && first == nil {
			first = v
		}
	}
	if first != nil {
		panic(first)
	}
}

// emitRecovering emits e to s and returns what s panicked with, if it did.
func emitRecovering(s Sink, e *Event) (v any) {
	defer func() { v = recover() }()
	s.Emit(e)
	return nil
}
