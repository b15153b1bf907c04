package httpscope

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connscope/connscope"
)

// held keeps an HTTP/1 connection's events in the order of its requests.
//
// net/http puts a connection back in its pool before it hands the
// response over (at once when there is no body), and the pool may give it
// to a waiting request at once: request n+1 can have the connection, and
// even its answer, before request n has returned from RoundTrip with its
// "HTTP(S) Response". Request n is then a gate on the connection: the
// events of later requests wait here until it has ended, so that the log
// reads, per connection, "HTTP(S) Response" of n, "Socket Idle", "Reuse
// Socket" of n+1, as the connection lived it. Held events keep the time
// they happened at.
//
// Gates are known exactly, and only made when needed. When request k gets
// a connection from the pool, every request before k-1 has ended or is a
// gate already: net/http's read loop, one per connection, ends (or hands
// back) a request before it reads the next response, so k-1 got the
// connection only after k-2's hook ran, and k-1 made k-2 a gate then if
// it had not ended. Only k-1 may be neither: k then makes it a gate, if
// it has not ended. An HTTP/1 connection has no other requests in
// flight, so InFlight tells.
//
// Not held: HTTP/2 connections, which carry requests side by side, and a
// connection's own events (the root package's "Socket Close", ...).
var held struct {
	// How many connections have (or are about to have) gates: the common
	// path reads only this.
	n  atomic.Int32
	mu sync.Mutex
	m  map[*connscope.Record]*heldEvents
}

type heldEvents struct {
	gates []uint64 // requests not ended that later requests wait for
	evs   []heldEvent
	// A goroutine emits events let go, without the lock: events that
	// come meanwhile queue behind them, and it emits those too.
	draining bool
}

type heldEvent struct {
	req uint64
	e   connscope.Event
	// After e, the request lets the connection's own events go (see
	// Record.HoldEvents): they follow its last event.
	release bool
}

// minGate is the earliest gate, or the greatest sequence if none.
func (h *heldEvents) minGate() uint64 {
	if len(h.gates) == 0 {
		return ^uint64(0)
	}
	return slices.Min(h.gates)
}

// gateLocked returns r's gates, making them if create is set. Called with
// held.mu held, after held.n was counted for a new entry.
func gateLocked(r *connscope.Record, create bool) (h *heldEvents, created bool) {
	if h = held.m[r]; h != nil || !create {
		return h, false
	}
	if held.m == nil {
		held.m = make(map[*connscope.Record]*heldEvents)
	}
	h = &heldEvents{}
	held.m[r] = h
	return h, true
}

// holdIfBehind makes request seq-1 on r a gate if it has not ended: seq
// got r from the pool before that request's PutIdleConn ran. Called at
// GotConn of a reused HTTP/1 connection, after seq began.
func holdIfBehind(r *connscope.Record, seq uint64) {
	// Counted before InFlight is read under the lock: a request that ends
	// after that read then sees the count, and takes the lock, in endReq.
	held.n.Add(1)
	held.mu.Lock()
	h := held.m[r]
	registered := 0 // gates end under the lock, so InFlight counts them
	if h != nil {
		registered = len(h.gates)
		if slices.Contains(h.gates, seq-1) {
			registered = -1 // seq-1 is a gate already
		}
	}
	created := false
	if registered >= 0 && int(r.InFlight())-1-registered > 0 {
		// seq-1 is in flight: nothing else can be (see held).
		h, created = gateLocked(r, true)
		h.gates = append(h.gates, seq-1)
	}
	held.mu.Unlock()
	if !created {
		held.n.Add(-1)
	}
}

// emitReq emits e, an event of request seq on r, or holds it behind an
// earlier request that has not ended. release says that e is the
// request's last event before its connection's own, which it holds (see
// Record.HoldEvents): they go out after e.
func emitReq(spy *connscope.Spy, r *connscope.Record, seq uint64, e connscope.Event, release bool) {
	if holdReq(r, seq, &e, release) {
		return
	}
	spy.Emit(e)
	if release {
		r.ReleaseEvents()
	}
}

// emitReqError emits e, the "HTTP(S) Error" of request seq on r, after
// the connection's own events, which the request holds if release is set:
// a failure there ("Socket Error", "Socket Close") is what failed the
// request. Unless e is held behind an earlier request: so are the
// request's earlier events ("Reuse Socket"), which the close must not
// precede, and the release rides on e as in emitReq.
func emitReqError(spy *connscope.Spy, r *connscope.Record, seq uint64, e connscope.Event, release bool) {
	if release && holdReq(r, seq, &e, true) {
		return
	}
	if release {
		r.ReleaseEvents()
	}
	emitAfterConn(spy, r, seq, e)
}

// emitAfterConn emits e, an event of request seq on r that r's own events
// caused, after those that another request's hold keeps waiting (over
// HTTP/2: the other streams in flight), or holds it behind an earlier
// request as emitReq does.
func emitAfterConn(spy *connscope.Spy, r *connscope.Record, seq uint64, e connscope.Event) {
	if r == nil {
		spy.Emit(e)
		return
	}
	if !holdReq(r, seq, &e, false) {
		r.EmitAfterHeld(e)
	}
}

// holdReq holds e behind an earlier request on r that has not ended, if
// there is one, with the connection's release riding on it if release is
// set, and reports whether it did.
func holdReq(r *connscope.Record, seq uint64, e *connscope.Event, release bool) bool {
	if held.n.Load() == 0 || r == nil {
		return false
	}
	held.mu.Lock()
	defer held.mu.Unlock()
	if !holdLocked(r, seq, e) {
		return false
	}
	if release {
		h := held.m[r]
		h.evs[len(h.evs)-1].release = true
	}
	return true
}

// holdLocked holds e if request seq waits behind a gate on r, or events
// let go are being emitted, and reports whether it did. Called with
// held.mu held.
func holdLocked(r *connscope.Record, seq uint64, e *connscope.Event) bool {
	h := held.m[r]
	if h == nil || h.minGate() >= seq && !h.draining {
		return false
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h.evs = append(h.evs, heldEvent{req: seq, e: *e})
	return true
}

// endReq ends request seq on r: back in the pool (pooled), or not (it
// will close). mux says that r carries requests side by side (HTTP/2):
// there the connection is idle, and "Socket Idle" says so, when its last
// request in flight ends. An HTTP/1 connection put back in the pool is
// idle whatever comes next, and its "Socket Idle" goes out before the
// request ends, so that it precedes the "Reuse Socket" of a request that
// takes the connection at once. When this request was a gate, the events
// held behind it go out.
func endReq(spy *connscope.Spy, r *connscope.Record, seq uint64, pooled, mux bool) {
	if mux {
		// Requests on an HTTP/2 connection are held only when it may have
		// been taken for HTTP/1 (see multiplexed): they wait for this one
		// no longer. Ended under the lock when there are gates, as
		// HTTP/1's, for holdIfBehind's count.
		locked := held.n.Load() != 0
		if locked {
			held.mu.Lock()
		}
		idle := false
		if pooled {
			idle = r.EndRequestIdle()
		} else {
			r.EndRequest()
		}
		if !locked && held.n.Load() != 0 {
			held.mu.Lock() // a request may have made this one a gate just now
			locked = true
		}
		if locked {
			ungateUnlock(spy, r, seq)
		}
		if idle {
			emitIdle(spy, r)
		}
		return
	}
	idle := connscope.Event{Message: connscope.MsgIdle, Conn: r}
	if pooled {
		// Until the "Socket Idle" is out or held: see emitIdle.
		r.HoldEvents()
		defer r.ReleaseEvents()
	}
	say := pooled && r.State() != connscope.StateClosed
	ended := false
	if held.n.Load() == 0 {
		if say {
			spy.Emit(idle)
		}
		endOnly(r, pooled)
		if held.n.Load() == 0 {
			return
		}
		// A request that took r at once may have made this one a gate
		// just now.
		ended = true
	}
	held.mu.Lock()
	if !ended {
		if say && !holdLocked(r, seq, &idle) {
			// Not under the lock: a Sink or Event hook may make a traced
			// request. Nothing that follows can go out first: no request
			// before this one is a gate or has events let go, and one
			// after it is held behind it until endOnly.
			held.mu.Unlock()
			spy.Emit(idle)
			held.mu.Lock()
		}
		endOnly(r, pooled) // under the lock, for holdIfBehind's count
	}
	ungateUnlock(spy, r, seq)
}

// ungateUnlock lets go of the events held behind request seq on r, if it
// was a gate. Called with held.mu held; returns with it unlocked.
func ungateUnlock(spy *connscope.Spy, r *connscope.Record, seq uint64) {
	if h := held.m[r]; h != nil {
		if i := slices.Index(h.gates, seq); i >= 0 {
			h.gates = slices.Delete(h.gates, i, i+1)
			drainUnlock(spy, r, h)
			return
		}
	}
	held.mu.Unlock()
}

// emitIdle emits "Socket Idle" for r, unless r closed. r's own events
// wait meanwhile, so that a close cannot come between the check and the
// event: its "Socket Close" follows the "Socket Idle". (The record is
// closed before its event is made.)
func emitIdle(spy *connscope.Spy, r *connscope.Record) {
	r.HoldEvents()
	if r.State() != connscope.StateClosed {
		spy.Emit(connscope.Event{Message: connscope.MsgIdle, Conn: r})
	}
	r.ReleaseEvents()
}

func endOnly(r *connscope.Record, pooled bool) {
	if pooled {
		r.EndRequestIdle()
	} else {
		r.EndRequest()
	}
}

// drainUnlock emits, in the order of their requests, the held events that
// no gate holds any longer, and forgets r once nothing is held. It emits
// without held.mu, which a Sink or an Event hook that makes a traced
// request would take again: events of r that come meanwhile queue, and go
// out after these (see holdLocked). Called with held.mu held; returns with
// it unlocked.
func drainUnlock(spy *connscope.Spy, r *connscope.Record, h *heldEvents) {
	if h.draining {
		held.mu.Unlock() // the goroutine that drains r lets these go too
		return
	}
	h.draining = true
	for {
		g := h.minGate()
		var out []heldEvent
		h.evs = slices.DeleteFunc(h.evs, func(he heldEvent) bool {
			if he.req > g {
				return false
			}
			out = append(out, he)
			return true
		})
		if len(out) == 0 {
			h.draining = false
			if len(h.gates) == 0 && len(h.evs) == 0 {
				delete(held.m, r)
				held.n.Add(-1)
			}
			held.mu.Unlock()
			return
		}
		slices.SortStableFunc(out, func(a, b heldEvent) int {
			switch {
			case a.req < b.req:
				return -1
			case a.req > b.req:
				return 1
			}
			return 0
		})
		// A connection that closed while they were held is not idle. Its
		// own events wait until these are out (see emitIdle): its "Socket
		// Close" then follows them.
		r.HoldEvents()
		closed := r.State() == connscope.StateClosed
		held.mu.Unlock()
		for i := range out {
			if !closed || out[i].e.Message != connscope.MsgIdle {
				spy.Emit(out[i].e)
			}
			if out[i].release {
				r.ReleaseEvents()
			}
		}
		r.ReleaseEvents()
		held.mu.Lock()
	}
}
