package httpscope_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// lostBody is a request body that sends "partial", then, once released
// (at once if release is nil), fails with err: an error that a lost
// connection gives too. A proxy's upstream body that is cut short fails
// with io.ErrUnexpectedEOF, one read from a closed connection with
// net.ErrClosed.
type lostBody struct {
	err     error
	release <-chan struct{}
	sent    bool
}

func (b *lostBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "partial"), nil
	}
	if b.release != nil {
		select {
		case <-b.release:
		case <-time.After(5 * time.Second):
		}
	}
	return 0, b.err
}

// TestHTTP2RequestBodyErrorLikeALostConnection: over HTTP/2 the failure
// of a request's own body resets its stream only, whatever the error
// says: the pooled connection goes back idle, before or after the
// response's headers arrived, and serves the next request.
func TestHTTP2RequestBodyErrorLikeALostConnection(t *testing.T) {
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/answer-first" {
			w.(http.Flusher).Flush() // the response's headers, before the body is read
		}
		io.Copy(io.Discard, r.Body)
	}))
	for _, bodyErr := range []error{io.ErrUnexpectedEOF, net.ErrClosed} {
		for _, path := range []string{"/upload", "/answer-first"} {
			t.Run(strings.ReplaceAll(bodyErr.Error(), " ", "_")+path, func(t *testing.T) {
				sink := &memSink{}
				var rs records
				client := h2Client(t, &rs, sink, p, nil)
				if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
					t.Fatalf("first: %s, want HTTP/2", resp.Proto)
				}
				release := make(chan struct{})
				if path == "/upload" {
					close(release)
				}
				req, err := http.NewRequest(http.MethodPost, url+path, &lostBody{err: bodyErr, release: release})
				if err != nil {
					t.Fatal(err)
				}
				resp, err := client.Do(req)
				if path == "/answer-first" {
					if err != nil {
						t.Fatal(err)
					}
					close(release)
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if !errors.Is(err, bodyErr) {
					t.Fatalf("got %v, want the body's %v", err, bodyErr)
				}
				r := rs.all()[0]
				got := messages(sink.events(connscope.Client))
				if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 || got[len(got)-1] != connscope.MsgIdle {
					t.Fatalf("after the body's error: state %v, %d in flight, events %q; want idle, 0, ending in Socket Idle", s, n, got)
				}
				get(t, client, url+"/after")
				if n := len(rs.all()); n != 1 {
					t.Errorf("%d connections, want the first one reused", n)
				}
			})
		}
	}
}

// readFromConn is a TCP connection that notes what its ReadFrom (the way
// to sendfile) is given.
type readFromConn struct {
	*net.TCPConn
	mu   *sync.Mutex
	srcs *[]io.Reader
}

func (c readFromConn) ReadFrom(r io.Reader) (int64, error) {
	c.mu.Lock()
	*c.srcs = append(*c.srcs, r)
	c.mu.Unlock()
	return c.TCPConn.ReadFrom(r)
}

// TestHTTP1FileUploadStillReachesReadFrom: tracing a request does not
// touch its body. An *os.File uploaded over HTTP/1 reaches the
// connection's ReadFrom, which sends it with sendfile, through the spy's
// wrapper, as it would without the spy.
func TestHTTP1FileUploadStillReachesReadFrom(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: past the transport's write buffer
	path := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan int64, 1)
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- n
	}), nil)
	var mu sync.Mutex
	var srcs []io.Reader
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return readFromConn{c.(*net.TCPConn), &mu, &srcs}, nil
	}}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(&connscope.Spy{Sink: &memSink{}}, base, nil)}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/upload", f) // closes f
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := <-got; n != int64(len(data)) {
		t.Fatalf("server read %d bytes, want %d", n, len(data))
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(srcs, func(r io.Reader) bool {
		lr, ok := r.(*io.LimitedReader)
		_, file := lr.R.(*os.File)
		return ok && file
	}) {
		var got []string
		for _, r := range srcs {
			if lr, ok := r.(*io.LimitedReader); ok {
				r = lr.R
			}
			got = append(got, fmt.Sprintf("%T", r))
		}
		t.Errorf("the connection's ReadFrom got %q, want the *os.File (in an *io.LimitedReader) that sendfile needs", got)
	}
}
