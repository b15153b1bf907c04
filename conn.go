package connscope

import (
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

//go:generate go run gen_variants.go

// conn is the core of every wrapped connection. The types in
// conn_variants.go add exactly the optional methods the inner connection
// has, so that type assertions in the standard library (sendfile, splice,
// half-close) and in programs (socket options set through an interface)
// see the same capabilities as without the spy.
type conn struct {
	net.Conn
	r *Record
}

func (c *conn) spyConn() *conn { return c }

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.r.bytesRead.Add(int64(n))
		if c.r.clock {
			c.r.lastRead.Store(monoNow())
		}
	}
	if err != nil {
		c.r.readError(err)
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.r.bytesWritten.Add(int64(n))
		if c.r.clock {
			c.r.lastWrite.Store(monoNow())
		}
	}
	if err != nil {
		c.r.opError("write", err)
	}
	return n, err
}

// Close closes the inner connection and reports "Socket Close" once,
// however often it is called.
func (c *conn) Close() error {
	first := c.r.setFlag(flagClosed) // before the inner Close: a concurrent Read then sees its net.ErrClosed as ours
	err := c.Conn.Close()
	if first {
		c.r.closed()
	}
	return err
}

func (c *conn) SetDeadline(t time.Time) error {
	c.r.noteDeadline(t, flagReadInterrupt|flagWriteInterrupt)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.r.noteDeadline(t, flagReadInterrupt)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.r.noteDeadline(t, flagWriteInterrupt)
	return c.Conn.SetWriteDeadline(t)
}

// NetConn returns the wrapped connection, like (*tls.Conn).NetConn.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Unwrap returns the wrapped connection.
func (c *conn) Unwrap() net.Conn { return c.Conn }

// Record returns the connection's record.
func (c *conn) Record() *Record { return c.r }

// readFrom serves io.ReaderFrom. A source that is itself a wrapped
// connection is unwrapped first, or the kernel's splice path would not
// recognise it; both records are credited.
func (c *conn) readFrom(src io.Reader) (int64, error) {
	inner, srcRec, restore := unwrapReader(src)
	n, err := c.Conn.(io.ReaderFrom).ReadFrom(inner)
	restore()
	if n > 0 {
		c.r.bytesWritten.Add(n)
		c.r.stamp(&c.r.lastWrite)
		if srcRec != nil {
			srcRec.bytesRead.Add(n)
			srcRec.stamp(&srcRec.lastRead)
		}
	}
	if err != nil {
		relayError(srcRec, c.r, inner, err)
	} else if lr, limited := src.(*io.LimitedReader); srcRec != nil && (!limited || lr.N > 0) {
		// A LimitedReader ends at its limit, or before it at EOF;
		// anything else ended at EOF.
		srcRec.readError(io.EOF)
	}
	return n, err
}

// writeTo serves io.WriterTo, unwrapping a wrapped destination.
func (c *conn) writeTo(dst io.Writer) (int64, error) {
	inner := dst
	var dstRec *Record
	if w, ok := dst.(interface{ spyConn() *conn }); ok {
		inner, dstRec = w.spyConn().Conn, w.spyConn().r
	}
	n, err := c.Conn.(io.WriterTo).WriteTo(inner)
	if n > 0 {
		c.r.bytesRead.Add(n)
		c.r.stamp(&c.r.lastRead)
		if dstRec != nil {
			dstRec.bytesWritten.Add(n)
			dstRec.stamp(&dstRec.lastWrite)
		}
	}
	if err != nil {
		relayError(c.r, dstRec, inner, err)
	} else {
		c.r.readError(io.EOF) // WriteTo returns nil at EOF
	}
	return n, err
}

func unwrapReader(src io.Reader) (inner io.Reader, rec *Record, restore func()) {
	switch v := src.(type) {
	case interface{ spyConn() *conn }:
		return v.spyConn().Conn, v.spyConn().r, func() {}
	case *io.LimitedReader:
		if w, ok := v.R.(interface{ spyConn() *conn }); ok {
			lr := &io.LimitedReader{R: w.spyConn().Conn, N: v.N}
			return lr, w.spyConn().r, func() { v.N = lr.N }
		}
	}
	return src, nil, func() {}
}

// relayError records an error of a copy from src to dst, either of which
// may be unwrapped (nil). The kernel does not say which side failed: EPIPE
// can only come from writing; anything else is recorded on both wrapped
// sides with op "relay", which does not claim a direction it cannot know.
// With one side unwrapped (a file, a response body, any reader or
// writer), the error may be that side's own, which the copy returns as it
// got it: the wrapped side records it only if it may be its own failure.
// other is that side (the reader or writer the copy was given).
func relayError(src, dst *Record, other any, err error) {
	kind, _ := Classify(err) // not errors.Is: it survives an error whose Is panics
	if (src == nil) != (dst == nil) && !socketMayHaveFailed(err, kind, zeroCopyWith(other)) {
		return
	}
	switch {
	case kind == KindEOF:
		// Only a read ends at EOF: a source that is not wrapped (a
		// truncated body's io.ErrUnexpectedEOF) is not the destination's
		// peer closing.
		if src != nil {
			src.opError("relay", err)
		}
	case kind == KindBrokenPipe:
		// The destination's alone: a source whose destination is not
		// wrapped did nothing wrong, and must not be marked failed.
		if dst != nil {
			dst.opError("write", err)
		}
	case src != nil && dst != nil:
		src.opError("relay", err)
		dst.opError("relay", err)
	case src != nil:
		src.opError("relay", err)
	case dst != nil:
		dst.opError("relay", err)
	}
}

// socketMayHaveFailed reports whether err, which a copy between a wrapped
// socket and something unwrapped returned, may be the socket's own
// failure rather than the other side's error passed on. A *net.TCPConn's
// ReadFrom and WriteTo put whatever the copy returned in an *net.OpError
// ("readfrom", "writeto") with the socket's addresses. Inside it, the
// socket's own read or write failed with an *net.OpError of those same
// addresses; splice and sendfile, which read and write in one system
// call, fail with an errno, or with the bare error of a closed socket or
// an expired deadline: only a copy with a file or socket (zeroCopy, see
// zeroCopyWith) makes one, or another copy that the other side hands the
// socket to (a file's ReadFrom, another socket's). Anything else is the
// other side's: its own error (a file's errno, a reader's, a closed
// *tls.Conn's bare net.ErrClosed), or another socket's *net.OpError. (A
// bare error inside a file's *fs.PathError is taken for the socket's: a
// pipe's own deadline looks the same.) A copy that is not a TCPConn's
// says nothing of where its error came from: only the kind tells.
func socketMayHaveFailed(err error, kind string, zeroCopy bool) (may bool) {
	oe, ok := err.(*net.OpError)
	if !ok || oe.Op != "readfrom" && oe.Op != "writeto" {
		return connKind(kind)
	}
	defer func() {
		// A user error's Unwrap, or addresses of a type == cannot compare.
		if recover() != nil {
			may = connKind(kind)
		}
	}()
	return fromSocket(oe.Err, oe.Source, oe.Addr, zeroCopy, 0)
}

// zeroCopyWith reports whether a copy between a socket and other (its
// reader or writer) may be the kernel's, splice or sendfile, which fail
// with bare errors: other is a file or a socket (a LimitedReader's too).
func zeroCopyWith(other any) bool {
	if lr, ok := other.(*io.LimitedReader); ok {
		other = lr.R
	}
	_, ok := other.(syscall.Conn)
	return ok
}

// fromSocket reports whether err, or an error it wraps, may come from the
// socket with the local and remote addresses given (see
// socketMayHaveFailed). bare says whether err, if net.ErrClosed or
// os.ErrDeadlineExceeded as it is, may be a splice's or sendfile's.
func fromSocket(err error, local, remote net.Addr, bare bool, depth int) bool {
	if err == nil || depth > 100 { // a chain that loops
		return false
	}
	switch e := err.(type) {
	case *net.OpError:
		if local != nil && e.Source == local && e.Addr == remote {
			return true // the socket's own read or write: net's addresses are the same pointers
		}
		if e.Op != "readfrom" && e.Op != "writeto" {
			return false // another socket's read or write
		}
		// Another socket's copy from or to this one (an unwrapped
		// TCPConn's ReadFrom splices from it): look inside.
		return fromSocket(e.Err, local, remote, true, depth+1)
	case *fs.PathError:
		// A file's ReadFrom, which splices from the socket (handed the
		// copy directly, or through a bufio.Writer): look inside.
		return fromSocket(e.Err, local, remote, true, depth+1)
	case *os.SyscallError:
		if e.Syscall != "splice" && e.Syscall != "sendfile" {
			return false
		}
		// Both sides in one call: an errno no connection fails with
		// (EIO, or EINVAL from a file that cannot splice) is the file's.
		kind, _ := Classify(e)
		return connKind(kind)
	}
	if err == net.ErrClosed || err == os.ErrDeadlineExceeded {
		// Bare: splice's or sendfile's, right inside a copy that may
		// have made one. Elsewhere (a closed *tls.Conn's Write, a
		// reader's own deadline) it is the other side's.
		return bare
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return fromSocket(u.Unwrap(), local, remote, false, depth+1)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if fromSocket(e, local, remote, false, depth+1) {
				return true
			}
		}
	}
	return false
}

// connKind reports whether an error of this kind may be a connection's
// own read or write failing.
func connKind(kind string) bool {
	switch kind {
	case KindEOF, KindDeadline, KindTimeout, KindReset, KindRefused, KindBrokenPipe, KindUnreachable, KindClosed:
		return true
	}
	return false
}

func (c *conn) closeWrite() error {
	// Before the shutdown, as in closeRead: the peer's FIN in answer can
	// wake this side's reader before CloseWrite returns.
	first := c.r.setFlag(flagLocalFIN)
	err := c.Conn.(interface{ CloseWrite() error }).CloseWrite()
	if err != nil && first {
		c.r.clearFlag(flagLocalFIN)
	}
	return err
}

func (c *conn) closeRead() error {
	// Before the shutdown: the reader it wakes must see the flag.
	first := c.r.setFlag(flagLocalShutRD)
	err := c.Conn.(interface{ CloseRead() error }).CloseRead()
	if err != nil && first {
		c.r.clearFlag(flagLocalShutRD)
	}
	return err
}

// syscallConn returns the inner connection's RawConn behind a type that
// has only RawConn's methods. The net package's own also gives package os
// the socket's poll descriptor, with which (*os.File).ReadFrom and WriteTo
// splice and sendfile straight to the socket, around the wrapper and its
// counts. Without it, os goes through the wrapper's ReadFrom, which still
// sends a file with sendfile; only a copy from the socket into a file
// loses its splice.
func (c *conn) syscallConn() (syscall.RawConn, error) {
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil || rc == nil {
		return rc, err
	}
	return rawConn{rc}, nil
}

type rawConn struct{ rc syscall.RawConn }

func (r rawConn) Control(f func(fd uintptr)) error    { return r.rc.Control(f) }
func (r rawConn) Read(f func(fd uintptr) bool) error  { return r.rc.Read(f) }
func (r rawConn) Write(f func(fd uintptr) bool) error { return r.rc.Write(f) }

// readFromPacket and writeToPacket serve net.PacketConn (UDP, unixgram),
// whose ReadFrom and WriteTo take bytes and an address: Go's DNS client,
// for one, frames its queries by whether the conn is a PacketConn.
func (c *conn) readFromPacket(b []byte) (int, net.Addr, error) {
	n, addr, err := c.Conn.(net.PacketConn).ReadFrom(b)
	if n > 0 {
		c.r.bytesRead.Add(int64(n))
		c.r.stamp(&c.r.lastRead)
	}
	if err != nil {
		c.r.readError(err)
	}
	return n, addr, err
}

func (c *conn) writeToPacket(b []byte, addr net.Addr) (int, error) {
	n, err := c.Conn.(net.PacketConn).WriteTo(b, addr)
	if n > 0 {
		c.r.bytesWritten.Add(int64(n))
		c.r.stamp(&c.r.lastWrite)
	}
	if err != nil {
		c.r.opError("write", err)
	}
	return n, err
}

// RecordOf returns the Record of a connection wrapped by a Spy, looking
// through layers that expose NetConn (such as *tls.Conn), or nil.
func RecordOf(c net.Conn) *Record {
	for range 8 {
		switch v := c.(type) {
		case nil:
			return nil
		case interface{ spyConn() *conn }:
			return v.spyConn().r
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func (r *Record) noteDeadline(t time.Time, f uint32) {
	// A deadline in the past is how net/http interrupts its own blocked
	// reads; the error it causes is not a timeout worth reporting.
	if !t.IsZero() && t.Before(time.Now()) {
		r.flags.Or(f)
	} else if r.has(f) {
		r.clearFlag(f)
	}
	// A new deadline is a new timeout to report.
	timedOut := uint32(0)
	if f&flagReadInterrupt != 0 {
		timedOut |= flagReadTimedOut
	}
	if f&flagWriteInterrupt != 0 {
		timedOut |= flagWriteTimedOut
	}
	if r.has(timedOut) {
		r.clearFlag(timedOut)
	}
}

func (r *Record) readError(err error) {
	if err == io.EOF {
		if r.has(flagLocalShutRD | flagAborted) {
			// Not a FIN: this program's CloseRead, or the 0-byte read
			// of a socket the kernel already ended (reset, timeout).
			return
		}
		if r.setFlag(flagEOF) {
			r.flags.Or(r.remoteClose())
			e := Event{Message: MsgEnd, Conn: r}
			if r.State() == StateIdle {
				// The peer closed a connection this program kept idle: how
				// long it sat is the peer's (or a load balancer's) idle timeout.
				e.Idle = r.idleFor()
			}
			r.emitOwn(e, false)
		}
		return
	}
	r.opError("read", err)
}

// remoteClose returns flagRemoteClosed, unless this side sent its FIN
// first (CloseWrite): the peer's FIN, RST or EPIPE that follows is its
// answer, and the close was this side's.
func (r *Record) remoteClose() uint32 {
	if r.has(flagLocalFIN) {
		return 0
	}
	return flagRemoteClosed
}

func (r *Record) opError(op string, err error) {
	flags := r.flags.Load()
	// Classify, not errors.Is: it survives an error whose Is panics.
	kind, _ := Classify(err)
	if flags&flagClosed != 0 && kind == KindClosed {
		return // our own Close interrupted it
	}
	msg := MsgError
	switch kind {
	case KindEOF:
		r.readError(io.EOF)
		return
	case KindDeadline:
		interrupt, timedOut := flagReadInterrupt, flagReadTimedOut
		if op == "write" {
			interrupt, timedOut = flagWriteInterrupt, flagWriteTimedOut
		}
		if flags&uint32(interrupt) != 0 {
			return
		}
		// Once a deadline has passed, every call fails at once with the
		// same error until the program sets another, and a program may
		// call again (net/http's server reads three times after its
		// ReadHeaderTimeout): one "Socket Timeout" per deadline.
		if !r.setFlag(uint32(timedOut)) {
			return
		}
		msg = MsgTimeout
	case KindTimeout:
		msg = MsgTimeout
		r.flags.Or(flagHadError | flagAborted)
	case KindUnreachable:
		r.flags.Or(flagHadError | flagAborted)
	case KindReset, KindBrokenPipe:
		r.flags.Or(flagHadError | flagAborted | r.remoteClose())
	default:
		r.flags.Or(flagHadError)
	}
	r.lastErr.Store(&errorRecord{op: op, err: err, at: time.Now()})
	r.emitOwn(Event{Message: msg, Conn: r, Op: op, Err: err}, false)
}

func (r *Record) closed() {
	r.closeFlow()
	flags := r.flags.Load()
	by := "local"
	if flags&flagRemoteClosed != 0 {
		by = "remote"
	}
	e := Event{Message: MsgClose, Conn: r, HadError: flags&flagHadError != 0, ClosedBy: by,
		Duration: time.Duration(r.closedNs.Load() - r.openNs)}
	if t := r.target.Load(); t != nil {
		e.Target = *t
	}
	r.emitOwn(e, true)
}

// closedAfter runs what follows "Socket Close", once it is emitted.
func (r *Record) closedAfter() {
	s := r.spy
	if h := s.Hooks.ConnClosed; h != nil {
		s.callHook("ConnClosed", func() { h(r) })
	}
	// Last, so that a program that waits for Stats().Open to reach 0
	// before closing its sink does not lose this "Socket Close".
	s.open.Add(-1)
}
