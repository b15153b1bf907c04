package connscope

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultProducer is the producer field of events when Spy.Producer is empty.
const DefaultProducer = "connscope"

// A Spy instruments connections. Its zero value works: it keeps a Record
// per connection and sends events nowhere. Set Sink to see them. A nil
// *Spy instruments nothing: its wrappers return their argument unchanged.
//
// A Spy's fields must not change once it has wrapped a connection.
type Spy struct {
	// Sink receives every event. nil: events are not built at all.
	Sink Sink
	// Producer is written in each event's producer field (DefaultProducer if empty).
	Producer string
	// Hooks are called at points of a connection's life.
	Hooks Hooks
	// Redaction controls what of a URL may appear in an event's target.
	Redaction Redaction
	// ActivityTimes makes every Read and Write record its time, for
	// ConnInfo.SinceRead and SinceWrite. It costs one clock read per call
	// (about 25 ns on a cloud VM, twice the rest of the accounting), so it
	// is off by default; byte counts, request counts and the idle time of
	// pooled connections are kept either way.
	ActivityTimes bool

	opened     atomic.Int64
	open       atomic.Int64
	hookPanics atomic.Uint64
	sinkPanics atomic.Uint64
	notSpied   atomic.Uint64
}

// Hooks are optional callbacks, in the manner of httptrace.ClientTrace.
// Each runs on the goroutine that caused it, so it must be quick; a panic
// in a hook is recovered, counted (Stats.HookPanics) and reported as a
// "Hook Panic" event.
type Hooks struct {
	// ConnOpened is called when a connection is wrapped.
	ConnOpened func(r *Record)
	// ConnClosed is called once, after the connection's Close.
	ConnClosed func(r *Record)
	// Event is called for every event, before the sink. It must not keep e,
	// and must not wait for network I/O (see Sink). e.Err is the error as
	// the program got it: a hook that logs it writes e.ErrorText().
	Event func(e *Event)
}

// Stats are a Spy's counters.
type Stats struct {
	Opened     int64  // connections wrapped
	Open       int64  // of which not yet closed
	HookPanics uint64 // hook calls that panicked
	// SinkPanics counts events lost to a Sink whose Emit panicked (a
	// user's sink, or a slog handler behind NewSlogSink): recovered, so
	// that the program goes on, and not reported through that sink.
	SinkPanics uint64
	// NotSpied counts accepted connections left unwrapped: TLS ones
	// from a listener above TLS (see WrapListener).
	NotSpied uint64
}

// Stats returns the spy's counters (zero for a nil Spy).
func (s *Spy) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	return Stats{Opened: s.opened.Load(), Open: s.open.Load(), HookPanics: s.hookPanics.Load(), SinkPanics: s.sinkPanics.Load(),
		NotSpied: s.notSpied.Load()}
}

// Emit completes e (producer, time, level, byte counts) and hands it to the
// hooks and the sink. Packages that instrument protocols above the
// connection (httpscope) report through it. e is passed by value so that
// the caller's event stays on its stack; the sink sees a pooled copy.
func (s *Spy) Emit(e Event) {
	if !s.Enabled() {
		return
	}
	if ws, ok := s.Sink.(*WriterSink); ok && ws != nil && s.Hooks.Event == nil {
		// The common set-up: e stays on this stack, no pooled copy. (A nil
		// *WriterSink panics: it goes through emitSafe like any sink.)
		s.complete(&e)
		ws.Emit(&e)
		return
	}
	p := eventPool.Get().(*Event)
	*p = e
	s.complete(p)
	if h := s.Hooks.Event; h != nil {
		s.callHook("Event", func() { h(p) })
	}
	if s.Sink != nil {
		s.emitSafe(p)
	}
	*p = Event{} // drop references before pooling
	eventPool.Put(p)
}

// emitSafe hands e to the sink, recovering a panic: the sink may be the
// program's own (or a slog handler behind NewSlogSink), and it runs on the
// goroutine of the program's I/O. (A WriterSink's Emit does not panic;
// Spy.Emit calls it directly when no Event hook needs the pooled copy.)
func (s *Spy) emitSafe(e *Event) {
	defer func() {
		if v := recover(); v != nil {
			s.sinkPanics.Add(1)
		}
	}()
	s.Sink.Emit(e)
}

// complete fills in what every event carries: producer, time, level and
// the connection's byte counts.
func (s *Spy) complete(e *Event) {
	if e.Producer == "" {
		e.Producer = s.producer()
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Level = levelFor(e.Message, e.Err)
	e.redaction = &s.Redaction
	if r := e.Conn; r != nil {
		e.BytesRead, e.BytesWritten = r.bytesRead.Load(), r.bytesWritten.Load()
		if e.Level > slog.LevelDebug && r.side == Server && routineServerEnd(e, r) {
			e.Level = slog.LevelDebug
		}
	}
}

// routineServerEnd reports whether e, a failure on a server connection,
// is how a server's connections end in normal operation, which a log of
// warnings and errors must not fill with: the server's own idle timeout
// (a read deadline that passed while the connection sat idle between
// requests, with no byte of a next one: one that came with the request
// before, pipelined, is not seen), or a connection that ends without a
// byte either way, as a load balancer's TCP health check does.
func routineServerEnd(e *Event, r *Record) bool {
	switch e.Message {
	case MsgTimeout:
		return e.Op == "read" && r.State() == StateIdle && e.BytesRead == r.idleRead.Load()
	case MsgError, MsgTLS:
		if e.BytesRead != 0 || e.BytesWritten != 0 {
			return false
		}
		kind, _ := Classify(e.Err)
		return kind == KindEOF || kind == KindReset
	}
	return false
}

// eventPool holds the events handed to sinks, which must not keep them.
var eventPool = sync.Pool{New: func() any { return new(Event) }}

// Enabled reports whether events from s go anywhere (a sink or an Event
// hook), so that callers can skip work that only feeds events.
func (s *Spy) Enabled() bool {
	return s != nil && (s.Sink != nil || s.Hooks.Event != nil)
}

func (s *Spy) producer() string {
	if s.Producer != "" {
		return s.Producer
	}
	return DefaultProducer
}

// callHook runs f and turns a panic into a counted event, so that a buggy
// hook cannot take the instrumented program down.
func (s *Spy) callHook(name string, f func()) {
	defer func() {
		if v := recover(); v != nil {
			s.hookPanics.Add(1)
			if s.Sink != nil {
				s.emitSafe(&Event{
					Time: time.Now(), Level: levelFor(MsgHookPanic, nil), Message: MsgHookPanic,
					Producer: s.producer(), Op: name, Err: fmt.Errorf("connscope: hook %s panicked: %v", name, v),
					redaction: &s.Redaction,
				})
			}
		}
	}()
	f()
}

// WrapConn instruments c, a connection this program made on side, and
// reports it ("Socket Connect" for a client, "Socket Accept" for a server).
// It is connection-spy's spyNewSocket. A connection that is already
// wrapped is returned as is.
//
// The result has the optional methods of c, delegated to c's, so that
// sendfile, splice, half-close and socket options set through an
// interface keep working: io.ReaderFrom, io.WriterTo, CloseWrite,
// CloseRead, SyscallConn, net.PacketConn, SetReadBuffer, SetWriteBuffer,
// File and, when c has all the others a *net.TCPConn has, SetNoDelay,
// SetKeepAlive, SetKeepAlivePeriod, SetKeepAliveConfig, SetLinger and
// MultipathTCP. It also has NetConn and Unwrap, which return c. What goes
// through the duplicate descriptor File returns the spy does not see, as
// with SyscallConn.
func (s *Spy) WrapConn(c net.Conn, side Side) net.Conn {
	if s == nil || c == nil || RecordOf(c) != nil {
		return c
	}
	r, w := s.wrap(c, side, NewID())
	msg := MsgConnect
	if side == Server {
		msg = MsgAccept
	}
	s.Emit(Event{Message: msg, Conn: r})
	return w
}

func (s *Spy) wrap(c net.Conn, side Side, id ID) (*Record, net.Conn) {
	r := &Record{
		id:      id,
		spy:     s,
		side:    side,
		network: networkOf(c),
		local:   endpointOf(c.LocalAddr()),
		remote:  endpointOf(c.RemoteAddr()),
		opened:  time.Now(),
		clock:   s.ActivityTimes,
	}
	r.openNs = monoNow()
	s.opened.Add(1)
	s.open.Add(1)
	if h := s.Hooks.ConnOpened; h != nil {
		s.callHook("ConnOpened", func() { h(r) })
	}
	return r, newConn(c, r)
}

func networkOf(c net.Conn) string {
	if a := c.LocalAddr(); a != nil {
		return a.Network()
	}
	return ""
}

// DialFunc is the signature of net.Dialer.DialContext and of
// http.Transport.DialContext.
type DialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

// WrapDial returns a DialFunc that dials with dial (a zero net.Dialer's
// DialContext when nil) and instruments what it returns. It reports the
// name lookup ("DNS Lookup"), the connection ("Socket Connect", with DNS
// and connect durations and the target of the request that caused the
// dial, see ContextWithTarget) and a failed dial ("Socket Error", op
// "dial"; "Socket Timeout" for one whose deadline passed; info level for
// one its context cancelled). Errors are returned unchanged. A dial wrapped twice (a wrapped
// dialer given to WrapDial again) is reported once, by the outer wrapper.
func (s *Spy) WrapDial(dial DialFunc) DialFunc {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if s == nil {
		return dial
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if k, ok := ctx.Value(wrapDialKey{}).(dialKey); ok && k == (dialKey{network, address}) {
			// A dial wrapped twice: the outer wrapper reports it, once.
			// (Another dial made while dialing, such as the resolver's
			// to its DNS server, is a connection of its own.)
			return dial(ctx, network, address)
		}
		ctx = context.WithValue(ctx, wrapDialKey{}, dialKey{network, address})
		id, _ := ctx.Value(dialIDKey{}).(ID)
		if id.IsZero() {
			id = NewID()
		} else {
			// The id is this dial's alone: a spied dial made while
			// dialing (the resolver's) is a connection of its own.
			ctx = context.WithValue(ctx, dialIDKey{}, ID{})
		}
		target := TargetFromContext(ctx)
		var dt dialTiming
		if s.Sink != nil || s.Hooks.Event != nil {
			ctx = httptrace.WithClientTrace(ctx, dt.trace(s, id, target))
		}
		c, err := dial(ctx, network, address)
		if err != nil {
			// A dial that ran out of time is a timeout, as a read's is:
			// the peer may be behind a firewall that drops the SYN.
			msg := MsgError
			if kind, _ := Classify(err); kind == KindDeadline || kind == KindTimeout {
				msg = MsgTimeout
			}
			s.Emit(Event{Message: msg, ID: id, Target: target, Host: hostWithoutUserinfo(address), Op: "dial", Err: err,
				DNS: dt.dns, Connect: dt.sinceConnect()})
			return c, err
		}
		if c == nil || RecordOf(c) != nil {
			// A dialer that wraps its connections itself; or a faulty one,
			// with neither a connection nor an error, which the caller
			// reports (net/http fails the request): nothing to wrap.
			return c, nil
		}
		r, w := s.wrap(c, Client, id)
		if target != "" {
			r.target.Store(&target)
		}
		s.Emit(Event{Message: MsgConnect, Conn: r, Target: target, DNS: dt.dns, Connect: dt.sinceConnect()})
		return w, nil
	}
}

// wrapDialKey marks a dial already instrumented by an outer WrapDial;
// its value is the dialKey of that dial.
type wrapDialKey struct{}

type dialKey struct{ network, address string }

// dialTiming collects one dial's name lookup and connect times through the
// hooks that net.Dialer honours in its context.
type dialTiming struct {
	dnsStart     time.Time
	dnsHost      string // the name looked up: the proxy's, when dialing through one
	dns          time.Duration
	connectStart atomic.Int64 // unix ns of the first attempt: Happy Eyeballs runs several
}

func (dt *dialTiming) trace(s *Spy, id ID, target string) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(info httptrace.DNSStartInfo) { dt.dnsStart, dt.dnsHost = time.Now(), info.Host },
		DNSDone: func(info httptrace.DNSDoneInfo) {
			dt.dns = time.Since(dt.dnsStart)
			addrs := make([]string, len(info.Addrs))
			for i, a := range info.Addrs {
				addrs[i] = a.String()
			}
			s.Emit(Event{Message: MsgDNS, ID: id, Target: target, Host: hostWithoutUserinfo(dt.dnsHost), DNS: dt.dns,
				Addrs: strings.Join(addrs, ","), Op: "dns", Err: info.Err})
		},
		ConnectStart: func(network, addr string) {
			dt.connectStart.CompareAndSwap(0, time.Now().UnixNano())
		},
	}
}

func (dt *dialTiming) sinceConnect() time.Duration {
	if t := dt.connectStart.Load(); t != 0 {
		return time.Duration(time.Now().UnixNano() - t)
	}
	return 0
}

// WrapListener returns a listener whose accepted connections are
// instrumented (side Server) and reported as "Socket Accept". Errors from
// Accept are returned unchanged. Serve HTTP with TLS over it
// (http.Server.ServeTLS, tls.NewListener): the spy then sits below TLS and
// HTTP/2 still works.
//
// A listener that already speaks TLS (one from tls.NewListener or
// tls.Listen) hands out *tls.Conn, which servers recognise by its type:
// net/http negotiates HTTP/2 for a *tls.Conn, and sets Request.TLS for it
// or for any connection with a ConnectionState method (a program's own
// type around a *tls.Conn), which a wrapper would hide. Those connections
// are returned unwrapped, so the program serves as before, but unseen:
// they are counted (Stats.NotSpied) and the first is reported as "Socket
// Not Spied", a warning that says how to wrap below TLS instead.
func (s *Spy) WrapListener(ln net.Listener) net.Listener {
	if s == nil || ln == nil {
		return ln
	}
	l := &listener{Listener: ln, spy: s}
	// Keep the inner listener's optional methods, as newConn does for
	// connections: a shutdown loop that bounds Accept with SetDeadline, or
	// code that tunes the socket, must find them.
	_, dl := ln.(interface{ SetDeadline(time.Time) error })
	_, sc := ln.(syscall.Conn)
	_, fi := ln.(interface{ File() (*os.File, error) })
	switch {
	case dl && sc && fi:
		return &struct {
			*listener
			lnDeadline
			lnSyscall
			lnFile
		}{l, lnDeadline{ln}, lnSyscall{ln}, lnFile{ln}}
	case dl && sc:
		return &struct {
			*listener
			lnDeadline
			lnSyscall
		}{l, lnDeadline{ln}, lnSyscall{ln}}
	case dl && fi:
		return &struct {
			*listener
			lnDeadline
			lnFile
		}{l, lnDeadline{ln}, lnFile{ln}}
	case sc && fi:
		return &struct {
			*listener
			lnSyscall
			lnFile
		}{l, lnSyscall{ln}, lnFile{ln}}
	case dl:
		return &struct {
			*listener
			lnDeadline
		}{l, lnDeadline{ln}}
	case sc:
		return &struct {
			*listener
			lnSyscall
		}{l, lnSyscall{ln}}
	case fi:
		return &struct {
			*listener
			lnFile
		}{l, lnFile{ln}}
	}
	return l
}

type listener struct {
	net.Listener
	spy    *Spy
	warned atomic.Bool // "Socket Not Spied" reported
}

// The optional methods of a listener (*net.TCPListener and
// *net.UnixListener have all three).
type (
	lnDeadline struct{ ln net.Listener }
	lnSyscall  struct{ ln net.Listener }
	lnFile     struct{ ln net.Listener }
)

func (x lnDeadline) SetDeadline(t time.Time) error {
	return x.ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(t)
}
func (x lnSyscall) SyscallConn() (syscall.RawConn, error) { return x.ln.(syscall.Conn).SyscallConn() }
func (x lnFile) File() (*os.File, error)                  { return x.ln.(interface{ File() (*os.File, error) }).File() }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if _, ok := c.(tlsConn); ok {
		l.spy.notSpied.Add(1)
		if l.warned.CompareAndSwap(false, true) {
			l.spy.Emit(Event{Message: MsgNotSpied, Op: "accept", Err: fmt.Errorf(
				"connscope: listener %v hands out TLS connections (%T), which the spy leaves unwrapped (HTTP/2 and Request.TLS need them as they are): wrap the listener under TLS, as in srv.ServeTLS(spy.WrapListener(ln), cert, key), to see its connections",
				l.Listener.Addr(), c)})
		}
		return c, nil
	}
	return l.spy.WrapConn(c, Server), nil
}

// Unwrap returns the listener that was wrapped.
func (l *listener) Unwrap() net.Listener { return l.Listener }

// tlsConn is what net/http takes for a TLS connection: *tls.Conn has it,
// and so may a program's own connection type (net/http's connectionStater).
type tlsConn interface {
	ConnectionState() tls.ConnectionState
}

// TLSHandshake reports a completed (or failed) TLS handshake on r, once
// per connection, with its version and negotiated protocol.
func (s *Spy) TLSHandshake(r *Record, cs *tls.ConnectionState, took time.Duration, err error) {
	if s == nil || r == nil || !r.setFlag(flagTLS) {
		return
	}
	e := Event{Message: MsgTLS, Conn: r, TLSTime: took, Op: "tls", Err: err}
	if t := r.target.Load(); t != nil {
		e.Target = *t
	}
	if cs != nil && cs.Version != 0 {
		e.TLS = tls.VersionName(cs.Version)
		if cs.NegotiatedProtocol != "" {
			e.TLS += " " + cs.NegotiatedProtocol
		}
		if cs.DidResume {
			e.TLS += " resumed"
		}
	}
	s.Emit(e)
}

type targetKey struct{}

// ContextWithTarget returns a context that carries target, the request a
// dial is made for ("GET https://host:443/path"), so that WrapDial can
// name it in "Socket Connect". httpscope sets it; target must already be
// redacted (see Redaction.Target).
func ContextWithTarget(ctx context.Context, target string) context.Context {
	return context.WithValue(ctx, targetKey{}, target)
}

// ContextWithDialID returns a context whose dial through WrapDial takes id,
// instead of a new one, for its connection or for the event of its
// failure: so that the caller, knowing the id, can name that dial in
// events of its own. httpscope ties a request's "HTTP(S) Error" to the
// dial that failed it this way. Each dial needs a context of its own: two
// connections must not share an id. (A spied dial made while this one
// runs, such as its resolver's, gets an id of its own.)
func ContextWithDialID(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, dialIDKey{}, id)
}

type dialIDKey struct{}

// TargetFromContext returns the target set by ContextWithTarget, or "".
func TargetFromContext(ctx context.Context) string {
	t, _ := ctx.Value(targetKey{}).(string)
	return t
}
