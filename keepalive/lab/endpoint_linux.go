//go:build linux

package lab

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connscope/connscope/keepalive"
	"github.com/connscope/connscope/tcpinfo"
)

// endpoint is one side of the lab's connection: a reader that records every
// error with its time, an optional streaming writer, and an echo (server).
type endpoint struct {
	conn *net.TCPConn

	mu       sync.Mutex
	events   []timedErr
	info     *tcpinfo.Info // at the first error
	before   *tcpinfo.Info // last snapshot before it
	stopped  bool          // the run ended: later errors are ours (Close), not the kernel's
	first    chan struct{} // closed at the first error
	gotData  chan struct{} // closed at the first byte received
	dataOnce sync.Once
	lastRecv atomic.Int64 // unix nanos of the last byte received
	wg       sync.WaitGroup
}

type timedErr struct {
	at  time.Time
	op  string
	err error
}

func newEndpoint(c *net.TCPConn) *endpoint {
	return &endpoint{conn: c, first: make(chan struct{}), gotData: make(chan struct{})}
}

func (e *endpoint) record(op string, err error) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.events = append(e.events, timedErr{now, op, err})
	if len(e.events) == 1 {
		e.info = snapshot(e.conn) // counters as the kernel left them at the abort
		close(e.first)
	}
}

// read consumes data until an error; echo sends it back (the server's role).
func (e *endpoint) read(echo bool) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 4096)
		for { // ends at the first error: the run closes the conn at the end
			n, err := e.conn.Read(buf)
			if n > 0 {
				e.lastRecv.Store(time.Now().UnixNano())
				e.dataOnce.Do(func() { close(e.gotData) })
				if echo {
					if _, werr := e.conn.Write(buf[:n]); werr != nil {
						e.record("write", werr)
					}
				}
			}
			if err != nil {
				e.record("read", err)
				return
			}
		}
	}()
}

// stream writes a line every period until stop or an error (the seed's server).
func (e *endpoint) stream(period time.Duration, stop <-chan struct{}) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		msg := []byte("data from server\n")
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := e.conn.Write(msg); err != nil {
				e.record("write", err)
				return
			}
		}
	}()
}

func (e *endpoint) detected() bool {
	select {
	case <-e.first:
		return true
	default:
		return false
	}
}

// stop marks the end of the measurement, closes the conn and waits for the goroutines.
func (e *endpoint) stop() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.conn.Close()
	e.wg.Wait()
}

// side turns the recorded errors into a Side relative to the fault time.
func (e *endpoint) side(fault time.Time, waited time.Duration, exp keepalive.Detection) Side {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Side{Expected: exp, Waited: waited, TCPInfo: e.before, TCPInfoAtError: e.info}
	for i, ev := range e.events {
		s.Events = append(s.Events, Event{At: ev.at.Sub(fault), Op: ev.op, Error: Classify(ev.err), Detail: ev.err.Error()})
		if i == 0 {
			s.Detected, s.After, s.Error, s.Op = true, ev.at.Sub(fault), Classify(ev.err), ev.op
		}
	}
	// Only the first syscall after an abort gets the kernel's error; a writer
	// racing with it gets EPIPE and may be recorded first. Report the kernel's
	// reason (detection time stays the first event's).
	if s.Error == "EPIPE" {
		for _, ev := range s.Events[1:] {
			if ev.Error != "EPIPE" && ev.At-s.After < 500*time.Millisecond {
				s.Error, s.Op = ev.Error, ev.Op
				break
			}
		}
	}
	return s
}

// sample keeps the latest TCP_INFO while the side has not failed yet.
func (e *endpoint) sample() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.events) == 0 && !e.stopped {
		if in := snapshot(e.conn); in != nil {
			e.before = in
		}
	}
}

func snapshot(c *net.TCPConn) *tcpinfo.Info {
	in, err := tcpinfo.Get(c)
	if err != nil {
		return nil
	}
	return &in
}
