package httpscope_test

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// cancelOnly is a RoundTripper of the pre-context kind: it stops when
// Request.Cancel closes, or gives up after a while.
type cancelOnly struct{}

func (cancelOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-req.Cancel:
		return nil, errors.New("stopped by Request.Cancel")
	case <-t.C:
		return nil, errors.New("Request.Cancel never closed")
	}
}

// TestDifferentialClientTimeoutRegisteredProtocol: a request that the
// *http.Transport hands to a RoundTripper registered for its scheme is
// ended by http.Client's timeout through Request.Cancel, as http.Client
// does for a RoundTripper it does not know. httpscope took the transport
// for net/http's own, which ends requests at their context's deadline,
// and let through only a Cancel that closed before the deadline: the
// RoundTripper never saw the timeout.
func TestDifferentialClientTimeoutRegisteredProtocol(t *testing.T) {
	diffEach(t, diffClientModes, h1, func(t *testing.T, m diffMode) string {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		tr.RegisterProtocol("legacy", cancelOnly{})
		var rt http.RoundTripper = tr
		if m.client {
			rt = wrapForDiff(tr)
		}
		_, err := (&http.Client{Transport: rt, Timeout: 50 * time.Millisecond}).Get("legacy://host/")
		return describeErr(err)
	})
}
