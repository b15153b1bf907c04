package httpscope

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"golang.org/x/net/http2"

	"github.com/connscope/connscope"
)

// Options configure the HTTP instrumentation. The zero value works.
type Options struct {
	// LogHeaders names request headers to copy into "HTTP(S) Response"
	// and "HTTP(S) Error" events, such as X-Request-Id. Secret ones (Authorization, Cookie,
	// and names that look secret, see connscope.Redaction.IsSecret) are
	// written as "REDACTED".
	LogHeaders []string
}

// Transport is an http.RoundTripper that traces each request made through
// an instrumented *http.Transport.
type Transport struct {
	spy  *connscope.Spy
	base http.RoundTripper
	opts Options
}

// WrapTransport instruments t in place, so that the connections it dials
// are wrapped below TLS, and returns a RoundTripper over t that traces
// each request. Use the result as an http.Client's Transport. Call it
// once t is configured, before it is first used: setting DialContext
// would turn Go's automatic HTTP/2 off, so WrapTransport sets
// ForceAttemptHTTP2 exactly when t, as it is then, would have had HTTP/2
// on; that holds for t and its clones.
//
// A Transport with DialTLSContext (or DialTLS) set dials its TLS
// connections itself: those are traced per request but not wrapped,
// because wrapping a *tls.Conn would turn HTTP/2 off.
func WrapTransport(spy *connscope.Spy, t *http.Transport, opts *Options) *Transport {
	instrumentDial(spy, t)
	rt := &Transport{spy: spy, base: t}
	if opts != nil {
		rt.opts = *opts
	}
	return rt
}

// NewTransport returns a traced clone of http.DefaultTransport, or, if the
// program replaced http.DefaultTransport with another RoundTripper, a new
// *http.Transport with the standard library's default settings.
func NewTransport(spy *connscope.Spy, opts *Options) *Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return WrapTransport(spy, defaultTransport(), opts)
	}
	return WrapTransport(spy, t.Clone(), opts)
}

// defaultTransport has the settings of the standard library's
// http.DefaultTransport.
func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

// instrumentDial sets t.DialContext to a spied dialer and returns a
// function that puts t back as it was.
func instrumentDial(spy *connscope.Spy, t *http.Transport) (undo func()) {
	if spy == nil {
		return func() {}
	}
	oldDial, oldForce := t.DialContext, t.ForceAttemptHTTP2
	// Setting DialContext turns off HTTP/2's automatic enabling (see
	// http.Transport.ForceAttemptHTTP2); force it where it was on, so the
	// program negotiates what it negotiated before.
	if t.Protocols == nil && t.TLSNextProto == nil && t.TLSClientConfig == nil &&
		t.Dial == nil && t.DialContext == nil && t.DialTLS == nil && t.DialTLSContext == nil &&
		!strings.Contains(os.Getenv("GODEBUG"), "http2client=0") {
		t.ForceAttemptHTTP2 = true
	}
	base := t.DialContext
	if base == nil && t.Dial != nil {
		dial := t.Dial
		base = func(_ context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(network, addr)
			if c == nil && err == nil {
				// What net/http says of a faulty Dial when it calls it
				// itself; through DialContext it would name DialContext.
				err = errors.New("net/http: Transport.Dial hook returned (nil, nil)")
			}
			return c, err
		}
	}
	dial := spy.WrapDial(base)
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Name the request the dial is for in "Socket Connect". Only here,
		// not on every request: most requests reuse a connection.
		rt, ok := ctx.Value(reqTraceKey{}).(*reqTrace)
		var id connscope.ID
		var attempt int
		if ok {
			if connscope.TargetFromContext(ctx) == "" {
				ctx = connscope.ContextWithTarget(ctx, rt.target)
			}
			// So that the request's error can name a dial that fails.
			id = connscope.NewID()
			ctx = connscope.ContextWithDialID(ctx, id)
			rt.mu.Lock()
			attempt = rt.attempt
			rt.pendingDial = id
			rt.mu.Unlock()
		}
		c, err := dial(ctx, network, addr)
		if ok {
			rt.mu.Lock()
			if err != nil && rt.attempt == attempt { // not a dial an earlier attempt left running
				rt.failedDial = id
			}
			if rt.pendingDial == id {
				rt.pendingDial = connscope.ID{}
			}
			rt.mu.Unlock()
		}
		if r := connscope.RecordOf(c); err == nil && r != nil {
			// A pooled connection with no request yet: the dial's request
			// may take it, or, if it gave up, it waits in the pool.
			r.SetState(connscope.StateIdle)
			if h2cOnly(t) {
				markH2C(r)
			}
		}
		if ok && err == nil {
			// The TLS handshake that follows reports to this request's
			// trace, without saying on which connection: see
			// TLSHandshakeDone. And a proxy's CONNECT may fail on it: see
			// closedDial.
			if r := connscope.RecordOf(c); r != nil {
				d := dialed{rec: r, at: sinceEpoch(), attempt: attempt}
				rt.mu.Lock()
				rt.dialed = append(rt.dialed, d)
				rt.mu.Unlock()
			}
		}
		return c, err
	}
	return func() { t.DialContext, t.ForceAttemptHTTP2 = oldDial, oldForce }
}

// Unwrap returns the RoundTripper the requests go through.
func (t *Transport) Unwrap() http.RoundTripper { return t.next() }

// next is the RoundTripper the requests go through: the one given, or
// http.DefaultTransport as it is at each call (InstrumentDefault, or a
// zero Transport), as http.Client does for a nil Transport. A program
// that replaces http.DefaultTransport later, as test helpers do, is still
// obeyed.
func (t *Transport) next() http.RoundTripper {
	if t.base != nil {
		return t.base
	}
	if dt := http.DefaultTransport; dt != http.RoundTripper(t) {
		return dt
	}
	// A program that made this very Transport http.DefaultTransport:
	// what that replaced is gone, so the standard library's settings.
	return fallbackTransport()
}

var fallbackTransport = sync.OnceValue(func() http.RoundTripper { return defaultTransport() })

// CloseIdleConnections closes the base transport's idle connections.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next().(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req through the base transport with a fresh
// httptrace.ClientTrace (one per request: attaching one twice recurses),
// composed with any trace already in req's context.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	spy := t.spy
	if spy == nil || req.URL == nil {
		return t.next().RoundTrip(req) // and its error for a request without a URL
	}
	rt := &reqTrace{spy: spy, target: spy.Redaction.Target(req.Method, req.URL), start: sinceEpoch()}
	if len(t.opts.LogHeaders) > 0 {
		rt.headers = copyHeaders(spy, req.Header, t.opts.LogHeaders)
	}
	rt.setHooks(req.URL.Scheme == "https")
	rt.Context = req.Context()
	if key := clientTraceKey(); key == nil || httptrace.ContextClientTrace(rt.Context) != nil {
		// The caller traces too: httptrace composes the caller's hooks
		// into rt.ct, which Value then hands out as before.
		rt.Context = httptrace.WithClientTrace(rt.Context, &rt.ct)
	}
	rt.nobody = req.Body == nil || req.Body == http.NoBody
	next := t.next() // once: the request goes where the checks below looked
	if req.URL.Scheme == "http" {
		if bt, ok := next.(*http.Transport); ok {
			rt.h2c = h2cOnly(bt)
		} else {
			// A RoundTripper under this one sends through a transport we
			// cannot see (see multiplexed).
			rt.hidden = true
		}
	}
	sent := req.WithContext(rt)
	// Client.Timeout: see cancelBefore. Only over a transport that ends a
	// request at its context's deadline: any other RoundTripper under
	// this one gets Request.Cancel as it came, as http.Client gives it
	// without the spy, since it may honour nothing else.
	var clientTimer <-chan struct{}
	stopCancel := func() {}
	if req.Cancel != nil && endsAtDeadline(next, req) {
		if d, ok := rt.Context.Deadline(); ok {
			clientTimer = req.Cancel
			sent.Cancel, stopCancel = cancelBefore(req.Cancel, rt.Context.Done(), d)
		}
	}
	panicking := true
	defer func() {
		if panicking {
			rt.endPanicked()
			stopCancel()
		}
	}()
	resp, err := next.RoundTrip(sent)
	panicking = false
	now := time.Now() // one clock read for the event's time and the duration
	took := time.Duration(int64(now.Sub(epoch)) - rt.start)
	rt.mu.Lock()
	r, seq := rt.rec, rt.seq
	failedDial, pendingDial, reuseIdle := rt.failedDial, rt.pendingDial, rt.reuseIdle
	holding := rt.holding != nil // on r: see gotConn
	connless := rt.connless
	retried := r != nil && connless
	rt.holding, rt.over = nil, true
	rt.mu.Unlock()
	ttfb := time.Duration(rt.ttfb.Load())
	if err != nil {
		if retried {
			// A retry got no connection (its dial failed, or it gave up
			// waiting): the error is not r's, which carried an attempt
			// before. That attempt ends as gotConn ends one when the
			// retry gets a connection.
			rt.endAttempt(r, seq, holding)
			r, seq, holding, reuseIdle = nil, 0, false, 0
		}
		var id connscope.ID
		op := "request"
		if r == nil && connless {
			// Not after a GotConn with a connection the spy does not
			// see (one pooled before the transport was instrumented):
			// the request failed on it, not on a dial of its own, which
			// may still run.
			id = failedDial
			if id.IsZero() {
				id = rt.closedDial()
			}
			if id.IsZero() && !pendingDial.IsZero() {
				// It gave up while connecting: say so, the dial's own
				// event may come much later.
				id, op = pendingDial, "dial"
			}
		}
		emitReqError(spy, r, seq, connscope.Event{Time: now, Message: connscope.MsgRequestError, Conn: r, ID: id, Target: rt.target, Request: seq, Idle: reuseIdle,
			Headers: rt.headers, Duration: took, Op: op, Err: err}, holding)
		idle := rt.markReturned()
		switch {
		case r == nil:
		case idle:
			// net/http pooled the connection, then a RoundTripper under
			// this one failed the request (one that makes a 5xx an error).
			endReq(spy, r, seq, true, false)
		case (rt.h2c || rt.h2()) && streamFailed(r, err, rt.Context.Err() != nil || rt.bodyFailed(err)):
			endReq(spy, r, seq, true, true) // idle if it was the last stream
		default:
			endReq(spy, r, seq, false, false)
		}
		if clientTimer != nil {
			awaitClientTimer(rt.Context, clientTimer)
		}
		stopCancel()
		return resp, err
	}
	if resp == nil {
		// A faulty RoundTripper's: http.Client says so. The request is
		// over all the same.
		stopCancel()
		if holding {
			r.ReleaseEvents()
		}
		if idle := rt.markReturned(); r != nil {
			endReq(spy, r, seq, idle, false)
		}
		return resp, err
	}
	if resp.Request == sent {
		resp.Request = req // as if the trace had not been there
	}
	emitReq(spy, r, seq, connscope.Event{Time: now, Message: connscope.MsgResponse, Conn: r, Target: rt.target, Request: seq,
		Status: resp.StatusCode, Protocol: resp.Proto, Headers: rt.headers, TTFB: ttfb, Duration: took}, holding)
	if idle := rt.markReturned(); idle && r != nil { // nil: an unwrapped connection (DialTLSContext), pooled all the same
		endReq(spy, r, seq, true, false)
	}
	// The body is wrapped (in rt: no allocation) to report a read that
	// fails before its end: a backend that hangs or dies mid-body. Not a
	// 101's body, which is also the connection's writer and the caller's
	// now; nor an empty one (a HEAD's, a 204's): nothing more can fail, and
	// a program may compare it with http.NoBody; nor a body of a
	// RoundTripper under this one that is not net/http's (one it wraps,
	// one an *http.Transport hands a scheme to: see transportBody): it
	// may have methods of its own that a wrapper would hide. (Over an
	// HTTP/2 connection of ours, the body must be wrapped all the same:
	// its end is the request's.)
	wrap := resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols
	h2end := false
	// HTTP/1 reports the return to the pool through PutIdleConn; HTTP/2
	// never does, so there the end of the body marks the end of the request.
	if r != nil && resp.ProtoMajor == 2 {
		// A HEAD's or an empty response's stream ended with its headers:
		// its body is net/http's own empty one, which the caller need not
		// close.
		if !wrap || isH2NoBody(resp.Body) {
			endReq(spy, r, seq, true, true)
			wrap = false
		} else {
			h2end = true
		}
	} else if wrap {
		wrap = endsAtDeadline(next, req) && transportBody(resp.Body) && !isH2NoBody(resp.Body)
	}
	if wrap {
		b := &rt.body
		b.ReadCloser, b.rt, b.rec, b.seq, b.status, b.proto, b.h2end = resp.Body, rt, r, seq, int32(resp.StatusCode), resp.Proto, h2end
		if clientTimer != nil {
			b.timer, b.stop = clientTimer, stopCancel
		}
		resp.Body = b
	} else {
		stopCancel()
	}
	return resp, nil
}

// cancelBefore returns a channel closed when cancel closes before
// deadline, the request's context's, and stop, to call once the request
// is over.
//
// With Client.Timeout set, http.Client handles a RoundTripper that is not
// net/http's own the pre-context way: besides the context's deadline, it
// closes the deprecated Request.Cancel when the timeout fires. Passed on
// as it is, that channel races the deadline inside the transport, and the
// program gets "net/http: request canceled" where, without the spy, it
// gets "context deadline exceeded". At or after the deadline, the
// context's own end fails the request, as without the spy; before it,
// Cancel is the program's own (http.Client closes it when the program's
// Request.Cancel closes) and goes through.
//
// The goroutine ends with the request: stop. Neither of the others need
// come then: http.Client ends the context it made for its timeout, but
// when the program's own context has an earlier deadline it makes none,
// and only stops its timer (cancel is not closed). Without stop, each
// such request left a goroutine behind until that context ended.
func cancelBefore(cancel, done <-chan struct{}, deadline time.Time) (ch <-chan struct{}, stop func()) {
	c, over := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-cancel:
			if time.Now().Before(deadline) {
				close(c)
			}
		case <-done:
		case <-over:
		}
	}()
	return c, sync.OnceFunc(func() { close(over) })
}

// endsAtDeadline reports whether rt is a transport that http.Client
// takes for its own (as its knownRoundTripperImpl does), which ends a
// request at its context's deadline: net/http's, or golang.org/x/net's
// HTTP/2 one. Not an *http.Transport for a request of another scheme
// than http or https: it hands that to a RoundTripper registered with
// RegisterProtocol, which http.Client does not know and which may honour
// Request.Cancel only. (HTTP/2's own is the one registered for https.)
func endsAtDeadline(rt http.RoundTripper, req *http.Request) bool {
	if _, ok := rt.(*http.Transport); ok {
		return req.URL.Scheme == "http" || req.URL.Scheme == "https"
	}
	return rt != nil && reflect.TypeOf(rt).String() == "*http2.Transport"
}

// clientTimerWait bounds awaitClientTimer's wait: only a program that set
// both Client.Timeout and an earlier deadline of its own waits it all,
// once its own deadline failed the request.
const clientTimerWait = 25 * time.Millisecond

// awaitClientTimer waits, once ctx's deadline has passed, until timer (the
// Request.Cancel of http.Client, which it closes when its timeout fires)
// is closed. http.Client says "(Client.Timeout exceeded ...)" in the
// error only if its timer has fired by the time it sees the error; with
// its own transport it reads the clock instead, so the deadline's error
// cannot come first.
func awaitClientTimer(ctx context.Context, timer <-chan struct{}) {
	if ctx.Err() != context.DeadlineExceeded {
		return
	}
	select {
	case <-timer:
		return
	default:
	}
	t := time.NewTimer(clientTimerWait)
	defer t.Stop()
	select {
	case <-timer:
	case <-t.C:
	}
}

// endPanicked ends the request when a RoundTripper under this one panicked
// (a program may recover, as http.Server does for a handler): over HTTP/1
// its connection may be back in the pool already, and a request that
// takes it would wait behind this one for good (see held). Otherwise
// PutIdleConn, if it comes, ends it.
func (rt *reqTrace) endPanicked() {
	rt.mu.Lock()
	r, seq := rt.rec, rt.seq
	holding := rt.holding
	rt.holding, rt.over = nil, true
	rt.mu.Unlock()
	if holding != nil {
		holding.ReleaseEvents()
	}
	if rt.markReturned() && r != nil {
		endReq(rt.spy, r, seq, true, false)
	}
}

// markReturned notes that RoundTrip has returned and reports whether
// net/http pooled the connection before: the request ends now, not at a
// later PutIdleConn.
func (rt *reqTrace) markReturned() (idlePending bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.returned = true
	return rt.idlePending
}

// epoch anchors the request timings: time.Since on a monotonic time reads
// one clock, time.Now two.
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// reqTrace is one request's view of its connection. Its hooks run on the
// transport's goroutines, hence the mutex.
//
// It is also the request's context: the caller's, plus the ClientTrace
// under httptrace's key and itself under reqTraceKey. One allocation per
// request instead of a context.WithValue for each, and lookups in the
// transport (it asks for the trace several times per request) stop at the
// first link.
type reqTrace struct {
	context.Context                       // the caller's
	ct              httptrace.ClientTrace // here, not apart: one allocation less per request
	spy             *connscope.Spy
	target          string
	headers         []connscope.Header
	start           int64 // ns since epoch

	mu       sync.Mutex
	rec      *connscope.Record
	conn     net.Conn // the connection rec wraps, or its TLS
	seq      uint64
	tlsStart int64 // ns since epoch
	tlsTook  time.Duration
	dialed   []dialed // the connections dialed for this request: a retry dials again, maybe while the first one's handshake runs
	// How long the pooled connection the request took had sat idle: on
	// its "HTTP(S) Error" too, where a peer's idle timeout shows.
	reuseIdle time.Duration
	// The id of the last dial of the request's current attempt that
	// failed, or of the connection whose TLS handshake failed: the id of
	// its "HTTP(S) Error" if no connection carried it.
	failedDial connscope.ID
	// The id of the dial the request is waiting for, until it returns:
	// the id of its "HTTP(S) Error" if the request gives up first (its
	// deadline passes while the peer does not answer the SYN). The dial's
	// own event, a "Socket Timeout" or a late "Socket Connect", follows
	// with the same id. Zero when a GetConn (a retry) starts a new
	// attempt.
	pendingDial connscope.ID
	// The current attempt has no connection yet: set at GetConn, which
	// starts each attempt, cleared at GotConn. An error after a retry's
	// GetConn is not the connection's of the attempt before.
	connless bool
	attempt  int // GetConns so far: the attempt a dial is for

	// The error the transport reported as it wrote the request: see
	// bodyFailed.
	writeErr error

	body respBody // the response's body, when RoundTrip wraps it

	// Set by the transport's read and write loops without the mutex.
	wrote atomic.Int64 // when the request was written, in ns since epoch
	ttfb  atomic.Int64 // request written to first response byte, ns
	// A request without a body is written as soon as it has its
	// connection: when it got it (ns since epoch) stands in for its
	// WroteRequest, which HTTP/2 reports after the flush and so can come
	// after the answer.
	nobody bool
	// The connection whose own events the request holds until its last
	// event is out (see Record.HoldEvents): net/http may close it, or
	// the peer end it, before RoundTrip returns what came first. Set at
	// GotConn, with rec, unless over; taken when RoundTrip returns. Under
	// the mutex: a RoundTripper under this one that gives up on an attempt
	// leaves it running, and its GotConn may come after RoundTrip returned,
	// on another goroutine: such an attempt holds nothing, or nothing would
	// release it.
	holding *connscope.Record
	over    bool
	h2c     bool // the request goes over unencrypted HTTP/2
	hidden  bool // an http:// request whose transport a RoundTripper under this one hides: it may be h2c
	gotAt   atomic.Int64
	// A response without a body goes back to the pool before RoundTrip
	// returns, and so may one that a RoundTripper under this one read
	// before it failed the request: its "Socket Idle" waits for RoundTrip's
	// event.
	returned    bool
	idlePending bool
}

// dialed is a connection dialed for a request, and when the dial returned:
// its TLS handshake starts then.
type dialed struct {
	rec     *connscope.Record
	at      int64 // ns since epoch
	attempt int   // see reqTrace.attempt
}

// closedDial returns the id of the connection that the request's current
// attempt dialed and net/http closed without a request on it, the last
// one if several: one through a proxy that refused its CONNECT (or whose
// SOCKS handshake failed), which failed the request as a failed dial
// would. Zero if there is none.
func (rt *reqTrace) closedDial() connscope.ID {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var id connscope.ID
	var last time.Time
	for _, d := range rt.dialed {
		if at := d.rec.ClosedAt(); d.attempt == rt.attempt && !at.IsZero() && d.rec.Requests() == 0 && at.After(last) {
			id, last = d.rec.ID(), at
		}
	}
	return id
}

type reqTraceKey struct{}

func (rt *reqTrace) Value(key any) any {
	if key == (reqTraceKey{}) {
		return rt
	}
	if k := clientTraceKey(); k != nil && key == k {
		return &rt.ct
	}
	return rt.Context.Value(key)
}

// clientTraceKey is the key httptrace.ContextClientTrace looks up, which
// httptrace does not export: learnt by letting it look in a context that
// notes what it is asked for. Nil if that ever stops working; RoundTrip
// then uses httptrace.WithClientTrace.
var clientTraceKey = sync.OnceValue(func() any {
	var p keyProbe
	httptrace.ContextClientTrace(&p)
	return p.key
})

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any { p.key = key; return nil }

// setHooks sets the hooks of rt.ct.
func (rt *reqTrace) setHooks(https bool) {
	ct := &rt.ct
	*ct = httptrace.ClientTrace{
		GetConn: func(string) {
			rt.mu.Lock()
			rt.connless, rt.failedDial, rt.pendingDial = true, connscope.ID{}, connscope.ID{}
			rt.attempt++
			rt.mu.Unlock()
		},
		GotConn:      rt.gotConn,
		WroteRequest: rt.wroteRequest,
		GotFirstResponseByte: func() {
			w := rt.wrote.Load()
			if w == 0 && rt.nobody {
				w = rt.gotAt.Load()
			}
			if w != 0 {
				rt.ttfb.Store(sinceEpoch() - w)
			}
		},
		PutIdleConn: func(err error) {
			rt.mu.Lock()
			r, seq := rt.rec, rt.seq
			early := err == nil && !rt.returned
			rt.idlePending = early
			rt.mu.Unlock()
			if r != nil && !early {
				endReq(rt.spy, r, seq, err == nil, false) // not pooled on an error: it will close
			}
		},
	}
	if https { // each hook is an allocation: only what the request can use
		ct.TLSHandshakeStart = func() {
			rt.mu.Lock()
			rt.tlsStart = sinceEpoch()
			rt.mu.Unlock()
		}
		ct.TLSHandshakeDone = func(cs tls.ConnectionState, err error) {
			now := sinceEpoch()
			rt.mu.Lock()
			var r *connscope.Record
			var took time.Duration
			if err == nil {
				rt.tlsTook = time.Duration(now - rt.tlsStart)
			} else {
				// net/http closes a connection whose handshake failed just
				// before it calls this: of the dialed ones with no
				// handshake reported, the one closed last. Timed from its
				// own dial: another dial's handshake may have started
				// since.
				var last time.Time
				current := false
				for _, d := range rt.dialed {
					if at := d.rec.ClosedAt(); !at.IsZero() && !d.rec.TLSReported() && at.After(last) {
						r, took, last, current = d.rec, time.Duration(now-d.at), at, d.attempt == rt.attempt
					}
				}
				if r != nil && current {
					// The request gets no connection: its error names
					// the one whose handshake failed, as it names a
					// failed dial.
					rt.failedDial = r.ID()
				}
			}
			rt.mu.Unlock()
			// The connection closes without reaching a request: this is
			// the only place its failed handshake is seen. (A good one is
			// reported at GotConn, where the request and its sequence are
			// known.) Not when the program cancelled it: net/http cancels
			// the dials it no longer needs, and a caller that gives up
			// sees its own error.
			if err != nil && !errors.Is(err, context.Canceled) {
				rt.spy.TLSHandshake(r, &cs, took, err)
			}
		}
	}
}

func (rt *reqTrace) wroteRequest(info httptrace.WroteRequestInfo) {
	rt.wrote.Store(sinceEpoch())
	if info.Err != nil {
		rt.mu.Lock()
		rt.writeErr = info.Err
		rt.mu.Unlock()
	}
}

func (rt *reqTrace) gotConn(info httptrace.GotConnInfo) {
	// A retry gets a connection again, before its own write: forget the
	// failed attempt's times.
	rt.wrote.Store(0)
	rt.ttfb.Store(0)
	if rt.nobody {
		rt.gotAt.Store(sinceEpoch())
	}
	r := connscope.RecordOf(info.Conn)
	// Read without the mutex: rec is written only here, and GotConn runs
	// on the RoundTrip goroutine, attempt after attempt.
	prev := rt.rec
	// An HTTP/1 attempt that went back to the pool before RoundTrip
	// returned (an answer without a body, which a RoundTripper under this
	// one tries again) is over: it ends here, not at RoundTrip's return,
	// and its connection, even if it is this one again, has a new request.
	pooled := false
	rt.mu.Lock()
	if rt.conn != nil { // an attempt before this one
		pooled, rt.idlePending = rt.idlePending, false
	}
	rt.connless = false
	rt.mu.Unlock()
	if prev != nil {
		if prev == r && !pooled {
			// HTTP/2 retries a refused stream on the same connection:
			// still the same request there.
			return
		}
		rt.mu.Lock()
		holding := rt.holding
		rt.holding = nil
		rt.mu.Unlock()
		rt.endAttemptPooled(prev, rt.seq, pooled, holding != nil)
	}
	var seq uint64
	if r != nil { // nil: dialed by a DialTLSContext we do not wrap
		seq = r.BeginRequestActive(rt.target)
	}
	rt.mu.Lock()
	rt.rec, rt.conn, rt.seq, rt.reuseIdle = r, info.Conn, seq, info.IdleTime
	if r != nil && !rt.over { // see holding
		r.HoldEvents()
		rt.holding = r
	}
	tlsTook := rt.tlsTook
	rt.mu.Unlock()
	if r == nil {
		return
	}
	if info.Reused && r.InFlight() > 1 && !rt.multiplexed(info.Conn, r) {
		holdIfBehind(r, seq) // an HTTP/1 connection handed on before its last request returned
	}
	// A connection dialed for a request that gave up reaches its first
	// request from the pool, Reused: report its handshake then (without
	// a duration: another request's trace timed it).
	if tc, ok := info.Conn.(*tls.Conn); ok && (!info.Reused || !r.TLSReported()) {
		if info.Reused {
			tlsTook = 0
		}
		cs := tc.ConnectionState()
		rt.spy.TLSHandshake(r, &cs, tlsTook, nil)
	}
	if info.Reused {
		emitReq(rt.spy, r, seq, connscope.Event{Message: connscope.MsgReuse, Conn: r, Target: rt.target, Request: seq, Idle: info.IdleTime}, false)
	}
}

// endAttempt ends the request's attempt on prev, its connection until a
// retry that got none (see RoundTrip); holding says that the request
// holds prev's events.
func (rt *reqTrace) endAttempt(prev *connscope.Record, seq uint64, holding bool) {
	rt.mu.Lock()
	pooled := false
	if rt.conn != nil { // as in gotConn
		pooled, rt.idlePending = rt.idlePending, false
	}
	rt.mu.Unlock()
	rt.endAttemptPooled(prev, seq, pooled, holding)
}

// endAttemptPooled ends a failed attempt on prev, the request's
// connection until a retry. Its connection failed (HTTP/1 retries only
// then), or, over HTTP/2, could not open the stream (the server allows
// fewer at a time than the client thought): then, still pooled, it is
// idle if that was its last request. Or a RoundTripper under this one
// tries again after an answer: an HTTP/1 connection is then pooled
// (pooled), and another request may wait behind this one on it (see
// held), so it ends as HTTP/1.
func (rt *reqTrace) endAttemptPooled(prev *connscope.Record, seq uint64, pooled, holding bool) {
	rt.mu.Lock()
	mux := rt.multiplexed(rt.conn, prev)
	rt.mu.Unlock()
	if mux {
		pooled = !prev.Broken()
	}
	endReq(rt.spy, prev, seq, pooled, mux)
	if holding {
		// The attempt is over, with nothing to report before its
		// connection's events.
		prev.ReleaseEvents()
	}
}

// h2 reports whether the request went over HTTP/2 with TLS. (Unencrypted
// HTTP/2 cannot be told from HTTP/1 by its connection: see h2c.)
func (rt *reqTrace) h2() bool {
	rt.mu.Lock()
	c := rt.conn
	rt.mu.Unlock()
	tc, ok := c.(*tls.Conn)
	return ok && tc.ConnectionState().NegotiatedProtocol == "h2"
}

// multiplexed reports whether c, the request's connection (r's), carries
// requests side by side: HTTP/2. When a RoundTripper under this one hides
// the transport, an unencrypted connection carries HTTP/2 if a transport
// we wrapped dialed it for that.
func (rt *reqTrace) multiplexed(c net.Conn, r *connscope.Record) bool {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.ConnectionState().NegotiatedProtocol == "h2"
	}
	return rt.h2c || rt.hidden && isH2C(r)
}

// h2cOnly reports whether t uses unencrypted HTTP/2 for http:// URLs: its
// Protocols allow UnencryptedHTTP2 and not HTTP1.
func h2cOnly(t *http.Transport) bool {
	return t.Protocols != nil && t.Protocols.UnencryptedHTTP2() && !t.Protocols.HTTP1()
}

// h2cConns holds, as long as they live, the connections that a transport
// we wrapped dialed for unencrypted HTTP/2 (or for TLS under it, which
// multiplexed tells by itself).
var h2cConns sync.Map // weak.Pointer[connscope.Record] -> struct{}

func markH2C(r *connscope.Record) {
	k := weak.Make(r)
	h2cConns.Store(k, struct{}{})
	runtime.AddCleanup(r, func(k weak.Pointer[connscope.Record]) { h2cConns.Delete(k) }, k)
}

func isH2C(r *connscope.Record) bool {
	if r == nil {
		return false
	}
	_, ok := h2cConns.Load(weak.Make(r))
	return ok
}

// isH2NoBody reports whether body is the empty body net/http's HTTP/2
// client gives a response whose stream ended with its headers (a HEAD's,
// a 204's): the request is over, whether or not the caller closes it. A
// Content-Length of 0 does not say so: the stream may still be open. The
// type is not exported; if net/http renames it, such requests end at
// Close, as others do.
func isH2NoBody(body io.ReadCloser) bool {
	t := reflect.TypeOf(body)
	return t.PkgPath() == "net/http" && t.Name() == "http2noBodyReader"
}

// transportBody reports whether body is one of the response bodies of
// net/http's transports (or golang.org/x/net/http2's), which have no
// methods but Read and Close: not one of a RoundTripper that the
// *http.Transport under this one hands a scheme to (RegisterProtocol), as
// NewFileTransport's *io.PipeReader, which a program may assert.
func transportBody(body io.ReadCloser) bool {
	t := reflect.TypeOf(body)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.PkgPath() {
	case "net/http", "golang.org/x/net/http2":
		return true
	}
	return false
}

// bodyFailed reports whether err, the error of an HTTP/2 request or of
// its response's body, is the one with which the request's own body
// failed: HTTP/2 hands a body's Read error to WroteRequest, then resets
// the stream with it. Whatever it says: a body cut short fails with
// io.ErrUnexpectedEOF, as streams do when their connection is lost.
// (Known without wrapping the body, which would hide an *os.File from
// HTTP/1's sendfile.)
func (rt *reqTrace) bodyFailed(err error) bool {
	rt.mu.Lock()
	werr := rt.writeErr
	rt.mu.Unlock()
	return werr != nil && errors.Is(err, werr)
}

// streamFailed reports whether err, the error of an HTTP/2 request or of
// its body on connection r, is the stream's alone: the caller gave up, the
// server reset the stream, a timer of the transport's fired, the
// request's own body failed... HTTP/2 then resets the stream and keeps
// the connection in the pool (HTTP/1 closes it). Not when the connection
// failed: either r saw it (its peer's FIN or RST, an I/O error, a close)
// or the error says so. HTTP/2 reports a connection's failure to its
// streams before it closes it, so r may not have seen it yet. own says
// that err is known to be the stream's: its context ended, or its
// request's body failed.
func streamFailed(r *connscope.Record, err error, own bool) bool {
	if r.Broken() {
		return false
	}
	if own {
		return true
	}
	var se http2.StreamError // net/http's own converts to it (errors.As)
	if errors.As(err, &se) {
		return true
	}
	return !connFailed(err)
}

// connFailed reports whether err is one of the errors with which net/http's
// HTTP/2 client fails the streams of a connection it gives up on: lost
// (no answer to its PING), closed, a connection-level protocol error, a
// GOAWAY, or the connection's end of stream.
func connFailed(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ce http2.ConnectionError
	var ge http2.GoAwayError
	if errors.As(err, &ce) || errors.As(err, &ge) {
		return true // x/net's own transport; net/http's say so in their text
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "http2: client conn") || // "... is closed", "...ection lost", "...ection force closed"
		strings.HasPrefix(msg, "connection error: ") ||
		strings.Contains(msg, "GOAWAY")
}

// respBody is the body of a response RoundTrip returned. A read that
// fails before the end is reported, once, as the request's "HTTP(S)
// Error" with op "body": the answer began (status) and then the backend
// hung, reset or closed the connection, or the caller gave up. It comes
// after the connection's own event that caused it, the "Socket Error" or
// "Socket End" of the read that failed (over HTTP/2, the connection's
// read loop's, before it fails its streams); the connection's "Socket
// Close" may follow: net/http closes it once the body failed. A Close
// before the end is the program's choice, not a failure.
//
// Over HTTP/2 (h2end) the body's end, its EOF, failure or Close, also
// ends the request: net/http reports no PutIdleConn there.
//
// Under Client.Timeout (timer), a read that fails waits for http.Client's
// timer (see awaitClientTimer), and the request's end stops
// cancelBefore's goroutine.
type respBody struct {
	io.ReadCloser
	rt     *reqTrace         // whose body field this is
	rec    *connscope.Record // nil: a connection we do not wrap (DialTLSContext)
	seq    uint64
	proto  string
	timer  <-chan struct{}
	stop   func()
	status int32       // with the two below, in one word: rt is allocated per request
	done   atomic.Bool // EOF, failure or Close seen
	h2end  bool
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		if b.stop != nil {
			if err != io.EOF {
				awaitClientTimer(b.rt.Context, b.timer)
			}
			b.stop()
		}
		if b.done.CompareAndSwap(false, true) {
			b.end(err)
		}
	}
	return n, err
}

// Close before the end resets an HTTP/2 stream, whose connection stays
// pooled; HTTP/1 closes the connection. The body is done before the
// inner Close: a Read it makes fail meanwhile, on another goroutine
// ("http2: response body closed", a closed connection's error), is the
// program's choice too, not a failure.
func (b *respBody) Close() error {
	first := b.done.CompareAndSwap(false, true)
	err := b.ReadCloser.Close()
	if b.stop != nil {
		b.stop()
	}
	if first && b.h2end {
		b.end(nil)
	}
	return err
}

// end reports a failed read (err not nil or io.EOF) and, over HTTP/2,
// ends the request: the connection is idle unless it failed with the
// body (a connection lost mid-body).
func (b *respBody) end(err error) {
	rt := b.rt
	failed := err != nil && err != io.EOF
	if failed {
		emitAfterConn(rt.spy, b.rec, b.seq, connscope.Event{Message: connscope.MsgRequestError, Conn: b.rec, Target: rt.target, Request: b.seq,
			Status: int(b.status), Protocol: b.proto, Headers: rt.headers, Duration: time.Duration(sinceEpoch() - rt.start), Op: "body", Err: err})
	}
	if !b.h2end {
		return
	}
	idle := !b.rec.Broken()
	if failed {
		idle = streamFailed(b.rec, err, rt.bodyFailed(err))
	}
	endReq(rt.spy, b.rec, b.seq, idle, true)
}

func copyHeaders(spy *connscope.Spy, h http.Header, names []string) []connscope.Header {
	var out []connscope.Header
	for _, name := range names {
		v := h.Values(name)
		if len(v) == 0 {
			continue
		}
		val := strings.Join(v, ", ")
		if spy.Redaction.IsSecret(name) {
			val = connscope.Redacted
		}
		out = append(out, connscope.Header{Name: http.CanonicalHeaderKey(name), Value: val})
	}
	return out
}

// InstrumentDefault instruments the process-wide client defaults: the
// connections of http.DefaultTransport (so every client that uses it,
// http.Get and http.DefaultClient included, is seen at the connection
// level) and the requests of http.DefaultClient (so http.Get,
// http.Post, ... are traced per request). It is connection-spy's
// monkeyPatch. http.DefaultTransport stays an *http.Transport, so code
// that type-asserts it keeps working.
//
// Call it at start-up, before the defaults are used, and call undo to put
// them back. Clients built with their own http.Client but a nil Transport
// are seen at the connection level only; give them NewTransport for
// request tracing.
func InstrumentDefault(spy *connscope.Spy, opts *Options) (undo func()) {
	oldClientTransport := http.DefaultClient.Transport
	undoDial := func() {}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		undoDial = instrumentDial(spy, t)
	}
	rt := &Transport{spy: spy, base: oldClientTransport} // nil: http.DefaultTransport at each call
	if opts != nil {
		rt.opts = *opts
	}
	http.DefaultClient.Transport = rt
	var once sync.Once
	return func() {
		once.Do(func() {
			http.DefaultClient.Transport = oldClientTransport
			undoDial()
		})
	}
}
