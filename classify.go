package connscope

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Error kinds returned by [Classify].
const (
	KindEOF         = "eof"         // the peer closed its side (FIN); net/http's "server closed idle connection" too
	KindDeadline    = "deadline"    // a deadline set by the program expired
	KindTimeout     = "timeout"     // the kernel gave up on the peer (ETIMEDOUT): keepalive, retransmission or TCP_USER_TIMEOUT
	KindReset       = "reset"       // the peer (or a middlebox) sent RST
	KindRefused     = "refused"     // nothing listened at the address
	KindBrokenPipe  = "broken-pipe" // writing after the peer reset the connection
	KindUnreachable = "unreachable" // ICMP unreachable came back, or no route
	KindClosed      = "closed"      // use of a connection this program already closed
	KindCanceled    = "canceled"    // a context was canceled
	KindDNS         = "dns"         // name resolution failed
	KindTLS         = "tls"         // the TLS handshake or a record failed
	KindOther       = "other"
)

// errnoNames names the errnos a connection meets, and the kind of the
// ones Classify decides by errno alone.
var errnoNames = []struct {
	errno syscall.Errno
	name  string
	kind  string
}{
	{syscall.ECONNRESET, "ECONNRESET", KindReset},
	{syscall.ETIMEDOUT, "ETIMEDOUT", KindTimeout},
	{syscall.EPIPE, "EPIPE", KindBrokenPipe},
	{syscall.ECONNREFUSED, "ECONNREFUSED", KindRefused},
	{syscall.EHOSTUNREACH, "EHOSTUNREACH", KindUnreachable},
	{syscall.ENETUNREACH, "ENETUNREACH", KindUnreachable},
	{syscall.ECONNABORTED, "ECONNABORTED", KindReset},
	{syscall.EADDRINUSE, "EADDRINUSE", ""},
	{syscall.EADDRNOTAVAIL, "EADDRNOTAVAIL", ""},
	{syscall.ENETDOWN, "ENETDOWN", ""},
	{syscall.ENOBUFS, "ENOBUFS", ""},
	{syscall.EMFILE, "EMFILE", ""},
	{syscall.ENFILE, "ENFILE", ""},
	{syscall.EACCES, "EACCES", ""},
	{syscall.EPERM, "EPERM", ""},
	{syscall.EINVAL, "EINVAL", ""},
}

// Errno returns the symbolic name of the system error inside err
// ("ECONNRESET", "ETIMEDOUT", ...), or "" if there is none.
func Errno(err error) string {
	name, _ := errnoOf(err)
	return name
}

func errnoOf(err error) (name, kind string) {
	en, ok := asError[syscall.Errno](err)
	if !ok {
		return "", ""
	}
	for _, e := range errnoNames {
		if en == e.errno {
			return e.name, e.kind
		}
	}
	return "errno " + itoa(int64(en)), ""
}

// Classify sorts err into one of the Kind constants and names its errno.
// It is the one place where connscope decides what an error means; it
// never changes err. A nil error has kind "".
func Classify(err error) (kind, errno string) {
	if err == nil {
		return "", ""
	}
	if err == io.EOF {
		return KindEOF, ""
	}
	// A user error type's Is, As or Unwrap may panic; the spy must not,
	// where the program itself would not have looked.
	defer func() {
		if recover() != nil {
			kind, errno = KindOther, ""
		}
	}()
	// Most connection errors carry an errno: one walk of the chain
	// decides them, instead of an errors.Is per kind.
	errno, kind = errnoOf(err)
	if kind != "" {
		return kind, errno
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindEOF, errno
	// Both a deadline and a kernel ETIMEDOUT report Timeout() == true:
	// tell them apart by the sentinel, not by net.Error.
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return KindDeadline, errno
	case errors.Is(err, net.ErrClosed):
		return KindClosed, errno
	case errors.Is(err, context.Canceled):
		return KindCanceled, errno
	// An error that is not an Errno but says it is one (an Is method).
	case errors.Is(err, syscall.ETIMEDOUT):
		return KindTimeout, errno
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED):
		return KindReset, errno
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused, errno
	case errors.Is(err, syscall.EPIPE):
		return KindBrokenPipe, errno
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return KindUnreachable, errno
	}
	if _, ok := asError[*net.DNSError](err); ok {
		return KindDNS, errno
	}
	if _, ok := asError[tls.RecordHeaderError](err); ok {
		return KindTLS, errno
	}
	if _, ok := asError[tls.AlertError](err); ok {
		return KindTLS, errno
	}
	if _, ok := asError[*tls.CertificateVerificationError](err); ok {
		return KindTLS, errno
	}
	// Over TCP, crypto/tls returns an alert (the peer's, or one it sent)
	// as a *net.OpError with one of these ops around an unexported type:
	// tls.AlertError is what QUIC connections return.
	if oe, ok := asError[*net.OpError](err); ok && (oe.Op == "remote error" || oe.Op == "local error") {
		return KindTLS, errno
	}
	if serverClosedIdle(err) {
		return KindEOF, errno
	}
	return KindOther, errno
}

// serverClosedIdle reports whether err is, or wraps, the error with which
// net/http's Transport fails a request on a pooled connection whose
// server had closed it (its FIN read while the connection was idle): the
// peer's EOF under another name, in the very race connscope exists to
// show. net/http does not export it: known by its text.
func serverClosedIdle(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "http: server closed idle connection" {
			return true
		}
	}
	return false
}

// asError is errors.As for a target type T. errors.As makes its target
// escape, one allocation per call, which every encoded error event paid
// several times; this walks the tree itself and calls errors.As only
// for an error that has an As method.
func asError[T error](err error) (T, bool) {
	var zero T
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		switch u := err.(type) {
		case interface{ As(any) bool }:
			var t T
			if errors.As(err, &t) {
				return t, true
			}
			return zero, false
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if t, ok := asError[T](e); ok {
					return t, true
				}
			}
			return zero, false
		default:
			return zero, false
		}
	}
	return zero, false
}

func itoa(v int64) string { return string(appendInt(nil, v)) }

// errorText returns err.Error(), or a note that it panicked: an error the
// program never prints (a typed nil whose Error method dereferences it,
// say) must not make the spy panic where the program would not.
func errorText(err error) (s string) {
	defer func() {
		if v := recover(); v != nil {
			s = fmt.Sprintf("%T (its Error method panicked: %v)", err, v)
		}
	}()
	return err.Error()
}
