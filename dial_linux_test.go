package connscope

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/refused"
)

// fullListener returns the address of a listening TCP socket whose accept
// queue is full and never drained: Linux drops the SYNs of further
// connects, so a dial there hangs until its deadline, as one to a
// firewalled host does. Closed at the end of the test.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	for range 4 {
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s: 4 connects went through a listen backlog of 0", addr)
	return ""
}

// TestDialTimeoutIsSocketTimeout: a dial whose deadline expires is a
// "Socket Timeout" (warn), as a read's is, whether the deadline is the
// Dialer's Timeout or the context's; a refused one is a "Socket Error".
func TestDialTimeoutIsSocketTimeout(t *testing.T) {
	hang := fullListener(t)
	refusedAddr := refused.Addr(t)
	for _, tc := range []struct {
		name    string
		dialer  net.Dialer
		timeout time.Duration // of the context, if not 0
		addr    string
		want    string
	}{
		{"Dialer.Timeout", net.Dialer{Timeout: 100 * time.Millisecond}, 0, hang, MsgTimeout},
		{"context deadline", net.Dialer{}, 100 * time.Millisecond, hang, MsgTimeout},
		{"refused", net.Dialer{}, 0, refusedAddr, MsgError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			ctx := context.Background()
			if tc.timeout != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			c, err := spy.WrapDial(tc.dialer.DialContext)(ctx, "tcp4", tc.addr)
			if err == nil {
				c.Close()
				t.Fatalf("dial %s succeeded", tc.addr)
			}
			got := sink.all()
			if len(got) != 1 || got[0].Message != tc.want || got[0].Op != "dial" || got[0].Err != err {
				t.Fatalf("events %q for dial error %v; want one %q with op dial and that error", sink.messages(), err, tc.want)
			}
			if want := levelFor(tc.want, err); got[0].Level != want {
				t.Errorf("level %v, want %v", got[0].Level, want)
			}
		})
	}
}
