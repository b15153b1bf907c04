package httpscope_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestClientTimeoutSameError: with http.Client.Timeout set, net/http
// handles any RoundTripper that is not its own (httpscope's, otelhttp's)
// the pre-context way: a timer goroutine per request and the deprecated
// Request.Cancel. The program must still get the error it got without the
// spy when the timeout fires, waiting for the headers or reading the body,
// over HTTP/1 and HTTP/2: the same text, a url.Error that is a timeout and
// a context.DeadlineExceeded. And the spy reports the request's failure.
func TestClientTimeoutSameError(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/midbody" {
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
		}
		select { // hang: the client's timeout ends the request
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	plain := startPlain(t, nil, h, nil)
	tlsURL, p := startTLS(t, nil, h)
	defer close(release) // before the servers' cleanups close them

	// The program's own ways to end a request early, after d, beside
	// Client.Timeout: a deadline of its own that comes first, a cancel,
	// the deprecated Request.Cancel.
	ownDeadline := func(r *http.Request, d time.Duration) (*http.Request, func()) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		return r.WithContext(ctx), cancel
	}
	ownCancel := func(r *http.Request, d time.Duration) (*http.Request, func()) {
		ctx, cancel := context.WithCancel(r.Context())
		t := time.AfterFunc(d, cancel)
		return r.WithContext(ctx), func() { t.Stop(); cancel() }
	}
	legacyCancel := func(r *http.Request, d time.Duration) (*http.Request, func()) {
		c := make(chan struct{})
		t := time.AfterFunc(d, func() { close(c) })
		r.Cancel = c
		return r, func() { t.Stop() }
	}
	for _, tc := range []struct {
		name, url string
		h2        bool
		prepare   func(*http.Request, time.Duration) (*http.Request, func())
		timeout   bool // the error is a timeout
	}{
		{"HTTP/1 awaiting headers", plain.URL + "/headers", false, nil, true},
		{"HTTP/1 reading the body", plain.URL + "/midbody", false, nil, true},
		{"HTTP/2 awaiting headers", tlsURL + "/headers", true, nil, true},
		{"HTTP/2 reading the body", tlsURL + "/midbody", true, nil, true},
		{"HTTP/1 own earlier deadline", plain.URL + "/headers", false, ownDeadline, true},
		{"HTTP/2 own earlier deadline, body", tlsURL + "/midbody", true, ownDeadline, true},
		{"HTTP/1 own cancel", plain.URL + "/headers", false, ownCancel, false},
		{"HTTP/2 own cancel, body", tlsURL + "/midbody", true, ownCancel, false},
		{"HTTP/1 Request.Cancel", plain.URL + "/headers", false, legacyCancel, false},
		{"HTTP/1 Request.Cancel, body", plain.URL + "/midbody", false, legacyCancel, false},
		{"HTTP/2 Request.Cancel", tlsURL + "/headers", true, legacyCancel, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.HasSuffix(tc.url, "/midbody")
			// do runs the request under Client.Timeout timeout, the
			// program's own end, if any, coming after a third of it. It
			// returns the error that ended the request, and whether that
			// is the end the case is about: the request was sent first
			// (not still dialing), and a body case's headers came, and a
			// request the program ended itself was over before
			// Client.Timeout: past it, http.Client says the request timed
			// out whatever ended it (it reads its timer, or for its own
			// transport the clock), with the spy or without.
			do := func(spied bool, timeout time.Duration, sink *memSink) (error, bool) {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = p.cfg
				defer tr.CloseIdleConnections()
				var rt http.RoundTripper = tr
				if spied {
					rt = httpscope.WrapTransport(&connscope.Spy{Sink: sink}, tr, nil)
				}
				c := &http.Client{Transport: rt, Timeout: timeout}
				var wrote atomic.Bool
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
				})
				req, err := http.NewRequestWithContext(ctx, "GET", tc.url, nil)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if tc.prepare != nil {
					var done func()
					req, done = tc.prepare(req, timeout/3)
					defer done()
				}
				resp, err := c.Do(req)
				headers := err == nil
				if err == nil {
					if got := resp.ProtoMajor == 2; got != tc.h2 {
						t.Fatalf("spied=%v: %s, want HTTP/2 %v", spied, resp.Proto, tc.h2)
					}
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil {
					t.Fatalf("spied=%v: no error, want the request ended", spied)
				}
				return err, wrote.Load() && (headers || !body) && (tc.prepare == nil || time.Since(start) < timeout)
			}
			// A busy machine may need more time for that: each attempt
			// doubles it.
			var errs [2]error
			var sink *memSink
			for timeout := 150 * time.Millisecond; ; timeout *= 2 {
				sink = &memSink{}
				bare, bareOK := do(false, timeout, sink)
				spied, spiedOK := do(true, timeout, sink)
				errs = [2]error{bare, spied}
				if bareOK && spiedOK {
					break
				}
				if timeout >= 2*time.Second {
					t.Fatalf("the requests did not end as the case wants, even with Client.Timeout %v: bare %v, spied %v", timeout, bare, spied)
				}
				t.Logf("Client.Timeout %v: a request did not end as the case wants (bare %v, spied %v); again with more time", timeout, bare, spied)
			}
			bare, spied := errs[0], errs[1]
			if b, s := bare.Error(), spied.Error(); b != s {
				t.Errorf("error text differs:\nbare:  %s\nspied: %s", b, s)
			}
			for i, err := range errs {
				var ne net.Error
				isTimeout := errors.As(err, &ne) && ne.Timeout()
				if isTimeout != tc.timeout || errors.Is(err, context.DeadlineExceeded) != tc.timeout {
					t.Errorf("%s error %v (%T): want a timeout %v", []string{"bare", "spied"}[i], err, err, tc.timeout)
				}
			}
			if !body {
				waitFor(t, "the spy's HTTP(S) Error", func() bool { return count(sink, connscope.MsgRequestError) == 1 })
			}
		})
	}
}

// TestLegacyCancelEmptyBodyStaysNoBody: a request with the deprecated
// Request.Cancel and a deadline looks, to the spy, like one under
// Client.Timeout, whose bodies it wraps (see deadlineBody). An empty
// body, a HEAD's or a 204's, stays the one net/http gives.
func TestLegacyCancelEmptyBodyStaysNoBody(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "body")
	}), nil)
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var bodies [2]io.ReadCloser
			for i, spied := range []bool{false, true} {
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				var rt http.RoundTripper = tr
				if spied {
					rt = httpscope.WrapTransport(&connscope.Spy{Sink: &memSink{}}, tr, nil)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, tc.method, ts.URL+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Cancel = make(chan struct{})
				resp, err := (&http.Client{Transport: rt}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				bodies[i] = resp.Body
			}
			if (bodies[0] == http.NoBody) != (bodies[1] == http.NoBody) {
				t.Errorf("body %T bare, %T spied", bodies[0], bodies[1])
			}
		})
	}
}

// TestClientTimeoutCancelOnlyRoundTripper: a RoundTripper of the
// program's under the spy's (InstrumentDefault over a Transport of its
// own) that ends a request by the deprecated Request.Cancel alone, as
// RoundTrippers from before contexts do, is still ended by
// Client.Timeout, with the error it gives without the spy.
func TestClientTimeoutCancelOnlyRoundTripper(t *testing.T) {
	const timeout = 150 * time.Millisecond
	release := make(chan struct{})
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hang: the client's timeout ends the request
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}), nil)
	defer close(release)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r2 := req.WithContext(context.Background()) // pre-context: Cancel only
		r2.Cancel = req.Cancel
		return base.RoundTrip(r2)
	})
	do := func() (error, time.Duration) {
		start := time.Now()
		c := &http.Client{Transport: http.DefaultClient.Transport, Timeout: timeout}
		resp, err := c.Get(ts.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err, time.Since(start)
	}
	bareErr, bareTook := do()
	undo := httpscope.InstrumentDefault(&connscope.Spy{Sink: &memSink{}}, nil)
	defer undo()
	spiedErr, spiedTook := do()
	if bareErr == nil || spiedErr == nil || bareErr.Error() != spiedErr.Error() {
		t.Errorf("errors differ:\nbare:  %v\nspied: %v", bareErr, spiedErr)
	}
	if spiedTook > bareTook+time.Second {
		t.Errorf("spied request took %v, bare %v: Client.Timeout (%v) did not end it", spiedTook, bareTook, timeout)
	}
}
