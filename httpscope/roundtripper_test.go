package httpscope_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// addHeader is a RoundTripper in the manner of oauth2.Transport: it
// sends a clone of the request with a header added, and the response it
// returns names that clone, the request actually sent.
type addHeader struct{ next http.RoundTripper }

func (a addHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	r2 := req.Clone(req.Context())
	r2.Header.Set("X-Added", "yes")
	return a.next.RoundTrip(r2)
}

// TestResponseRequestOfCustomRoundTripper: with InstrumentDefault over
// an http.DefaultClient whose Transport is the program's own RoundTripper,
// resp.Request must stay what that RoundTripper returned.
func TestResponseRequestOfCustomRoundTripper(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer ts.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = addHeader{http.DefaultTransport}

	check := func(when string) {
		t.Helper()
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Request.Header.Get("X-Added"); got != "yes" {
			t.Errorf("%s: resp.Request.Header X-Added = %q, want %q (the request the RoundTripper sent)", when, got, "yes")
		}
	}
	check("uninstrumented")
	undo := httpscope.InstrumentDefault(&connscope.Spy{Sink: &memSink{}}, nil)
	defer undo()
	check("instrumented")
}

// TestNilResponseNilError: a RoundTripper that returns neither a
// response nor an error gets an error from http.Client; instrumented, the
// program must get the same error, not a panic.
func TestNilResponseNilError(t *testing.T) {
	bad := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil })
	_, plainErr := (&http.Client{Transport: bad}).Get("http://127.0.0.1:9/")
	if plainErr == nil {
		t.Fatal("http.Client accepted a nil response")
	}
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = bad
	undo := httpscope.InstrumentDefault(&connscope.Spy{Sink: &memSink{}}, nil)
	defer undo()
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Fatalf("instrumented http.Get panicked: %v (uninstrumented: error %q)", v, plainErr)
			}
		}()
		_, err = http.Get("http://127.0.0.1:9/")
	}()
	if err == nil {
		t.Errorf("instrumented: no error, want one like %v", plainErr)
	}
}
