package httpscope_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
)

// TestDialerReturningNothing: a Transport's dial hook that returns no
// connection and no error is a bug net/http reports as the request's
// error ("net/http: Transport.DialContext hook returned (nil, nil)", or
// ".Dial hook" for the deprecated Dial). An instrumented client must fail
// the request with the same error, not crash the program in the
// transport's dial goroutine.
func TestDialerReturningNothing(t *testing.T) {
	for _, hook := range []string{"DialContext", "Dial"} {
		t.Run(hook, func(t *testing.T) {
			var ref string
			for i, m := range diffClientModes {
				tr := &http.Transport{}
				switch hook {
				case "DialContext":
					tr.DialContext = func(context.Context, string, string) (net.Conn, error) { return nil, nil }
				case "Dial":
					tr.Dial = func(string, string) (net.Conn, error) { return nil, nil }
				}
				var rt http.RoundTripper = tr
				if m.client {
					rt = wrapForDiff(tr)
				}
				_, err := (&http.Client{Transport: rt}).Get("http://127.0.0.1:1/")
				got := fmt.Sprintf("%v (%T)", err, err)
				if i == 0 {
					ref = got
					continue
				}
				if got != ref {
					t.Errorf("instrumented client: %s\nbare:                %s", got, ref)
				}
			}
		})
	}
}
