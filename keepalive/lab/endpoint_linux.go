//go:build linux

package lab

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connscope/connscope/keepalive"
	"golang.org/x/sys/unix"
)

// endpoint is one side of the lab's connection: a reader that records every
// error with its time, an optional streaming writer, and an echo (server).
type endpoint struct {
	conn *net.TCPConn

	mu       sync.Mutex
	events   []timedErr
	info     *TCPInfo
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
		e.info = getTCPInfo(e.conn) // counters as the kernel left them at the abort
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
	s := Side{Expected: exp, Waited: waited, TCPInfo: e.info}
	for i, ev := range e.events {
		s.Events = append(s.Events, Event{At: ev.at.Sub(fault), Op: ev.op, Error: Classify(ev.err), Detail: ev.err.Error()})
		if i == 0 {
			s.Detected, s.After, s.Error, s.Op = true, ev.at.Sub(fault), Classify(ev.err), ev.op
		}
	}
	return s
}

// applySettings sets keepalive and TCP_USER_TIMEOUT on one socket. The lab sets
// them per connection (instead of through Dialer/ListenConfig) so that the
// client and the accepted server socket get exactly the same options, and Go's
// own keepalive defaults are switched off (KeepAlive: -1) beforehand.
func applySettings(c *net.TCPConn, s keepalive.Settings) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		set := func(level, opt, v int) {
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), level, opt, v)
			}
		}
		if s.Idle < 0 {
			set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		} else {
			set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
			if s.Idle > 0 {
				set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(s.Idle/time.Second))
			}
			if s.Interval > 0 {
				set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(s.Interval/time.Second))
			}
			if s.Count > 0 {
				set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, s.Count)
			}
		}
		if s.UserTimeout > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(s.UserTimeout/time.Millisecond))
		}
	})
	return errors.Join(err, serr)
}
