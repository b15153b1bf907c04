package httpscope_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestResponseBodyFailureReported: a response whose body fails after its
// headers (the backend hangs or dies mid-body, the caller's deadline
// passes or it cancels) gives one "HTTP(S) Error" with op "body", on the
// connection and request of its "HTTP(S) Response", with the status the
// answer began with; the program's error is the bare program's. A body
// read to its end, or closed early by the program, gives none.
func TestResponseBodyFailureReported(t *testing.T) {
	const part = 1000 // bytes the handler sends before it stops
	type result struct {
		err  error
		evs  []ev
		kind string
	}
	cases := []struct {
		name      string
		handler   string // what the handler does after part bytes: "hang", "abort", "finish"
		client    string // "deadline", "timeout" (Client.Timeout), "cancel", "close", "read"
		wantLevel slog.Level
		wantKind  string // of the program's error and the event's; "" for no error
	}{
		{"backend hangs, context deadline", "hang", "deadline", slog.LevelError, connscope.KindDeadline},
		{"backend hangs, Client.Timeout", "hang", "timeout", slog.LevelError, connscope.KindDeadline},
		{"backend dies mid-body", "abort", "read", slog.LevelError, ""},
		{"caller cancels mid-body", "hang", "cancel", slog.LevelInfo, connscope.KindCanceled},
		{"caller closes early", "hang", "close", 0, ""},
		{"body read to the end", "finish", "read", 0, ""},
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				handler := func(release <-chan struct{}) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Content-Length", "100000")
						w.Write(make([]byte, part))
						w.(http.Flusher).Flush()
						switch tc.handler {
						case "hang":
							select {
							case <-r.Context().Done():
							case <-release:
							case <-time.After(10 * time.Second):
							}
						case "abort":
							panic(http.ErrAbortHandler)
						case "finish":
							w.Write(make([]byte, 100000-part))
						}
					})
				}
				run := func(spied bool) result {
					sink := &memSink{}
					var spy *connscope.Spy
					if spied {
						spy = &connscope.Spy{Sink: sink}
					}
					release := make(chan struct{})
					url, pool := startTLS(t, nil, handler(release))
					tr := &http.Transport{TLSClientConfig: pool.cfg, ForceAttemptHTTP2: proto == "HTTP/2.0"}
					if proto == "HTTP/1.1" {
						tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
					}
					defer tr.CloseIdleConnections()
					var rt http.RoundTripper = tr
					if spied {
						rt = httpscope.WrapTransport(spy, tr, nil)
					}
					client := &http.Client{Transport: rt}
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					switch tc.client {
					case "deadline":
						ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
						defer cancel()
					case "timeout":
						client.Timeout = 300 * time.Millisecond
					}
					req, _ := http.NewRequestWithContext(ctx, "GET", url+"/body", nil)
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("request: %v", err)
					}
					if resp.Proto != proto {
						t.Fatalf("protocol %s, want %s", resp.Proto, proto)
					}
					if _, err := io.ReadFull(resp.Body, make([]byte, part)); err != nil {
						t.Fatalf("first bytes: %v", err)
					}
					switch tc.client {
					case "cancel":
						cancel()
					case "close":
						resp.Body.Close()
						resp.Body.Close()                        // twice: still no event
						_, err = resp.Body.Read(make([]byte, 1)) // a read after Close is the program's mistake, not the body's failure
						if err == nil {
							t.Error("read after Close succeeded")
						}
						err = nil
					}
					if tc.client != "close" {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					close(release)
					tr.CloseIdleConnections()
					kind, _ := connscope.Classify(err)
					return result{err: err, evs: sink.events(connscope.Client), kind: kind}
				}
				bare, spied := run(false), run(true)
				if (bare.err == nil) != (spied.err == nil) || bare.err != nil && bare.err.Error() != spied.err.Error() {
					t.Fatalf("error %v, bare program's %v", spied.err, bare.err)
				}
				if tc.wantKind != "" && spied.kind != tc.wantKind {
					t.Errorf("program's error %v is %q, want %q", spied.err, spied.kind, tc.wantKind)
				}
				var resp, fail []ev
				for _, e := range spied.evs {
					switch e.Msg {
					case connscope.MsgResponse:
						resp = append(resp, e)
					case connscope.MsgRequestError:
						fail = append(fail, e)
					}
				}
				if len(resp) != 1 {
					t.Fatalf("events %q: want one HTTP(S) Response", messages(spied.evs))
				}
				if spied.err == nil {
					if len(fail) != 0 {
						t.Fatalf("events %q: an HTTP(S) Error where the program saw none", messages(spied.evs))
					}
					return
				}
				if len(fail) != 1 {
					t.Fatalf("events %q: want one HTTP(S) Error", messages(spied.evs))
				}
				f := fail[0]
				if f.Op != "body" || f.ID != resp[0].ID || f.Request != resp[0].Request || f.Status != 200 || f.Proto != proto ||
					!strings.HasSuffix(f.Target, "/body") || f.Level != tc.wantLevel {
					t.Errorf("HTTP(S) Error %+v, want op body, the response's id %v and request %d, status 200, %s, level %v",
						f, resp[0].ID, resp[0].Request, proto, tc.wantLevel)
				}
				if kind, _ := connscope.Classify(f.Err); tc.wantKind != "" && kind != tc.wantKind {
					t.Errorf("event's error %v is %q, want %q", f.Err, kind, tc.wantKind)
				}
			})
		}
	}
}

// TestCanceledRequestIsInfo: a request the program cancels before its
// answer is an info "HTTP(S) Error", a deadline an error one.
func TestCanceledRequestIsInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		want slog.Level
	}{{"cancel", slog.LevelInfo}, {"deadline", slog.LevelError}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			arrived := make(chan struct{}, 1)
			ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			}), nil)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.name == "deadline" {
				ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
			} else {
				go func() {
					<-arrived
					cancel()
				}()
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/slow", nil)
			_, err := client.Do(req)
			want := context.Canceled
			if tc.name == "deadline" {
				want = context.DeadlineExceeded
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %v, want %v", err, want)
			}
			var got []ev
			for _, e := range sink.events(0) {
				if e.Msg == connscope.MsgRequestError {
					got = append(got, e)
				}
			}
			if len(got) != 1 || got[0].Level != tc.want || got[0].Op != "request" {
				t.Fatalf("HTTP(S) Errors %+v, want one at level %v", got, tc.want)
			}
		})
	}
}
