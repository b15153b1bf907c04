package connscope

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestFlow(t *testing.T) {
	type step int
	const (
		begin     step = iota // a client pool's: BeginRequestActive
		beginKeep             // a server's, whose state ConnState reports: BeginRequest
		end
		endIdle
		setIdle
		setActive
		closeConn
	)
	for _, tc := range []struct {
		name      string
		steps     []step
		wantIdle  []bool // what each endIdle reported, in order
		wantState State
		wantN     int32
	}{
		{"one request back to the pool", []step{begin, endIdle}, []bool{true}, StateIdle, 0},
		{"two in flight: idle after the last", []step{begin, begin, endIdle, endIdle}, []bool{false, true}, StateIdle, 0},
		{"reuse of an idle connection", []step{begin, endIdle, begin}, []bool{true}, StateActive, 1},
		{"not pooled: EndRequest keeps the state", []step{begin, end}, nil, StateActive, 0},
		{"closed during the request stays closed", []step{begin, closeConn, endIdle}, []bool{false}, StateClosed, 0},
		{"closing ends the requests in flight", []step{begin, begin, closeConn}, nil, StateClosed, 0},
		{"an end after the close stays at 0", []step{begin, closeConn, end, end}, nil, StateClosed, 0},
		{"SetState cannot reopen a closed one", []step{closeConn, setIdle, setActive}, nil, StateClosed, 0},
		// A request that gets a connection as it closes (net/http's
		// GotConn after the peer's FIN): nothing in flight on it.
		{"a client request begun after the close", []step{closeConn, begin}, nil, StateClosed, 0},
		{"a server request begun after the close", []step{closeConn, beginKeep, end}, nil, StateClosed, 0},
		{"client pool idle then a request", []step{setIdle, begin}, nil, StateActive, 1},
		// HTTP/2 starts a handler after its stream was reset and the
		// server reported the connection idle: still idle.
		{"server idle then a request", []step{setIdle, beginKeep}, nil, StateIdle, 1},
		{"server request then idle", []step{setActive, beginKeep, end, setIdle}, nil, StateIdle, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Record
			var got []bool
			for _, s := range tc.steps {
				switch s {
				case begin:
					r.BeginRequestActive("")
				case beginKeep:
					r.BeginRequest("")
				case end:
					r.EndRequest()
				case endIdle:
					got = append(got, r.EndRequestIdle())
				case setIdle:
					r.SetState(StateIdle)
				case setActive:
					r.SetState(StateActive)
				case closeConn:
					r.closeFlow()
				}
			}
			if len(got) != len(tc.wantIdle) {
				t.Fatalf("EndRequestIdle reported %v, want %v", got, tc.wantIdle)
			}
			for i := range got {
				if got[i] != tc.wantIdle[i] {
					t.Fatalf("EndRequestIdle reported %v, want %v", got, tc.wantIdle)
				}
			}
			if r.State() != tc.wantState || r.InFlight() != tc.wantN {
				t.Errorf("state %v with %d in flight, want %v with %d", r.State(), r.InFlight(), tc.wantState, tc.wantN)
			}
			if ci := r.Snapshot(); ci.State != tc.wantState.String() || ci.InFlight != tc.wantN {
				t.Errorf("Snapshot: state %q with %d in flight, want %v with %d", ci.State, ci.InFlight, tc.wantState, tc.wantN)
			}
		})
	}
}

// TestRequestFlowRace: request A gives its connection back to the pool
// while request B takes it. Whatever the interleaving, B runs on an active
// connection. (With the end of A and its idle mark as two steps, B's
// begin fell between them in some rounds, and B ran on a connection
// marked idle.) A and B spin on two goroutines; B starts after a delay
// that varies from round to round, so that it lands before, inside and
// after A's step.
func TestRequestFlowRace(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps for A and B to run at once")
	}
	const rounds = 20000
	deadline := time.Now().Add(2 * time.Second)
	var (
		r          Record
		round, ack atomic.Int64
		aIdle      atomic.Bool
		wg         sync.WaitGroup
	)
	wg.Go(func() { // A
		for i := int64(1); ; i++ {
			for n := round.Load(); n < i; n = round.Load() {
				if n < 0 || time.Now().After(deadline.Add(time.Second)) {
					return
				}
			}
			aIdle.Store(r.EndRequestIdle())
			ack.Store(i)
		}
	})
	defer func() { round.Store(-1 << 62); wg.Wait() }()
	var idles, ran int
	for i := int64(1); i <= rounds && time.Now().Before(deadline); i++ {
		ran++
		r.BeginRequestActive("") // A
		round.Store(i)
		for j := int64(0); j < i%96; j++ {
			ack.Load() // a delay the compiler keeps
		}
		r.BeginRequestActive("") // B
		for ack.Load() < i {
			if time.Now().After(deadline.Add(5 * time.Second)) {
				t.Fatalf("round %d: A did not end its request", i)
			}
		}
		if aIdle.Load() {
			idles++
		}
		if s, n := r.State(), r.InFlight(); s != StateActive || n != 1 {
			t.Fatalf("round %d: B in flight on a connection %v with %d in flight, want active with 1", i, s, n)
		}
		if !r.EndRequestIdle() || r.State() != StateIdle { // B ends
			t.Fatalf("round %d: the last request did not leave the connection idle", i)
		}
	}
	t.Logf("%d rounds; A went idle before B began in %d", ran, idles)
}
