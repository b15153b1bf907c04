package keepalive

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Server is the listening end of an experiment (the seed's server). The
// zero value listens on 127.0.0.1 port 7654, keeps Go's keepalive defaults,
// and streams a line every 500 ms to each client.
type Server struct {
	Endpoint
	// Addr is the host or IP to listen on; empty means 127.0.0.1, as for
	// `connscope keepalive server`: an experiment's server is not for the
	// world unless asked ("0.0.0.0" or "::" for every address).
	Addr string
	// Port is the TCP port; zero means DefaultPort (7654).
	Port int
	// OnResult, if set, receives each connection's result when it ends.
	OnResult func(Result)
}

func (s *Server) addr() string {
	port := s.Port
	if port == 0 {
		port = DefaultPort
	}
	host := s.Addr
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Listen opens the server's listener with its Settings applied.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	if s.Settings != nil {
		if err := ApplyListen(&lc, *s.Settings); err != nil {
			return nil, err
		}
	}
	ln, err := lc.Listen(ctx, "tcp", s.addr())
	if err != nil {
		return nil, fmt.Errorf("keepalive: %w", err)
	}
	return ln, nil
}

// ListenAndServe listens and serves until ctx is done, then returns nil.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln and runs each until it fails or ctx is
// done. It closes ln and returns nil when ctx is done, after every
// connection's goroutine has returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ev := Event{Time: time.Now(), Side: "server", Event: "listening", Local: ln.Addr().String(), Pattern: s.pattern()}
	if s.Settings != nil {
		ev.Settings = s.Settings.String()
	}
	s.log(ev)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("keepalive: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Handle(ctx, conn)
		}()
	}
}

func (s *Server) pattern() Pattern {
	if s.Pattern == "" {
		return Stream
	}
	return s.Pattern
}

// Handle runs the server's side of one accepted connection until it fails
// or ctx is done, and closes it. The error is non-nil only if the run could
// not start or ctx ended it before any failure.
func (s *Server) Handle(ctx context.Context, conn net.Conn) (Result, error) {
	r, err := s.run(ctx, "server", conn, Stream)
	if s.OnResult != nil {
		s.OnResult(r)
	}
	ev := Event{Time: time.Now(), Side: "server", Event: "closed", Remote: conn.RemoteAddr().String(), Op: r.Op, Errno: r.Errno}
	if err != nil && ctx.Err() == nil {
		ev.Error = err.Error()
	}
	s.log(ev)
	return r, err
}
