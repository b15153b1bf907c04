package httpscope_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/selfsigned"
)

// TestHTTP2MaxConcurrentStreams: a server that allows one stream per
// connection (golang.org/x/net/http2's MaxConcurrentStreams) makes the
// client open more connections and retry streams on them. Every request
// is answered once, and every connection that carried one ends idle with
// nothing in flight.
func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		io.WriteString(w, "ok")
	})}
	if err := http2.ConfigureServer(srv, &http2.Server{MaxConcurrentStreams: 1}); err != nil {
		t.Fatal(err)
	}
	cert, pool, err := selfsigned.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv.TLSConfig.Certificates = []tls.Certificate{cert}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	defer func() { srv.Close(); <-done }()
	url := "https://" + ln.Addr().String()
	sink := &memSink{}
	var rs records
	client := h2Client(t, &rs, sink, &tlsPool{&tls.Config{RootCAs: pool}}, nil)
	const n = 6
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := get(t, client, url+"/"); resp.ProtoMajor != 2 {
				t.Errorf("%s, want HTTP/2", resp.Proto)
			}
		}()
	}
	wg.Wait()
	responses := 0
	for _, e := range sink.events(connscope.Client) {
		if e.Msg == connscope.MsgResponse {
			responses++
		}
	}
	if responses != n {
		t.Errorf("%d HTTP(S) Response events, want %d", responses, n)
	}
	for _, r := range rs.all() {
		if s := r.State(); r.InFlight() != 0 || r.Requests() > 0 && s != connscope.StateIdle && s != connscope.StateClosed {
			t.Errorf("connection %v: state %v, %d in flight after %d requests; want idle or closed, 0", r.ID(), s, r.InFlight(), r.Requests())
		}
	}
}

// h2cServer serves unencrypted HTTP/2 on loopback by hand, allowing one
// stream at a time. Every request gets 200 with no body, once the channel
// for its path in answers, if any, is closed. A connection whose first
// request is for path sends its SETTINGS when settings[path], if any, is
// closed, and closes acked[path], if any, when the client has applied
// them. Connections are told apart by their first request, not by the
// order they come in: net/http may dial more than the requests need (and
// close the spares unused, having sent nothing on them).
func h2cServer(t *testing.T, settings, acked, answers map[string]chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wait := func(c <-chan struct{}) {
		if c == nil {
			return
		}
		select {
		case <-c:
		case <-time.After(5 * time.Second):
		}
	}
	var ackedMu sync.Mutex // two connections may start with the same path
	serve := func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		var wmu sync.Mutex // answers are written as they come
		var hdr bytes.Buffer
		hpack.NewEncoder(&hdr).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		first := ""         // path of the first request, once it came
		ackPending := false // the client's SETTINGS, acked after ours
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				switch {
				case !f.IsAck() && first == "":
					ackPending = true
				case !f.IsAck():
					wmu.Lock()
					fr.WriteSettingsAck()
					wmu.Unlock()
				case acked[first] != nil:
					ackedMu.Lock()
					select {
					case <-acked[first]:
					default:
						close(acked[first])
					}
					ackedMu.Unlock()
				}
			case *http2.MetaHeadersFrame:
				path := f.PseudoValue("path")
				if first == "" {
					// Our SETTINGS come first, then answers: the
					// client wants SETTINGS as the first frame.
					first = path
					wait(settings[path])
					wmu.Lock()
					fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
					if ackPending {
						fr.WriteSettingsAck()
					}
					wmu.Unlock()
				}
				wg.Add(1)
				go func(id uint32, answer chan struct{}) {
					defer wg.Done()
					wait(answer)
					wmu.Lock()
					defer wmu.Unlock()
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true, EndStream: true})
				}(f.StreamID, answers[path])
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
	return "http://" + ln.Addr().String()
}

// recv waits for c to be closed, for at most 5 s.
func recv(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestHTTP2StreamMovedToAnotherConnection: the HTTP/2 client gives a
// request B a pooled connection X, then finds it cannot open the stream
// there (X's SETTINGS came meanwhile and allow one stream, A's) and
// retries on another connection. X is not going away: with A over, it is
// idle, and says so.
//
// Made to happen every time: C holds connection Z, so that A and B take
// X; B waits in its GotConn hook while X's SETTINGS arrive; B's retry
// dials, and the dial waits until A and C are over, so that B then takes
// Z. Connections and dials are told apart by their requests, not by
// their order: net/http may dial more connections than these (a request
// that finds the pool empty while a connection just dialed for another is
// not yet pooled dials one of its own, which HTTP/2 then closes unused).
func TestHTTP2StreamMovedToAnotherConnection(t *testing.T) {
	settingsX := make(chan struct{})
	ackedZ, ackedX := make(chan struct{}), make(chan struct{})
	answerA, answerC := make(chan struct{}), make(chan struct{})
	url := h2cServer(t, map[string]chan struct{}{"/a": settingsX},
		map[string]chan struct{}{"/c": ackedZ, "/a": ackedX},
		map[string]chan struct{}{"/a": answerA, "/c": answerC})
	releaseB := make(chan struct{})
	retryB, dial := make(chan struct{}), make(chan struct{})
	var retryOnce sync.Once
	base := &http.Transport{Protocols: new(http.Protocols)}
	base.Protocols.SetUnencryptedHTTP2(true)
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-releaseB:
			if ctx.Value(pathKey{}) == "/b" { // B's retry
				retryOnce.Do(func() { close(retryB) })
				select {
				case <-dial:
				case <-time.After(5 * time.Second):
				}
			}
		default:
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	defer base.CloseIdleConnections()
	sink := &memSink{}
	var rs records
	client := &http.Client{Transport: httpscope.WrapTransport(rs.spy(sink), base, nil)}
	// get requests path; its first GotConn closes got, then waits for
	// wait; a later one closes again, and writing its headers closes
	// wrote, those that are not nil.
	get := func(path string, got, wait, again, wrote chan struct{}) <-chan error {
		var gotOnce, againOnce, wroteOnce sync.Once
		ctx := httptrace.WithClientTrace(context.WithValue(context.Background(), pathKey{}, path), &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) {
				first := false
				gotOnce.Do(func() {
					first = true
					close(got)
					select {
					case <-wait:
					case <-time.After(5 * time.Second):
					}
				})
				if !first && again != nil {
					againOnce.Do(func() { close(again) })
				}
			},
			WroteHeaders: func() {
				if wrote != nil {
					wroteOnce.Do(func() { close(wrote) })
				}
			},
		})
		errc := make(chan error, 1)
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
			if err == nil {
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			errc <- err
		}()
		return errc
	}
	gotC, gotA, gotB, againB := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	wroteA := make(chan struct{})
	cErr := get("/c", gotC, gotC, nil, nil)    // on Z
	recv(t, ackedZ, "Z's SETTINGS")            // Z is full: A dials X
	aErr := get("/a", gotA, gotA, nil, wroteA) // on X
	// A's stream is open, not just reserved: else B, failing on X, gives
	// back A's reservation as well as its own (the HTTP/2 client
	// decrements it in writeRequest and again in cleanupWriteRequest),
	// and X then takes B's retry while A waits.
	recv(t, wroteA, "A's request")
	bErr := get("/b", gotB, releaseB, againB, nil) // on X too: its SETTINGS have not come
	recv(t, gotB, "B's connection")
	close(settingsX)
	recv(t, ackedX, "X's SETTINGS") // X is full
	close(releaseB)
	// B could not open its stream on X: it dials, or takes a connection
	// that a spare dial left in the pool. (Not X again: A's stream there
	// is open.)
	select {
	case <-retryB:
	case <-againB:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for B's retry")
	}
	close(answerA)
	close(answerC)
	for _, errc := range []<-chan error{aErr, cErr} {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	close(dial)
	if err := <-bErr; err != nil {
		t.Fatal(err)
	}
	// X: the connection that answered A, told by its events.
	var x *connscope.Record
	var got []string // X's events
	for _, r := range rs.all() {
		var evs []string
		for _, e := range sink.events(connscope.Client) {
			if e.ID == r.ID() {
				evs = append(evs, e.Msg+" "+targetPath(e.Target))
			}
		}
		if slices.Contains(evs, connscope.MsgResponse+" /a") {
			x, got = r, evs
		}
	}
	if x == nil {
		t.Fatal("no connection answered A")
	}
	if !slices.Contains(got, connscope.MsgReuse+" /b") {
		t.Fatalf("connection X: events %q; want B taking it", got)
	}
	if slices.Contains(got, connscope.MsgResponse+" /b") {
		t.Errorf("connection X: events %q; want B answered on another connection", got)
	}
	if s, n := x.State(), x.InFlight(); s != connscope.StateIdle || n != 0 || got[len(got)-1] != connscope.MsgIdle+" " {
		t.Errorf("connection X: state %v, %d in flight, events %q; want idle, 0, ending in Socket Idle", s, n, got)
	}
}

// pathKey is the context key under which
// TestHTTP2StreamMovedToAnotherConnection tells its dials apart.
type pathKey struct{}

// targetPath returns the path in target, "GET http://host/path", or "".
func targetPath(target string) string {
	if i := strings.Index(target, "://"); i >= 0 {
		if j := strings.IndexByte(target[i+3:], '/'); j >= 0 {
			return target[i+3+j:]
		}
	}
	return ""
}
