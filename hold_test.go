package connscope

import (
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHoldEvents: while a layer above holds a connection's events, its
// "Socket End" and "Socket Close" wait, with the time they happened at,
// and so do the close's hook and count; the last release lets them go,
// in order.
func TestHoldEvents(t *testing.T) {
	for _, tc := range []struct {
		name     string
		holds    int // HoldEvents before the peer closes and this side closes
		released int // ReleaseEvents before then
	}{
		{"no hold", 0, 0},
		{"one hold", 1, 0},
		{"nested holds", 2, 0},
		{"released before the close", 1, 1},
		{"one of two released before the close", 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			var hooked atomic.Int32
			var mineRec atomic.Pointer[Record]
			spy := &Spy{Sink: sink, Hooks: Hooks{ConnClosed: func(x *Record) {
				if x == mineRec.Load() {
					hooked.Add(1)
				}
			}}}
			c, s := wrappedPair(t, spy, "tcp")
			defer s.Close()
			r := RecordOf(c)
			mineRec.Store(r)
			for range tc.holds {
				r.HoldEvents()
			}
			for range tc.released {
				r.ReleaseEvents()
			}
			s.Close()
			c.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after the peer closed: %v, want io.EOF", err)
			}
			c.Close()
			closedAt := r.ClosedAt()
			time.Sleep(2 * time.Millisecond) // so that a release's time would differ

			held := tc.holds - tc.released
			mine := func() []string {
				var out []string
				for _, e := range sink.all() {
					if e.Conn == r {
						out = append(out, e.Message)
					}
				}
				return out
			}
			if held > 0 {
				if got := mine(); !slices.Equal(got, []string{MsgConnect}) {
					t.Fatalf("events while held: %v, want only %q", got, MsgConnect)
				}
				if hooked.Load() != 0 {
					t.Fatal("ConnClosed ran before its Socket Close was out")
				}
				if open := spy.Stats().Open; open != 1 {
					t.Fatalf("Stats().Open = %d while the Socket Close is held, want 1 (the peer is closed)", open)
				}
			}
			for i := range held {
				if i < held-1 {
					r.ReleaseEvents()
					if got := mine(); len(got) != 1 {
						t.Fatalf("events after releasing %d of %d holds: %v", i+1, held, got)
					}
					continue
				}
				r.ReleaseEvents()
			}
			if got, want := mine(), []string{MsgConnect, MsgEnd, MsgClose}; !slices.Equal(got, want) {
				t.Fatalf("events: %v, want %v", got, want)
			}
			if hooked.Load() != 1 {
				t.Fatalf("ConnClosed ran %d times for this connection, want 1", hooked.Load())
			}
			if open := spy.Stats().Open; open != 0 {
				t.Fatalf("Stats().Open = %d once the Socket Close is out, want 0", open)
			}
			closes := sink.of(MsgClose, r)
			if got := closes[0].Time; !got.Equal(closedAt) && got.Sub(closedAt) > time.Millisecond {
				t.Errorf("Socket Close at %v, want the close's time %v, not the release's", got, closedAt)
			}
		})
	}
}

// TestHoldEventsConcurrent: holds and releases racing with the end and
// the close of the connection lose no event, emit none twice, and keep
// "Socket End" before "Socket Close". Run it with -race.
func TestHoldEventsConcurrent(t *testing.T) {
	const rounds, holdsPerRound = 100, 50
	for range rounds {
		sink := newCaptureSink()
		spy := &Spy{Sink: sink}
		c, s := wrappedPair(t, spy, "tcp")
		r := RecordOf(c)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range holdsPerRound {
					r.HoldEvents()
					r.ReleaseEvents()
				}
			}()
		}
		s.Close()
		c.SetReadDeadline(time.Now().Add(testTimeout))
		c.Read(make([]byte, 1))
		c.Close()
		wg.Wait()
		endThenClose(t, sink, spy, r)
	}
}

// TestEventDuringLastReleaseWaitsForHeld: the last ReleaseEvents takes
// the count to 0 before it takes the lock to emit what is held. An event
// that takes the lock in between (here the close, which was already
// waiting for it) must queue behind the held ones, not go out first:
// "Socket End", then "Socket Close".
func TestEventDuringLastReleaseWaitsForHeld(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	c, s := wrappedPair(t, spy, "tcp")
	defer s.Close()
	defer c.Close()
	r := RecordOf(c)
	r.HoldEvents()
	s.Close()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	// "Socket End" is held. Keep the lock, so that the close queues for
	// it first, then the release.
	h := &r.holds
	h.mu.Lock()
	locked := true
	defer func() {
		if locked {
			h.mu.Unlock()
		}
	}()
	closed := make(chan struct{})
	go func() { defer close(closed); c.Close() }()
	deadline := time.Now().Add(testTimeout)
	for r.State() != StateClosed && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the close waits for the lock
	released := make(chan struct{})
	go func() { defer close(released); r.ReleaseEvents() }()
	for h.word.Load()&holdMask != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the release waits for the lock
	locked = false
	h.mu.Unlock()
	for _, ch := range []chan struct{}{closed, released} {
		select {
		case <-ch:
		case <-time.After(testTimeout):
			t.Fatal("close or release never returned")
		}
	}
	endThenClose(t, sink, spy, r)
}

// endThenClose fails t unless r's events are exactly "Socket Connect",
// "Socket End", "Socket Close", and spy counts no connection open.
func endThenClose(t *testing.T, sink *captureSink, spy *Spy, r *Record) {
	t.Helper()
	var got []string
	for _, e := range sink.all() {
		if e.Conn == r {
			got = append(got, e.Message)
		}
	}
	if want := []string{MsgConnect, MsgEnd, MsgClose}; !slices.Equal(got, want) {
		t.Fatalf("events: %v, want %v", got, want)
	}
	if open := spy.Stats().Open; open != 0 {
		t.Fatalf("Stats().Open = %d after both ends closed, want 0", open)
	}
}

// TestUnmatchedReleaseEvents: a ReleaseEvents with no hold to end does
// nothing. The events that follow go out at once, and a later hold and
// its release work as before: the extra release must not leave the hold
// count wrapped around, holding the connection's events for good.
func TestUnmatchedReleaseEvents(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	c, s := wrappedPair(t, spy, "tcp")
	r := RecordOf(c)
	r.ReleaseEvents() // none held
	r.ReleaseEvents()

	r.HoldEvents()
	s.Close()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	if ends := sink.of(MsgEnd, r); len(ends) != 0 {
		t.Fatalf("%q out while held", MsgEnd)
	}
	r.ReleaseEvents()
	if ends := sink.of(MsgEnd, r); len(ends) != 1 {
		t.Fatalf("%d %q after the release, want 1", len(ends), MsgEnd)
	}
	r.ReleaseEvents() // one too many
	c.Close()         // not held: out at once
	endThenClose(t, sink, spy, r)
}

// TestUnmatchedReleaseEventsConcurrent: extra releases racing with holds,
// their releases and the connection's own events (read timeouts) lose no
// event and leave no hold behind; the record still holds and releases
// afterwards. Run it with -race.
func TestUnmatchedReleaseEventsConcurrent(t *testing.T) {
	const rounds, timeouts, holders, strays, loops = 10, 10, 4, 2, 200
	for range rounds {
		sink := newCaptureSink()
		spy := &Spy{Sink: sink}
		c, s := wrappedPair(t, spy, "tcp")
		r := RecordOf(c)
		var wg sync.WaitGroup
		for range holders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range loops {
					r.HoldEvents()
					r.ReleaseEvents()
					r.ReleaseEvents() // unmatched, or ends another's hold
				}
			}()
		}
		for range strays {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range loops {
					r.ReleaseEvents()
				}
			}()
		}
		for range timeouts {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
				t.Fatalf("read: %v, want a timeout", err)
			}
		}
		wg.Wait()
		if n := len(sink.of(MsgTimeout, r)); n != timeouts {
			t.Fatalf("%d %q out once the holds are released, want %d", n, MsgTimeout, timeouts)
		}
		if w := r.holds.word.Load(); w != 0 {
			t.Fatalf("hold word %#x after every hold was released, want 0", w)
		}
		r.HoldEvents()
		c.Close()
		if n := len(sink.of(MsgClose, r)); n != 0 {
			t.Fatalf("%q out while held", MsgClose)
		}
		r.ReleaseEvents()
		if n := len(sink.of(MsgClose, r)); n != 1 {
			t.Fatalf("%d %q after the release, want 1", n, MsgClose)
		}
		s.Close()
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestEmitAfterHeld: an event a layer above emits with EmitAfterHeld
// goes out after the connection's own events that a hold keeps waiting,
// when the last hold is released; with a hold on but nothing waiting, or
// no hold, it goes out at once.
func TestEmitAfterHeld(t *testing.T) {
	for _, tc := range []struct {
		name      string
		holds     int
		peerEnds  bool // the peer closes while held: a "Socket End" waits
		wantFirst bool // the layer's event goes out at once
	}{
		{"no hold", 0, true, true},
		{"hold, nothing waiting", 1, false, true},
		{"hold, Socket End waiting", 1, true, false},
		{"two holds, Socket End waiting", 2, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			c, s := wrappedPair(t, spy, "tcp")
			defer c.Close()
			r := RecordOf(c)
			for range tc.holds {
				r.HoldEvents()
			}
			if tc.peerEnds {
				s.Close()
				c.SetReadDeadline(time.Now().Add(testTimeout))
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read after the peer closed: %v, want io.EOF", err)
				}
			} else {
				defer s.Close()
			}
			r.EmitAfterHeld(Event{Message: "Layer Event", Conn: r})
			mine := func() []string {
				var out []string
				for _, e := range sink.all() {
					if e.Conn == r && e.Message != MsgConnect {
						out = append(out, e.Message)
					}
				}
				return out
			}
			if got := slices.Contains(mine(), "Layer Event"); got != tc.wantFirst {
				t.Fatalf("events before the release: %v; the layer's event out: %v, want %v", mine(), got, tc.wantFirst)
			}
			for range tc.holds {
				r.ReleaseEvents()
			}
			want := []string{"Layer Event"}
			if tc.peerEnds {
				want = []string{MsgEnd, "Layer Event"} // held, or in the order they came
			}
			if got := mine(); !slices.Equal(got, want) {
				t.Fatalf("events: %v, want %v", got, want)
			}
		})
	}
}
