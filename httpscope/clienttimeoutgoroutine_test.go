package httpscope_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestClientTimeoutLeavesNoGoroutine: with http.Client.Timeout set and a
// context of the program's own whose deadline comes first (a job's
// context, a server's request context), http.Client ends nothing when a
// request is over: its timer goroutine stops, and nothing else runs. The
// instrumented client must not leave a goroutine per request behind
// until that context ends, whether the request got an answer (read to
// its end, closed early), failed, or switched protocols.
func TestClientTimeoutLeavesNoGoroutine(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler) // HTTP/1: EOF; HTTP/2: the stream reset
		case "/101":
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "demo")
			w.WriteHeader(http.StatusSwitchingProtocols)
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		default:
			io.WriteString(w, "ok")
		}
	})
	for _, tc := range []struct {
		p    diffProto
		path string
		read bool // to the end, else closed unread
	}{
		{h1, "/ok", true},
		{h1, "/ok", false},
		{h1, "/abort", false},
		{h1, "/101", false},
		{h2TLS, "/ok", true},
		{h2TLS, "/ok", false},
		{h2TLS, "/abort", false},
	} {
		t.Run(fmt.Sprintf("%s %s read=%v", tc.p, tc.path[1:], tc.read), func(t *testing.T) {
			diff(t, diffClientModes, tc.p, func() *http.Server {
				return &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
			}, func(t *testing.T, env *diffEnv) string {
				env.client.Timeout = time.Hour
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				do := func() {
					req, _ := http.NewRequestWithContext(ctx, "GET", env.url+tc.path, nil)
					if tc.path == "/101" {
						req.Header.Set("Connection", "Upgrade")
						req.Header.Set("Upgrade", "demo")
					}
					resp, err := env.client.Do(req)
					if err != nil {
						return
					}
					if tc.read {
						io.Copy(io.Discard, resp.Body)
					}
					resp.Body.Close()
				}
				do() // the connection, and its goroutines, are there from now on
				before := settledGoroutines(-1)
				const n = 5
				for range n {
					do()
				}
				return fmt.Sprintf("goroutines after %d requests: %+d", n, max(0, settledGoroutines(before)-before))
			})
		})
	}
}

// settledGoroutines returns how many goroutines run once no more than
// want do (want < 0: once the count holds still for 50 ms), waiting at
// most a second: goroutines of a request just over, or of earlier tests,
// may still be ending.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(time.Second)
	last, since := runtime.NumGoroutine(), time.Now()
	for {
		time.Sleep(10 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n != last {
			last, since = n, time.Now()
		}
		if want >= 0 && n <= want || want < 0 && time.Since(since) >= 50*time.Millisecond || time.Now().After(deadline) {
			return n
		}
	}
}
