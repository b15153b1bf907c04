package connscope

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
)

// epoch anchors the monotonic clock used on the Read/Write path:
// time.Since on a monotonic time reads one clock, time.Now reads two.
var epoch = time.Now()

func monoNow() int64 { return int64(time.Since(epoch)) + 1 } // never 0: 0 means "never"

func monoTime(ns int64) time.Time { return epoch.Add(time.Duration(ns - 1)) }

// State is where a connection is in its life.
type State int32

// States.
const (
	StateActive   State = iota // reading or writing, or waiting for a request
	StateIdle                  // idle in a client pool (a dialed one too, until its first request), or between server requests
	StateHijacked              // an HTTP handler took it over
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateIdle:
		return "idle"
	case StateHijacked:
		return "hijacked"
	case StateClosed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

const (
	flagEOF            = 1 << iota // the peer sent FIN
	flagRemoteClosed               // EOF or reset seen: the peer closed first
	flagClosed                     // Close was called
	flagHadError                   // a read or write failed (not EOF, not our own deadline)
	flagTLS                        // TLS Handshake reported
	flagReadInterrupt              // read deadline set in the past: the program interrupts its own read
	flagWriteInterrupt             // same for writes
	flagLocalFIN                   // CloseWrite sent this side's FIN
	flagLocalShutRD                // CloseRead: this side's reads end at EOF by its own doing
	flagAborted                    // the kernel ended the connection (reset, timeout, broken pipe, unreachable): a later EOF is its aftermath
	flagReadTimedOut               // the read deadline's "Socket Timeout" was reported: every read fails so until the deadline changes
	flagWriteTimedOut              // same for writes
)

// endpoint is an address formatted once, when the connection is wrapped,
// so that events need no formatting of addresses.
type endpoint struct {
	addr string
	port int // -1 when the address has none (unix sockets)
}

func endpointOf(a net.Addr) endpoint {
	switch a := a.(type) {
	case nil:
		return endpoint{port: -1}
	case *net.TCPAddr:
		return ipEndpoint(a.AddrPort())
	case *net.UDPAddr:
		return ipEndpoint(a.AddrPort())
	case *net.UnixAddr:
		if a == nil {
			return endpoint{port: -1}
		}
		return endpoint{addr: a.Name, port: -1}
	}
	s := a.String()
	if host, port, err := net.SplitHostPort(s); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			return endpoint{addr: host, port: p}
		}
	}
	return endpoint{addr: s, port: -1}
}

// ipEndpoint formats an IP address and port. One without a valid IP (a
// nil IP, as a tunnel's channel or a zero TCPAddr has, or a nil
// *TCPAddr) is unknown, as a nil net.Addr is, not "invalid IP".
func ipEndpoint(ap netip.AddrPort) endpoint {
	if !ap.Addr().IsValid() {
		return endpoint{port: -1}
	}
	return endpoint{addr: ap.Addr().Unmap().String(), port: int(ap.Port())}
}

func (ep endpoint) appendHostPort(b []byte) []byte {
	if ep.addr == "" {
		return append(b, '-')
	}
	if ep.port < 0 {
		return append(b, ep.addr...)
	}
	for i := 0; i < len(ep.addr); i++ {
		if ep.addr[i] == ':' {
			b = append(append(append(b, '['), ep.addr...), ']')
			return strconv.AppendInt(append(b, ':'), int64(ep.port), 10)
		}
	}
	return strconv.AppendInt(append(append(b, ep.addr...), ':'), int64(ep.port), 10)
}

func (ep endpoint) String() string { return string(ep.appendHostPort(nil)) }

// A Record is the live state of one connection. Reads and writes update it
// with atomic operations only, so a registry or a monitor may read it at
// any moment from any goroutine.
type Record struct {
	id      ID
	spy     *Spy
	side    Side
	network string
	local   endpoint
	remote  endpoint
	opened  time.Time
	openNs  int64
	clock   bool // Spy.ActivityTimes: stamp every read and write

	bytesRead    atomic.Int64
	bytesWritten atomic.Int64
	lastRead     atomic.Int64 // monotonic ns; 0: never
	lastWrite    atomic.Int64
	requests     atomic.Uint64
	// flow holds the State (high 32 bits) and the requests in flight (low
	// 32 bits, an int32) in one word, so that ending the last request and
	// going idle is one step that a request beginning on another goroutine
	// cannot fall between.
	flow     atomic.Uint64
	flags    atomic.Uint32
	closedNs atomic.Int64
	idleNs   atomic.Int64 // when the connection last went idle
	idleRead atomic.Int64 // bytesRead then: whether a next request has begun to arrive
	lastErr  atomic.Pointer[errorRecord]
	target   atomic.Pointer[string]
	jsonHead atomic.Pointer[jsonHead] // see jsonHeadFor
	holds    holds                    // see HoldEvents
}

type errorRecord struct {
	op  string
	err error
	at  time.Time
}

// stamp stores the time in t if the record keeps activity times.
func (r *Record) stamp(t *atomic.Int64) {
	if r.clock {
		t.Store(monoNow())
	}
}

func (r *Record) setFlag(f uint32) (first bool) {
	for {
		old := r.flags.Load()
		if old&f != 0 {
			return false
		}
		if r.flags.CompareAndSwap(old, old|f) {
			return true
		}
	}
}

func (r *Record) clearFlag(f uint32) {
	for {
		old := r.flags.Load()
		if old&f == 0 || r.flags.CompareAndSwap(old, old&^f) {
			return
		}
	}
}

func (r *Record) has(f uint32) bool { return r.flags.Load()&f != 0 }

// TLSReported reports whether a "TLS Handshake" event was emitted for the
// connection (see Spy.TLSHandshake, which emits it once).
func (r *Record) TLSReported() bool { return r.has(flagTLS) }

// Broken reports whether the connection can carry no more requests: Close
// was called, the peer closed or reset it, or a read or write on it
// failed. (An expired deadline alone does not break it.)
func (r *Record) Broken() bool {
	return r.has(flagEOF | flagRemoteClosed | flagClosed | flagHadError)
}

// ID returns the connection's id.
func (r *Record) ID() ID { return r.id }

// Side returns which end of the connection this program is.
func (r *Record) Side() Side { return r.side }

// Network returns "tcp", "unix", ...
func (r *Record) Network() string { return r.network }

// Opened returns when the connection was wrapped.
func (r *Record) Opened() time.Time { return r.opened }

// BytesRead returns the bytes read so far.
func (r *Record) BytesRead() int64 { return r.bytesRead.Load() }

// BytesWritten returns the bytes written so far.
func (r *Record) BytesWritten() int64 { return r.bytesWritten.Load() }

// ClosedAt returns when the connection was closed, or the zero Time while
// it is open.
func (r *Record) ClosedAt() time.Time {
	if ns := r.closedNs.Load(); ns != 0 {
		return monoTime(ns)
	}
	return time.Time{}
}

// Requests returns how many HTTP requests the connection has carried.
func (r *Record) Requests() uint64 { return r.requests.Load() }

func packFlow(s State, inFlight int32) uint64 {
	return uint64(uint32(s))<<32 | uint64(uint32(inFlight))
}

func unpackFlow(w uint64) (State, int32) { return State(int32(w >> 32)), int32(uint32(w)) }

// updateFlow applies f to the state and the requests in flight, atomically,
// and returns what f returned.
func (r *Record) updateFlow(f func(State, int32) (State, int32)) (State, int32) {
	for {
		old := r.flow.Load()
		s, n := f(unpackFlow(old))
		if r.flow.CompareAndSwap(old, packFlow(s, n)) {
			return s, n
		}
	}
}

// State returns the connection's state.
func (r *Record) State() State { s, _ := unpackFlow(r.flow.Load()); return s }

// InFlight returns how many requests are in flight on the connection. A
// closed connection has none: closing it ends them (an HTTP/1 client
// says nothing of a request whose connection it closes instead of pooling
// it).
func (r *Record) InFlight() int32 { _, n := unpackFlow(r.flow.Load()); return n }

// BeginRequest counts a request on the connection and returns its
// sequence number, from 1. It leaves the state alone, as EndRequest does:
// use it where the layer above reports the state (an http.Server's
// ConnState). A client pool, which reports no state, uses
// BeginRequestActive. Packages that know about requests (httpscope) call
// them.
func (r *Record) BeginRequest(target string) uint64 {
	r.updateFlow(func(s State, n int32) (State, int32) {
		if s == StateClosed {
			return s, n // a closed connection has nothing in flight (see InFlight)
		}
		return s, n + 1
	})
	return r.countRequest(target)
}

// BeginRequestActive is BeginRequest for a connection in a client pool: it
// also marks an idle connection active, in the same atomic step.
func (r *Record) BeginRequestActive(target string) uint64 {
	r.updateFlow(func(s State, n int32) (State, int32) {
		switch s {
		case StateClosed:
			return s, n // a closed connection has nothing in flight (see InFlight)
		case StateIdle:
			s = StateActive
		}
		return s, n + 1
	})
	return r.countRequest(target)
}

func (r *Record) countRequest(target string) uint64 {
	if p := r.target.Load(); target != "" && (p == nil || *p != target) {
		// A keep-alive loop repeats its target: no allocation then. (The
		// copy keeps target itself on the stack: storing &target would
		// move it to the heap on every call.)
		t := target
		r.target.Store(&t)
	}
	return r.requests.Add(1)
}

// EndRequest marks a request on the connection as finished and reports
// whether none is left in flight. It leaves the state alone: use it for a
// connection that is not going back to a pool.
func (r *Record) EndRequest() (none bool) {
	_, n := r.updateFlow(func(s State, n int32) (State, int32) { return s, max(n-1, 0) })
	return n == 0
}

// EndRequestIdle marks a request on the connection as finished and, if it
// was the last one in flight on an active connection, marks the connection
// idle in the same atomic step; it reports whether it did. A client pool
// calls it when a request gives its connection back. (Two steps, EndRequest
// then SetState, would let a request that begins in between run on a
// connection marked idle.)
func (r *Record) EndRequestIdle() (idle bool) {
	r.updateFlow(func(s State, n int32) (State, int32) {
		n = max(n-1, 0) // 0 already if the connection closed
		idle = n == 0 && s == StateActive
		if idle {
			// Before the state: whoever sees idle sees since when. (A
			// store from an attempt that loses the swap is harmless:
			// idleNs is read only while idle.)
			r.idleNs.Store(monoNow())
			r.idleRead.Store(r.bytesRead.Load())
			s = StateIdle
		}
		return s, n
	})
	return idle
}

// closeFlow marks the connection closed, which ends its requests.
func (r *Record) closeFlow() {
	r.closedNs.Store(monoNow())
	r.updateFlow(func(State, int32) (State, int32) { return StateClosed, 0 })
}

// SetState records a state change reported by the layer above (an
// http.Server's ConnState). A closed connection stays closed.
func (r *Record) SetState(s State) {
	if s == StateIdle {
		r.idleNs.Store(monoNow())
		r.idleRead.Store(r.bytesRead.Load())
	}
	r.updateFlow(func(old State, n int32) (State, int32) {
		if old == StateClosed {
			return old, n
		}
		return s, n
	})
}

// ConnInfo is a point-in-time copy of a Record, for reports.
type ConnInfo struct {
	ID      ID            `json:"id"`
	Side    string        `json:"side"`
	Network string        `json:"network"`
	Local   string        `json:"local"`
	Remote  string        `json:"remote"`
	State   string        `json:"state"`
	Opened  time.Time     `json:"opened"`
	Age     time.Duration `json:"age"`
	// SinceRead and SinceWrite are the time since the last read that
	// returned data and the last write (since open if none), recorded only
	// when the Spy has ActivityTimes set; zero otherwise.
	SinceRead    time.Duration `json:"sinceRead,omitzero"`
	SinceWrite   time.Duration `json:"sinceWrite,omitzero"`
	BytesRead    int64         `json:"bytesRead"`
	BytesWritten int64         `json:"bytesWritten"`
	Requests     uint64        `json:"requests"`
	InFlight     int32         `json:"inFlight"`
	Target       string        `json:"target,omitempty"` // the last request's
	PeerClosed   bool          `json:"peerClosed"`
	LastError    string        `json:"lastError,omitempty"` // its text, redacted as events' are (Redaction.Text)
	LastErrorOp  string        `json:"lastErrorOp,omitempty"`
	LastErrorAt  time.Time     `json:"lastErrorAt,omitzero"`
}

// Snapshot returns a consistent-enough copy of the record: each field is
// read atomically, the set of them is not.
func (r *Record) Snapshot() ConnInfo {
	now := monoNow()
	if c := r.closedNs.Load(); c != 0 {
		now = c
	}
	since := func(ns int64) time.Duration {
		if ns == 0 {
			ns = r.openNs
		}
		return time.Duration(now - ns)
	}
	state, inFlight := unpackFlow(r.flow.Load())
	ci := ConnInfo{
		ID:           r.id,
		Side:         r.side.String(),
		Network:      r.network,
		Local:        r.local.String(),
		Remote:       r.remote.String(),
		State:        state.String(),
		Opened:       r.opened,
		Age:          time.Duration(now - r.openNs),
		BytesRead:    r.bytesRead.Load(),
		BytesWritten: r.bytesWritten.Load(),
		Requests:     r.requests.Load(),
		InFlight:     inFlight,
		PeerClosed:   r.has(flagRemoteClosed),
	}
	if r.clock {
		ci.SinceRead, ci.SinceWrite = since(r.lastRead.Load()), since(r.lastWrite.Load())
	}
	if t := r.target.Load(); t != nil {
		ci.Target = *t
	}
	if e := r.lastErr.Load(); e != nil {
		var rd Redaction
		if r.spy != nil {
			rd = r.spy.Redaction
		}
		ci.LastError, ci.LastErrorOp, ci.LastErrorAt = rd.Text(errorText(e.err)), e.op, e.at
	}
	return ci
}

// idleFor returns how long the connection has been idle, or 0.
func (r *Record) idleFor() time.Duration {
	if ns := r.idleNs.Load(); ns != 0 {
		return time.Duration(monoNow() - ns)
	}
	return 0
}
