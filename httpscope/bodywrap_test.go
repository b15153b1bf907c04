package httpscope_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope"
)

// Guards for the response body that httpscope wraps (respBody): what the
// program sees of it, bare and instrumented, and the "HTTP(S) Error" with
// op "body" it reports.

// TestResponseBodyClosedDuringRead: a body the program closes while
// another goroutine reads it (a stream it stops) is no failure, whatever
// the Close makes that Read return. The wrapper took the Read's error,
// "http2: response body closed", which comes before the inner Close
// returns, for a failed body: an "HTTP(S) Error" at error level.
func TestResponseBodyClosedDuringRead(t *testing.T) {
	for _, p := range []diffProto{h1, h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write(make([]byte, 100))
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			})}
			env := startDiff(t, diffClient, p, srv, func(tr *http.Transport) { oneConn(tr) })
			for i := range 50 {
				resp, err := env.client.Get(env.url + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
				reading := make(chan struct{})
				read := make(chan error, 1)
				go func() {
					close(reading)
					_, err := resp.Body.Read(make([]byte, 10))
					read <- err
				}()
				<-reading
				time.Sleep(5 * time.Millisecond) // most often, the Read is under way by then
				resp.Body.Close()
				if err := within(t, read); err == nil {
					t.Fatalf("request %d: the Read of a body closed under it succeeded", i)
				}
			}
			env.tr.CloseIdleConnections()
			for _, e := range env.sink.events(0) {
				if e.Msg == connscope.MsgRequestError {
					t.Errorf("%s for a body the program closed: %+v", e.Msg, e)
				}
			}
		})
	}
}

// TestDifferentialForeignResponseBody: a body that is not one of
// net/http's transports' is handed back as it is, its type and methods
// with it: one of a scheme the *http.Transport under httpscope's hands to
// another RoundTripper (RegisterProtocol: NewFileTransport's). It was
// wrapped: *httpscope.respBody where the program had an *io.PipeReader.
func TestDifferentialForeignResponseBody(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("file body"), 0o644); err != nil {
		t.Fatal(err)
	}
	diff(t, diffModes, h1, func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })}
	}, func(t *testing.T, env *diffEnv) string {
		env.tr.RegisterProtocol("file", http.NewFileTransport(http.Dir(dir)))
		var out []string
		show := func(what string, client *http.Client, url string) {
			resp, err := client.Get(url)
			if err != nil {
				out = append(out, what+": error "+describeErr(err))
				return
			}
			_, pipe := resp.Body.(*io.PipeReader)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			out = append(out, fmt.Sprintf("%s: %q %v, *io.PipeReader %v", what, b, err, pipe))
		}
		show("file", env.client, "file:///f")
		show("http", env.client, env.url)
		return strings.Join(out, "\n")
	})
}
