package keepalive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/connscope/connscope/tcpinfo"
)

// DefaultPort is the port of the seed's experiment.
const DefaultPort = 7654

// A Pattern is what an endpoint does with its connection.
type Pattern string

const (
	// Stream writes a line every 500 ms (Every) and reads what comes.
	Stream Pattern = "stream"
	// Burst writes 1 MiB at once, then stays idle and reads.
	Burst Pattern = "burst"
	// Quiet writes nothing and reads what comes ("idle" on the command line).
	Quiet Pattern = "idle"
	// StopReading neither reads nor writes, so a writing peer ends with a zero
	// window (its persist timer runs). The endpoint notices a failure by
	// polling TCP_INFO and SO_ERROR every 250 ms.
	StopReading Pattern = "stop-reading"
	// Flood writes as fast as the connection takes data, to fill a peer that
	// stops reading.
	Flood Pattern = "flood"
)

// Patterns lists the patterns ParsePattern accepts.
var Patterns = []Pattern{Stream, Burst, Quiet, StopReading, Flood}

// ParsePattern parses a Pattern name, without regard to case.
func ParsePattern(s string) (Pattern, error) {
	for _, p := range Patterns {
		if strings.EqualFold(string(p), s) {
			return p, nil
		}
	}
	return "", fmt.Errorf("keepalive: unknown pattern %q (want stream, burst, idle, stop-reading or flood)", s)
}

// Endpoint holds what a Server and a Client share: how one side of an
// experiment behaves on its connection. The zero value reads and writes
// nothing but logs nothing either; see Server and Client for their defaults.
type Endpoint struct {
	// Settings are applied to the connection. Nil leaves the connection as
	// it is (a net.Dialer or net.ListenConfig sets Go's 15s/15s/9).
	Settings *Settings
	// Pattern is what to send; see Server and Client for the default.
	Pattern Pattern
	// Every is the interval of the Stream pattern; zero means 500 ms.
	Every time.Duration
	// ReadDeadline, if positive, gives up when nothing was received for that
	// long (the seed's "timeout!"): detection by the application.
	ReadDeadline time.Duration
	// Heartbeat, if positive, sends "ping" every Heartbeat and gives up when
	// nothing was received for 3×Heartbeat. Each side answers "ping" with "pong".
	Heartbeat time.Duration
	// Log receives one JSON event per line; nil logs nothing.
	Log io.Writer
	// Verbose also logs every line received.
	Verbose bool
}

// Event is one line of an endpoint's log.
type Event struct {
	Time        time.Time     `json:"time"`
	Side        string        `json:"side"`
	Event       string        `json:"event"`
	Local       string        `json:"local,omitempty"`
	Remote      string        `json:"remote,omitempty"`
	SinceRecvMS *float64      `json:"since_recv_ms,omitempty"` // since the last byte received (or the connection)
	Op          string        `json:"op,omitempty"`
	Errno       string        `json:"errno,omitempty"`
	Error       string        `json:"error,omitempty"`
	Data        string        `json:"data,omitempty"`
	Settings    string        `json:"settings,omitempty"`
	Pattern     Pattern       `json:"pattern,omitempty"`
	TCPInfo     *tcpinfo.Info `json:"tcp_info,omitempty"`
}

// ErrorEvent is one error an endpoint saw, with its time.
type ErrorEvent struct {
	Time  time.Time
	Op    string // "read", "write", "poll", "read-deadline", "heartbeat"
	Errno string // see Errno
	Err   error
}

// Result says when and how one side noticed that its connection failed.
type Result struct {
	Side      string
	Connected time.Time
	// LastRecv is when the last byte arrived (zero if none did).
	LastRecv time.Time
	// Detected is the time of the first error; zero if the run ended
	// (context canceled) before any.
	Detected time.Time
	// Op, Errno and Err describe the first error.
	Op    string
	Errno string
	Err   error
	// TCPInfo is the kernel's view right after the first error.
	TCPInfo *tcpinfo.Info
	// Errors lists every error in order: only the first syscall gets the
	// kernel's error, a concurrent reader may see EOF when the writer got
	// ETIMEDOUT.
	Errors []ErrorEvent
}

// Errno names the error the way the kernel and the seed do: "ETIMEDOUT",
// "ECONNRESET", "EHOSTUNREACH", "EPIPE", ... for a system error, "EOF" for
// the peer's FIN, "deadline" for an expired read or write deadline (which
// net.Error.Timeout also reports for a kernel ETIMEDOUT: this tells them
// apart), "closed" for a closed connection, "other" for any other error,
// "" for nil.
func Errno(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "deadline"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &errno):
		if name, ok := errnoNames[errno]; ok {
			return name
		}
		return "errno " + strconv.Itoa(int(errno))
	}
	return "other"
}

var errnoNames = map[syscall.Errno]string{
	syscall.ETIMEDOUT:    "ETIMEDOUT",
	syscall.ECONNRESET:   "ECONNRESET",
	syscall.EHOSTUNREACH: "EHOSTUNREACH",
	syscall.ENETUNREACH:  "ENETUNREACH",
	syscall.EPIPE:        "EPIPE",
	syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.ECONNABORTED: "ECONNABORTED",
	syscall.EADDRINUSE:   "EADDRINUSE",
}

var (
	errReadDeadline = errors.New("keepalive: nothing received within the read deadline")
	errHeartbeat    = errors.New("keepalive: no heartbeat answer")
)

// run drives one connection until its first error or ctx is done.
func (e *Endpoint) run(ctx context.Context, side string, conn net.Conn, defaultPattern Pattern) (Result, error) {
	r := &runner{e: e, side: side, conn: conn, done: make(chan struct{})}
	r.res.Side = side
	r.res.Connected = time.Now()
	r.lastRecv.Store(r.res.Connected.UnixNano())
	if e.Settings != nil {
		if err := ApplyConn(conn, *e.Settings); err != nil {
			conn.Close()
			return r.res, err
		}
	}
	pattern := e.Pattern
	if pattern == "" {
		pattern = defaultPattern
	}
	pattern, err := ParsePattern(string(pattern)) // "Stream" is Stream below
	if err != nil {
		conn.Close()
		return r.res, err
	}
	ev := r.event("connected")
	ev.Pattern = pattern
	if s, err := readConn(conn); err == nil {
		ev.Settings = s.String()
	}
	e.log(ev)

	var wg sync.WaitGroup
	start := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	if pattern == StopReading {
		start(r.poll)
	} else {
		start(r.read)
	}
	switch pattern {
	case Stream, Burst, Flood:
		start(func() { r.write(pattern) })
	}
	if e.Heartbeat > 0 {
		start(r.heartbeat)
	}
	select {
	case <-ctx.Done():
	case <-r.done:
	}
	r.stopped.Store(true)
	conn.Close() // unblocks the goroutines; their errors are ours now
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.res.Detected.IsZero() {
		r.res.LastRecv = time.Unix(0, r.lastRecv.Load())
		if !r.gotData.Load() {
			r.res.LastRecv = time.Time{}
		}
		return r.res, nil
	}
	if r.gotData.Load() {
		r.res.LastRecv = time.Unix(0, r.lastRecv.Load())
	}
	return r.res, ctx.Err()
}

type runner struct {
	e        *Endpoint
	side     string
	conn     net.Conn
	lastRecv atomic.Int64 // unix nanos
	gotData  atomic.Bool
	stopped  atomic.Bool
	wmu      sync.Mutex // serializes writes (data, ping, pong)

	mu   sync.Mutex
	res  Result
	done chan struct{} // closed at the first error
}

func (r *runner) event(name string) Event {
	now := time.Now()
	since := float64(now.UnixNano()-r.lastRecv.Load()) / 1e6
	return Event{Time: now, Side: r.side, Event: name, Local: r.conn.LocalAddr().String(),
		Remote: r.conn.RemoteAddr().String(), SinceRecvMS: &since}
}

// fail records an error; the first one ends the run.
func (r *runner) fail(op string, err error) {
	if r.stopped.Load() {
		return
	}
	ev := r.event("error")
	ev.Op, ev.Errno, ev.Error = op, Errno(err), err.Error()
	if info, ierr := connInfo(r.conn); ierr == nil {
		ev.TCPInfo = &info
	}
	r.mu.Lock()
	r.res.Errors = append(r.res.Errors, ErrorEvent{Time: ev.Time, Op: op, Errno: ev.Errno, Err: err})
	first := r.res.Detected.IsZero()
	if first {
		r.res.Detected, r.res.Op, r.res.Errno, r.res.Err, r.res.TCPInfo = ev.Time, op, ev.Errno, err, ev.TCPInfo
	}
	r.mu.Unlock()
	r.e.log(ev)
	if first {
		close(r.done)
	}
}

func (r *runner) send(b []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.conn.Write(b)
	return err
}

func (r *runner) read() {
	br := bufio.NewReader(r.conn)
	for !r.stopped.Load() {
		if d := r.e.ReadDeadline; d > 0 {
			r.conn.SetReadDeadline(time.Now().Add(d))
		}
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			r.lastRecv.Store(time.Now().UnixNano())
			if !r.gotData.Swap(true) || r.e.Verbose {
				ev := r.event("data")
				ev.Data = string(trimNL(line))
				r.e.log(ev)
			}
			if string(trimNL(line)) == "ping" {
				if werr := r.send([]byte("pong\n")); werr != nil {
					r.fail("write", werr)
					return
				}
			}
		}
		switch {
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
		case r.e.ReadDeadline > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			r.fail("read-deadline", fmt.Errorf("%w (%v): %w", errReadDeadline, r.e.ReadDeadline, err))
			return
		default:
			r.fail("read", err)
			return
		}
	}
}

func trimNL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}

func (r *runner) write(p Pattern) {
	switch p {
	case Burst:
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = 'x'
		}
		chunk[len(chunk)-1] = '\n'
		if err := r.send(chunk); err != nil {
			r.fail("write", err)
		}
		return
	case Flood:
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = 'x'
		}
		chunk[len(chunk)-1] = '\n'
		for !r.stopped.Load() {
			if err := r.send(chunk); err != nil {
				r.fail("write", err)
				return
			}
		}
		return
	}
	every := r.e.Every
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		if err := r.send([]byte("data " + strconv.Itoa(n) + "\n")); err != nil {
			r.fail("write", err)
			return
		}
		select {
		case <-r.done:
			return
		case <-t.C:
		}
	}
}

func (r *runner) heartbeat() {
	h := r.e.Heartbeat
	t := time.NewTicker(h)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		if since := time.Duration(time.Now().UnixNano() - r.lastRecv.Load()); since >= 3*h {
			r.fail("heartbeat", fmt.Errorf("%w for %v (3×%v)", errHeartbeat, since.Round(time.Millisecond), h))
			return
		}
		if err := r.send([]byte("ping\n")); err != nil {
			r.fail("write", err)
			return
		}
	}
}

// poll watches a connection that is not read: the kernel's abort shows as
// state CLOSE and a pending SO_ERROR.
func (r *runner) poll() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		if r.stopped.Load() {
			return
		}
		err := pendingError(r.conn)
		if err == nil {
			if info, ierr := connInfo(r.conn); ierr == nil && info.State == "CLOSE" {
				err = io.EOF
			}
		}
		if err != nil {
			r.fail("poll", err)
			return
		}
	}
}

func (e *Endpoint) log(ev Event) {
	if e.Log == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	logMu.Lock()
	e.Log.Write(append(b, '\n'))
	logMu.Unlock()
}

// logMu keeps lines whole when endpoints share a writer.
var logMu sync.Mutex

// connInfo is tcpinfo.Get for a net.Conn that has SyscallConn.
func connInfo(c net.Conn) (tcpinfo.Info, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return tcpinfo.Info{}, errors.New("keepalive: connection has no SyscallConn")
	}
	return tcpinfo.Get(sc)
}

func readConn(c net.Conn) (Settings, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Settings{}, errors.New("keepalive: connection has no SyscallConn")
	}
	return Read(sc)
}

// ApplyConn applies s to an established connection: keepalive with
// SetKeepAliveConfig and TCP_USER_TIMEOUT with setsockopt through
// SyscallConn. c needs the method for the settings it is given: a
// *net.TCPConn has both, and so has a connscope wrapper of one.
func ApplyConn(c net.Conn, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	// An interface, not *net.TCPConn: wrappers that keep the method work.
	if kc, ok := c.(interface {
		SetKeepAliveConfig(net.KeepAliveConfig) error
	}); ok {
		_, cfg := keepAliveConfig(s)
		if err := kc.SetKeepAliveConfig(cfg); err != nil {
			return fmt.Errorf("keepalive: %w", err)
		}
	} else if s.Idle != 0 || s.Interval != 0 || s.Count != 0 {
		return fmt.Errorf("keepalive: cannot set keepalive on a %T", c)
	}
	if s.UserTimeout <= 0 {
		return nil
	}
	if !userTimeoutSupported {
		return errNoUserTimeout
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("keepalive: cannot set TCP_USER_TIMEOUT on a %T", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	return setUserTimeout(rc, s.UserTimeout)
}
