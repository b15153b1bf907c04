package connscope

import (
	"sync"
	"sync/atomic"
	"time"
)

// holds lets a layer above the connection (httpscope) make the
// connection's own events ("Socket End", "Socket Error", "Socket
// Timeout", "Socket Close") wait until it has reported what it saw first.
// net/http closes the connection of an answer that says "Connection:
// close" and has no body before RoundTrip hands the answer over: without
// a hold, "Socket Close" would come before that request's "HTTP(S)
// Response".
type holds struct {
	// word holds the count of holds (low 32 bits) and heldBit while
	// events wait or are being emitted: the common path, no hold and
	// nothing held, reads only this.
	word atomic.Uint64
	mu   sync.Mutex
	evs  []ownEvent
	// A goroutine emits released events, without mu: events that come
	// meanwhile queue behind them.
	draining bool
}

const (
	holdMask = 1<<32 - 1
	heldBit  = 1 << 32
)

type ownEvent struct {
	e       Event
	closing bool // "Socket Close": the close's hook and count follow it
}

// HoldEvents makes the connection's own events ("Socket End", "Socket
// Error", "Socket Timeout", "Socket Close") wait until a matching
// ReleaseEvents, so that a layer above that reports a request's outcome
// after the connection may have ended reports it first. Holds nest: the
// events go out, in order and with the time they happened at, when the
// last hold is released. Every HoldEvents needs exactly one
// ReleaseEvents: events held for good are never written, and the
// connection's Hooks.ConnClosed never runs.
func (r *Record) HoldEvents() { r.holds.word.Add(1) }

// ReleaseEvents ends a hold made by HoldEvents, and emits the events held
// if it was the last. A ReleaseEvents with no hold left to end (one more
// than the HoldEvents) does nothing: the record goes on as before.
// Releases are not matched to their holds, though: one too many while
// another hold is on ends that hold instead.
func (r *Record) ReleaseEvents() {
	h := &r.holds
	var w uint64
	for {
		old := h.word.Load()
		if old&holdMask == 0 {
			// Nothing to release: a decrement would borrow from heldBit
			// and leave the count at 2³²-1, holding events for good.
			return
		}
		if w = old - 1; h.word.CompareAndSwap(old, w) {
			break
		}
	}
	if w&holdMask != 0 || w&heldBit == 0 {
		return
	}
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock() // the goroutine that drains emits these too
		return
	}
	h.draining = true
	for {
		if h.word.Load()&holdMask != 0 || len(h.evs) == 0 {
			// Held again meanwhile (the next hold's release drains), or
			// nothing left.
			if len(h.evs) == 0 {
				h.word.And(^uint64(heldBit))
			}
			h.draining = false
			h.mu.Unlock()
			return
		}
		evs := h.evs
		h.evs = nil
		h.mu.Unlock()
		for _, o := range evs {
			r.emitNow(o.e, o.closing)
		}
		h.mu.Lock()
	}
}

// EmitAfterHeld emits e, through the connection's Spy, after the
// connection's own events that a hold keeps waiting (see HoldEvents): it
// joins their queue, and goes out when the last hold is released. With
// none waiting it goes out at once. A layer above reports with it what
// those events caused while another hold was on: over HTTP/2, the error
// of a request that failed with its connection while other requests on it
// held the connection's "Socket Error" (cause before effect).
func (r *Record) EmitAfterHeld(e Event) {
	if r.holds.word.Load()&heldBit == 0 || !r.queueBehind(&e) {
		r.spy.Emit(e)
	}
}

// queueBehind queues e behind the held events, if any wait or are being
// emitted, and reports whether it did.
func (r *Record) queueBehind(e *Event) bool {
	h := &r.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.word.Load()&heldBit == 0 && !h.draining {
		return false
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h.evs = append(h.evs, ownEvent{e: *e})
	return true
}

// emitOwn emits e, one of the connection's own events, or holds it (see
// HoldEvents). closing says it is "Socket Close".
func (r *Record) emitOwn(e Event, closing bool) {
	if r.holds.word.Load() == 0 || !r.hold(&e, closing) {
		r.emitNow(e, closing)
	}
}

// hold queues e if a hold is on or held events are being emitted, and
// reports whether it did.
func (r *Record) hold(e *Event, closing bool) bool {
	h := &r.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		w := h.word.Load()
		// heldBit without a hold: the last release has taken the count to
		// 0 and is on its way to emit the held events; e goes after them.
		if w == 0 && !h.draining {
			return false
		}
		// A compare-and-swap, not an Or: a release that took the count to
		// 0 since the load must see either the bit or no held event.
		if h.word.CompareAndSwap(w, w|heldBit) {
			break
		}
	}
	if e.Time.IsZero() {
		e.Time = time.Now() // when it happened, not when it goes out
	}
	h.evs = append(h.evs, ownEvent{*e, closing})
	return true
}

func (r *Record) emitNow(e Event, closing bool) {
	r.spy.Emit(e)
	if closing {
		r.closedAfter()
	}
}
