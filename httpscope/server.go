package httpscope

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/h2c"

	"github.com/connscope/connscope"
)

type recordKey struct{}

// InstrumentServer instruments srv in place: its ConnState and
// ConnContext are chained (the ones already set still run) and its
// Handler is wrapped to report each request ("HTTP(S) Response", side
// server, with status and duration) and count it on its connection. Idle
// connections are reported as "Socket Idle", hijacked ones as "Socket
// Hijack" (and, since the connection layer still holds them, "Socket
// Close" when the handler closes them). Over TLS, each connection's
// handshake is reported as "TLS Handshake" when the connection first
// becomes active: its first request, or an HTTP/2 client's preface. A
// failed one (a client that does not trust the certificate, or speaks
// plain HTTP) is reported with its error when net/http reports the
// connection closed: after its "Socket Close". Call it before srv starts.
//
// Over HTTP/1, a call that net/http's writer would only log with its
// caller (a superfluous WriteHeader; a WriteHeader or Write after a
// hijack) is logged by the wrapper instead, in net/http's words, so that
// the ErrorLog names the handler's line, not the wrapper's.
//
// An "OPTIONS *" request, which net/http answers itself without the
// Handler (unless srv.DisableGeneralOptionsHandler), is not seen: no
// "HTTP(S) Response", not counted, and no "Socket Idle" after it.
//
// A Handler made by golang.org/x/net/http2/h2c's NewHandler serves the
// requests of unencrypted HTTP/2 connections itself, after a hijack: its
// own handler is wrapped (in a copy), so that they are seen too. The
// request that upgrades a connection is answered over HTTP/2, and so
// reported, though its handler sees HTTP/1.1.
//
// The connections themselves are seen only if the listener is wrapped:
//
//	srv.Serve(spy.WrapListener(ln))   // or srv.ServeTLS(spy.WrapListener(ln), cert, key)
func InstrumentServer(spy *connscope.Spy, srv *http.Server, opts *Options) {
	if spy == nil {
		return // a nil Spy instruments nothing, as in package connscope
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	userConnContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if userConnContext != nil {
			ctx = userConnContext(ctx, c)
			if ctx == nil {
				// The program's bug: net/http panics with "ConnContext
				// returned nil", not context.WithValue below with its own.
				return nil
			}
		}
		if r := connscope.RecordOf(c); r != nil {
			ctx = context.WithValue(ctx, recordKey{}, r)
		}
		return ctx
	}
	// The records of connections that h2c is upgrading from HTTP/1, each
	// with whether it has hijacked it yet (*atomic.Bool).
	upgrades := new(sync.Map)
	// The request count (*atomic.Uint64) of each connection when it last
	// went back idle: see backIdle.
	idleAt := new(sync.Map)
	// The records of HTTP/1 connections hijacked while a handler of ours
	// ran on them, until it returns: see respWriter.isHijacked.
	hijacks := new(sync.Map)
	userConnState := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		if r := recordOf(c); r != nil {
			switch state {
			case http.StateActive:
				if tc, ok := c.(*tls.Conn); ok && !r.TLSReported() {
					// The server's handshake is done before the first
					// request is read. (Its duration is not known here.)
					cs := tc.ConnectionState()
					spy.TLSHandshake(r, &cs, 0, nil)
				}
				r.SetState(connscope.StateActive)
			case http.StateIdle:
				// An HTTP/2 server whose connection is lost (or that its
				// own Close cut) closes the streams still open, then
				// reports the connection idle just before it closes it:
				// not idle between requests.
				if r.InFlight() > 0 && r.Broken() {
					break
				}
				// h2c serves an upgrade's request as stream 1 before it
				// reads the client's preface, at which the HTTP/2 server
				// reports the connection idle: with stream 1 in flight.
				if _, ok := upgrades.LoadAndDelete(r); ok {
					break
				}
				r.SetState(connscope.StateIdle)
				if backIdle(idleAt, r) {
					spy.Emit(connscope.Event{Message: connscope.MsgIdle, Conn: r})
				}
			case http.StateClosed:
				idleAt.Delete(r)
				// net/http reports a connection whose handshake failed
				// only to its ErrorLog, then closes it: the error is the
				// handshake's, which crypto/tls keeps and hands back
				// without running it again. (StateClosed comes from the
				// connection's goroutine after its handshake returned or
				// panicked: handshakeFailed tells which.)
				if tc, ok := c.(*tls.Conn); ok && !r.TLSReported() && handshakeFailed(tc) {
					// Not when the server's own Close cut it short.
					if err := tc.Handshake(); err != nil && !errors.Is(err, net.ErrClosed) {
						cs := tc.ConnectionState()
						spy.TLSHandshake(r, &cs, 0, err)
					}
				}
			case http.StateHijacked:
				// ConnState never reports StateClosed after a hijack; the
				// connection wrapper reports the close.
				idleAt.Delete(r)
				if v, ok := upgrades.Load(r); ok {
					v.(*atomic.Bool).Store(true) // h2c took it over
				}
				// Only a handler of ours forgets it: not h2c's hijack,
				// made with no request of ours in flight.
				if r.InFlight() > 0 {
					hijacks.Store(r, struct{}{})
				}
				r.SetState(connscope.StateHijacked)
				spy.Emit(connscope.Event{Message: connscope.MsgHijack, Conn: r})
			}
		}
		if userConnState != nil {
			userConnState(c, state)
		}
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	wrap := func(h http.Handler) *handler { return &handler{spy: spy, next: h, opts: o, hijacks: hijacks} }
	if c := h2cWith(h, func(h http.Handler) http.Handler { w := wrap(h); w.h2c = true; return w }); c != nil {
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			// The HTTP/2 server's first ConnState(StateIdle) on a
			// connection h2c upgrades is the preface's (see above).
			// ServeHTTP returns when a connection h2c takes over (an
			// upgrade, or "PRI *": prior knowledge) ends, which net/http
			// does not report after the hijack: idleAt forgets it then.
			if r, _ := req.Context().Value(recordKey{}).(*connscope.Record); r != nil {
				var taken *atomic.Bool
				if isH2CUpgrade(req.Header) {
					taken = new(atomic.Bool)
					upgrades.Store(r, taken)
					defer upgrades.Delete(r)
				}
				if taken != nil || req.Method == "PRI" {
					defer func() {
						// Not after an upgrade h2c refused (its own 500, no
						// hijack): the connection goes on as HTTP/1, and
						// its count must stay, or the next idle would be
						// "back" idle with no request since.
						if taken == nil || taken.Load() {
							idleAt.Delete(r)
						}
					}()
				}
			}
			c.ServeHTTP(w, req)
		})
		return
	}
	srv.Handler = wrap(h)
}

// backIdle reports whether r's connection counted a request since it last
// went back idle (idleAt holds its count then). ConnState also reports a
// connection active, then idle, around an HTTP/2 client's preface, and
// around an "OPTIONS *" that net/http answers itself, without the
// Handler: neither is "back" idle. That request is not reported: telling
// it from ConnState would be a guess (an HTTP/2 stream reset before its
// handler ran looks the same), and answering it in the Handler would mean
// setting the program's DisableGeneralOptionsHandler.
func backIdle(idleAt *sync.Map, r *connscope.Record) bool {
	n := r.Requests()
	if n == 0 {
		return false
	}
	v, ok := idleAt.Load(r)
	if !ok {
		v, _ = idleAt.LoadOrStore(r, new(atomic.Uint64))
	}
	return v.(*atomic.Uint64).Swap(n) < n
}

// handshakeFailed reports whether tc keeps the error of a handshake that
// returned one, which Handshake then hands back. Not after a handshake
// that panicked (in a callback of the program's, recovered by net/http):
// none is kept, and Handshake would run another on what the connection
// has buffered, calling that callback again.
func handshakeFailed(tc *tls.Conn) bool {
	f := reflect.ValueOf(tc).Elem().FieldByName("handshakeErr")
	return f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil()
}

// recordOf is connscope.RecordOf, also through the connection
// golang.org/x/net/http2/h2c gives the HTTP/2 server that reports its
// states when it read more than the client's preface with it (a struct
// of its own around the hijacked connection).
func recordOf(c net.Conn) *connscope.Record {
	if r := connscope.RecordOf(c); r != nil {
		return r
	}
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Type().Elem().PkgPath() != h2cPkg {
		return nil
	}
	if f := v.Elem().FieldByName("Conn"); f.IsValid() {
		if inner, ok := f.Interface().(net.Conn); ok {
			return connscope.RecordOf(inner)
		}
	}
	return nil
}

// isH2CUpgrade is golang.org/x/net/http2/h2c's test for a request that
// upgrades its connection to HTTP/2.
func isH2CUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Upgrade"], "h2c") &&
		httpguts.HeaderValuesContainsToken(h["Connection"], "HTTP2-Settings")
}

// h2cType is the type of golang.org/x/net/http2/h2c's handler, a pointer
// to a struct of its package.
var (
	h2cType = reflect.TypeOf(h2c.NewHandler(nil, nil))
	h2cPkg  = h2cType.Elem().PkgPath()
)

// h2cWith returns, if h is golang.org/x/net/http2/h2c's handler, a copy of
// it whose handler is wrap of its own; otherwise nil. It takes unencrypted
// HTTP/2 connections over from the server (a hijack) and serves their
// requests with its handler: around it, wrap would see none of them. (The
// program's h is left as it was.)
func h2cWith(h http.Handler, wrap func(http.Handler) http.Handler) http.Handler {
	v := reflect.ValueOf(h)
	if v.Type() != h2cType || v.IsNil() {
		return nil
	}
	c := reflect.New(h2cType.Elem())
	c.Elem().Set(v.Elem())
	f := c.Elem().FieldByName("Handler")
	if !f.IsValid() || !f.CanSet() {
		return nil // not the h2c this was written for: wrapped around, as any handler
	}
	next, _ := f.Interface().(http.Handler)
	if next == nil {
		return nil // it fails on every request: wrapped around, as any handler
	}
	f.Set(reflect.ValueOf(wrap(next)))
	return c.Interface().(http.Handler)
}

// withoutFragment drops from u, req's URL, the fragment the client sent
// in its request target ("/cb#access_token=..."): clients must not send
// one (RFC 9112, section 3.2), and net/http, which does not split it off,
// leaves it in the path or the query, where a target would show it.
func withoutFragment(u *url.URL, req *http.Request) {
	raw, _, _ := strings.Cut(req.RequestURI, "#")
	if req.Method == "CONNECT" && !strings.HasPrefix(raw, "/") {
		raw = "http://" + raw // authority-form, parsed as net/http does
	}
	if p, err := url.ParseRequestURI(raw); err == nil {
		u.Path, u.RawPath, u.RawQuery, u.ForceQuery = p.Path, p.RawPath, p.RawQuery, p.ForceQuery
		return
	}
	u.Path, u.RawPath, u.RawQuery, u.ForceQuery = "", "", "", false
}

// errHandlerPanicked marks the response of a handler that panicked (or
// called panic(http.ErrAbortHandler)): the server aborted it.
var errHandlerPanicked = errors.New("httpscope: the handler panicked; the response was aborted")

type handler struct {
	spy     *connscope.Spy
	next    http.Handler
	opts    Options
	hijacks *sync.Map // see InstrumentServer
	h2c     bool      // the handler of golang.org/x/net/http2/h2c's: see ServeHTTP
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	spy := h.spy
	r, _ := req.Context().Value(recordKey{}).(*connscope.Record)
	u := *req.URL
	u.Host = req.Host
	u.Scheme = "http"
	if req.TLS != nil {
		u.Scheme = "https"
	}
	if strings.IndexByte(req.RequestURI, '#') >= 0 {
		withoutFragment(&u, req)
	}
	target := spy.Redaction.Target(req.Method, &u)
	var seq uint64
	if r != nil {
		seq = r.BeginRequest(target)
	}
	// Before the handler, which may change req.Header (middleware that
	// sets a missing X-Request-Id): the event logs what the client sent.
	var headers []connscope.Header
	if len(h.opts.LogHeaders) > 0 {
		headers = copyHeaders(spy, req.Header, h.opts.LogHeaders)
	}
	start := time.Now()
	// The protocol the response goes out in. h2c hands the HTTP/1.1
	// request that upgraded its connection to its HTTP/2 server as it came
	// (Proto and all), which answers it as stream 1, after the 101. (It
	// upgrades, or fails, every request that asks: none of those reaches
	// its handler over HTTP/1.)
	proto, h1 := req.Proto, req.ProtoMajor == 1
	if h.h2c && h1 && isH2CUpgrade(req.Header) {
		proto, h1 = "HTTP/2.0", false
	}
	rw := &respWriter{ResponseWriter: w}
	if h1 {
		rw.h1, rw.hijacks = r, h.hijacks // nil if the listener is not wrapped
		rw.ctx = req.Context()
	}
	returned := false
	// Deferred, so that a handler's panic is reported too; it is not
	// recovered: net/http does that, as it would without the spy.
	defer func() {
		if r != nil {
			r.EndRequest()
		}
		if rw.isHijacked() && rw.h1 != nil {
			h.hijacks.Delete(r)
		}
		e := connscope.Event{Message: connscope.MsgResponse, Conn: r, Target: target, Request: seq,
			Status: rw.status, Protocol: proto, Headers: headers, Duration: time.Since(start)}
		switch {
		case !returned:
			// The server aborts the response: no status for what was not sent.
			e.Op, e.Err = "handler", errHandlerPanicked
			if !rw.sent() {
				e.Status = 0
			}
		// A handler that hijacked answered on the connection itself,
		// unseen: no status but one it set before (see setStatus).
		case e.Status == 0 && !rw.hijacked:
			e.Status = http.StatusOK // the server writes 200 for a handler that wrote nothing
		}
		spy.Emit(e)
	}()
	h.next.ServeHTTP(wrapWriter(rw), req)
	returned = true
}

// respWriter records the status. The variants below add exactly the
// optional interfaces of the standard library's writers, so that
// sendfile (io.ReaderFrom), Flush, Hijack and Push keep working.
type respWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	flushed  bool              // Flush was called, or FlushError returned nil
	h1       *connscope.Record // HTTP/1 only: see sent
	written  int64             // h1.BytesWritten() when the status was set
	hijacks  *sync.Map         // with h1: see isHijacked
	// HTTP/1 only: the request's context (its server, for misused), and
	// whether the server's writer has written the header, as far as
	// calls through w say (see misused).
	ctx         context.Context
	wroteHeader bool
}

// setStatus records the final status the handler chose. Not after a
// hijack: net/http then sends nothing more through w (a status set before
// goes out as it hijacks).
func (w *respWriter) setStatus(code int) {
	if w.isHijacked() {
		return
	}
	w.status = code
	if w.h1 != nil {
		w.written = w.h1.BytesWritten()
	}
}

// sent reports whether the response header is known to have reached the
// connection, for a handler that panicked: net/http then drops what it
// still buffers, so a status set is not a status sent. Signals: a flush,
// or a hijack (which flushes the header); over HTTP/1, which carries one
// request at a time, also any byte written to the connection since the
// status was set (1xx responses and "100 Continue" go out before it), which
// covers ReadFrom's sendfile path (a short ReadFrom only buffers). Over
// HTTP/2 the bytes may be other streams'. Not seen: a header net/http
// still holds in the connection's buffer and writes as it closes it.
func (w *respWriter) sent() bool {
	if w.status == 0 {
		return false
	}
	return w.flushed || w.hijacked || w.h1 != nil && w.h1.BytesWritten() > w.written
}

func (w *respWriter) WriteHeader(code int) {
	if w.misused("WriteHeader", true) {
		return
	}
	// net/http sends 1xx responses at once, except 101 Switching
	// Protocols, which is final.
	final := code >= 200 || code == http.StatusSwitchingProtocols
	if w.status == 0 && final {
		w.setStatus(code)
	}
	w.ResponseWriter.WriteHeader(code) // panics on a code net/http refuses
	if final {
		w.wroteHeader = true
	}
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.misused("Write", len(b) > 0) {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.setStatus(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.wroteHeader = true // the server's writer writes it first
	return n, err
}

// misused reports whether a call of method on net/http's HTTP/1 writer
// would only have net/http log it and return: a WriteHeader once the
// header is written, or a WriteHeader or Write after a hijack. It then
// logs it as net/http does (if logIt), but naming the handler's line:
// net/http names the first caller outside package net/http, which would
// be this wrapper. Over HTTP/2 such calls are not logged.
func (w *respWriter) misused(method string, logIt bool) bool {
	if w.ctx == nil {
		return false
	}
	var format string
	switch {
	case w.hijacked: // through w: a hijack around it is not looked up on every call
		format = "http: response.%s on hijacked connection from %s (%s:%d)"
	case method == "WriteHeader" && w.wroteHeader:
		format = "http: superfluous response.%s call from %s (%s:%d)"
		if w.isHijacked() { // around w, as net/http would tell first
			format = "http: response.%s on hijacked connection from %s (%s:%d)"
		}
	default:
		return false
	}
	// Only net/http's own writer (not a recorder a program handed the
	// handler), in a server's request.
	srv, _ := w.ctx.Value(http.ServerContextKey).(*http.Server)
	if srv == nil || reflect.TypeOf(w.ResponseWriter).String() != "*http.response" {
		return false
	}
	if logIt {
		f := callerOutside()
		args := []any{method, f.Function, path.Base(f.File), f.Line}
		if srv.ErrorLog != nil {
			srv.ErrorLog.Printf(format, args...)
		} else {
			log.Printf(format, args...)
		}
	}
	return true
}

// pkgPrefix starts the names of this package's functions.
var pkgPrefix = reflect.TypeFor[respWriter]().PkgPath() + "."

// callerOutside is net/http's relevantCaller, which skips its own package,
// skipping this one too.
func callerOutside() runtime.Frame {
	pc := make([]uintptr, 32)
	n := runtime.Callers(2, pc)
	frames := runtime.CallersFrames(pc[:n])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "net/http.") && !strings.HasPrefix(f.Function, pkgPrefix) {
			return f
		}
		if !more {
			return runtime.Frame{}
		}
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *respWriter) flush() {
	if w.status == 0 {
		w.setStatus(http.StatusOK)
	}
	w.ResponseWriter.(http.Flusher).Flush()
	w.flushed = true // Flush reports no failure
	w.wroteHeader = true
}

func (w *respWriter) flushError() error {
	if w.status == 0 {
		w.setStatus(http.StatusOK)
	}
	err := w.ResponseWriter.(flushErrorer).FlushError()
	if err == nil {
		w.flushed = true
	}
	w.wroteHeader = true
	return err
}

// flushErrorer is what http.ResponseController.Flush looks for first, so
// that a failed flush returns its error.
type flushErrorer interface{ FlushError() error }

func (w *respWriter) writeString(s string) (int, error) {
	if w.misused("Write", len(s) > 0) {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.setStatus(http.StatusOK)
	}
	n, err := io.WriteString(w.ResponseWriter, s)
	w.wroteHeader = true
	return n, err
}

func (w *respWriter) readFrom(src io.Reader) (int64, error) {
	status, written := w.status, w.written
	if w.status == 0 {
		w.setStatus(http.StatusOK)
	}
	n, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
	// net/http writes the header with the first byte it copies: a copy
	// of nothing (an empty source, or one that fails at once) leaves it
	// unwritten, and the status the handler sets next is the response's
	// (http.Error's after a failed upstream). A byte refused for the
	// Content-Length the handler set did write it.
	if n > 0 || errors.Is(err, http.ErrContentLength) {
		w.wroteHeader = true
	} else if !w.wroteHeader {
		w.status, w.written = status, written
	}
	return n, err
}

// isHijacked reports whether the handler hijacked the connection: through
// w, or around it (through Unwrap, to the server's writer), which only
// ConnState sees, over HTTP/1.
func (w *respWriter) isHijacked() bool {
	if !w.hijacked && w.h1 != nil {
		_, w.hijacked = w.hijacks.Load(w.h1)
	}
	return w.hijacked
}

func (w *respWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

func (w *respWriter) push(target string, opts *http.PushOptions) error {
	return w.ResponseWriter.(http.Pusher).Push(target, opts)
}

// closeNotify: CloseNotifier is deprecated, but handlers that use it must keep working.
func (w *respWriter) closeNotify() <-chan bool {
	return w.ResponseWriter.(http.CloseNotifier).CloseNotify()
}

type (
	// HTTP/1: Flusher, FlushError, Hijacker, io.ReaderFrom, io.StringWriter, CloseNotifier.
	h1Writer struct{ *respWriter }
	// HTTP/2: Flusher, FlushError, Pusher, io.StringWriter, CloseNotifier.
	h2Writer struct{ *respWriter }
	// Anything else that can flush and report a failed flush.
	flushErrWriter struct{ *respWriter }
	// Anything else that can flush.
	flushWriter struct{ *respWriter }
	// Anything else.
	plainWriter struct{ *respWriter }
)

func (w h1Writer) Flush()                                       { w.respWriter.flush() }
func (w h1Writer) FlushError() error                            { return w.respWriter.flushError() }
func (w h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.respWriter.hijack() }
func (w h1Writer) ReadFrom(src io.Reader) (int64, error)        { return w.respWriter.readFrom(src) }
func (w h1Writer) WriteString(s string) (int, error)            { return w.respWriter.writeString(s) }
func (w h1Writer) CloseNotify() <-chan bool                     { return w.respWriter.closeNotify() }
func (w h2Writer) Flush()                                       { w.respWriter.flush() }
func (w h2Writer) FlushError() error                            { return w.respWriter.flushError() }
func (w h2Writer) Push(t string, o *http.PushOptions) error     { return w.respWriter.push(t, o) }
func (w h2Writer) WriteString(s string) (int, error)            { return w.respWriter.writeString(s) }
func (w h2Writer) CloseNotify() <-chan bool                     { return w.respWriter.closeNotify() }
func (w flushErrWriter) Flush()                                 { w.respWriter.flush() }
func (w flushErrWriter) FlushError() error                      { return w.respWriter.flushError() }
func (w flushWriter) Flush()                                    { w.respWriter.flush() }

func wrapWriter(w *respWriter) http.ResponseWriter {
	inner := w.ResponseWriter
	_, fl := inner.(http.Flusher)
	_, fe := inner.(flushErrorer)
	_, hj := inner.(http.Hijacker)
	_, rf := inner.(io.ReaderFrom)
	_, ws := inner.(io.StringWriter)
	_, cn := inner.(http.CloseNotifier)
	_, pu := inner.(http.Pusher)
	switch {
	case fl && fe && hj && rf && ws && cn:
		return h1Writer{w}
	case fl && fe && pu && ws && cn:
		return h2Writer{w}
	case fl && fe:
		return flushErrWriter{w}
	case fl:
		return flushWriter{w}
	}
	return plainWriter{w}
}
