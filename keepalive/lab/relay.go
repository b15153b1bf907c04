package lab

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// relay is a userspace middlebox for one connection: it forwards bytes and, like
// a load balancer, closes the connection after idle without payload (keepalive
// probes never reach userspace, so they do not count), or aborts it on demand.
// It cannot imitate a silent drop: its kernel keeps acknowledging both sides.
type relay struct {
	ln   net.Listener
	dial func() (net.Conn, error)
	idle time.Duration // 0: no idle close

	last   atomic.Int64 // unix nanos of the last payload byte
	closed chan time.Time
	abort  chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newRelay(ln net.Listener, dial func() (net.Conn, error), idle time.Duration) *relay {
	r := &relay{ln: ln, dial: dial, idle: idle, closed: make(chan time.Time, 1), abort: make(chan struct{})}
	r.wg.Add(1)
	go r.serveOne()
	return r
}

// serveOne relays the first accepted connection: a scenario has exactly one.
func (r *relay) serveOne() {
	defer r.wg.Done()
	down, err := r.ln.Accept()
	if err != nil {
		return
	}
	up, err := r.dial()
	if err != nil {
		down.Close()
		return
	}
	r.last.Store(time.Now().UnixNano())
	var copies sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer copies.Done()
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				r.last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	copies.Add(2)
	go cp(up, down)
	go cp(down, up)
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	closeBoth := func(rst bool) {
		if rst {
			// SO_LINGER 0: close sends RST instead of FIN.
			down.(*net.TCPConn).SetLinger(0)
			up.(*net.TCPConn).SetLinger(0)
		}
		t := time.Now()
		down.Close()
		up.Close()
		r.closed <- t
	}
	for {
		select {
		case <-done: // one side closed: pass it on and stop
			down.Close()
			up.Close()
			return
		case <-r.abort:
			closeBoth(true)
			<-done
			return
		case <-tick.C:
			if r.idle > 0 && time.Since(time.Unix(0, r.last.Load())) >= r.idle {
				closeBoth(false)
				<-done
				return
			}
		}
	}
}

// Abort resets both connections now (RST).
func (r *relay) Abort() { r.once.Do(func() { close(r.abort) }) }

// Close stops the relay and waits for its goroutines.
func (r *relay) Close() {
	r.ln.Close()
	r.Abort()
	r.wg.Wait()
}
