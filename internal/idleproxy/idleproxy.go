package idleproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy relays connections accepted on its listener to Backend.
type Proxy struct {
	Backend     string        // address to dial
	IdleTimeout time.Duration // close a pair after this long without a byte either way

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Start listens on addr ("127.0.0.1:0") and serves until Close.
func (p *Proxy) Start(addr string) error {
	if p.IdleTimeout <= 0 {
		return errors.New("idleproxy: IdleTimeout must be positive")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.ln = ln
	p.conns = make(map[net.Conn]struct{})
	p.wg.Add(1)
	go p.serve()
	return nil
}

// Addr returns the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.relay(c)
	}
}

func (p *Proxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false // closed
	}
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) relay(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	backend, err := net.DialTimeout("tcp", p.Backend, 5*time.Second)
	if err != nil {
		return
	}
	defer backend.Close()
	if !p.track(client, true) || !p.track(backend, true) {
		return
	}
	defer p.track(client, false)
	defer p.track(backend, false)

	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			// A graceful close (FIN) to both sides, as a load balancer's
			// idle timeout does: the client sees EOF on its pooled socket.
			client.(*net.TCPConn).CloseWrite()
			backend.(*net.TCPConn).CloseWrite()
			client.Close()
			backend.Close()
		})
	}
	idle := time.AfterFunc(p.IdleTimeout, closeBoth)
	defer idle.Stop()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				idle.Reset(p.IdleTimeout)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					dst.(*net.TCPConn).CloseWrite()
				}
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	<-done
	closeBoth()
}

// Close stops listening and closes every relayed connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
	return err
}
