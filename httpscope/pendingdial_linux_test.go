package httpscope_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/blackhole"
)

// TestRequestGivesUpDuringDialNamesTheDial: a request whose deadline
// passes while its dial waits for a peer that does not answer (a
// firewall dropping SYNs) names that dial in its "HTTP(S) Error": the
// dial's own event, which comes when the dial ends, has the same id.
func TestRequestGivesUpDuringDialNamesTheDial(t *testing.T) {
	addr := blackhole.Addr(t)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	// The dial outlives the request (net/http lets it run, to pool what
	// it gets): its own deadline ends it.
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 600 * time.Millisecond}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/firewalled", nil)
	if _, err := client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the deadline's", err)
	}
	var reqErr ev
	waitFor(t, "the dial's own event", func() bool {
		for _, e := range sink.events(0) {
			if e.Msg == connscope.MsgRequestError {
				reqErr = e
			}
		}
		for _, e := range sink.events(0) {
			if e.Msg == connscope.MsgTimeout && e.Op == "dial" {
				if reqErr.Op != "dial" {
					t.Errorf("HTTP(S) Error op %q, want dial: the request gave up while connecting", reqErr.Op)
				}
				if reqErr.ID.IsZero() || e.ID != reqErr.ID {
					t.Fatalf("HTTP(S) Error id %v, want the dial's %v", reqErr.ID, e.ID)
				}
				return true
			}
		}
		return false
	})
}
