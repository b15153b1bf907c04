package httpscope_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/connscope/connscope"
)

// TestServerTargetWithoutFragment: a client that sends a fragment in its
// request target (an OAuth implicit-flow callback's "#access_token=...",
// copied from a browser's address bar) must not get it logged: net/http
// leaves it in the request's path or query, and targets never hold a
// fragment. An escaped '#' (%23) is the path's own and stays.
func TestServerTargetWithoutFragment(t *testing.T) {
	for _, tc := range []struct {
		name, target, want string
	}{
		{"fragment after the path", "/cb#access_token=s3cr3t", "GET http://h:80/cb"},
		{"fragment after the query", "/x?a=1#token=s3cr3t", "GET http://h:80/x?a=1"},
		{"query inside the fragment", "/p#s3cr3t?x=1", "GET http://h:80/p"},
		{"escaped # kept", "/a%23b?x=1#s3cr3t", "GET http://h:80/a%23b?x=1"},
		{"absolute form", "http://h/x?y=2#s3cr3t", "GET http://h:80/x?y=2"},
		{"empty fragment", "/x#", "GET http://h:80/x"},
		{"no fragment", "/a%23b?x=1", "GET http://h:80/a%23b?x=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sink memSink
			spy := &connscope.Spy{Sink: &sink}
			ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
			c, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET "+tc.target+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkServerTarget(t, &sink, tc.want)
		})
	}
	t.Run("HTTP/2", func(t *testing.T) {
		var sink memSink
		spy := &connscope.Spy{Sink: &sink}
		base, _ := startTLS(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		u, _ := url.Parse(base)
		if code := rawH2Get(t, u.Host, "h", "/cb?a=1#access_token=s3cr3t"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		checkServerTarget(t, &sink, "GET https://h:443/cb?a=1")
	})
}

func checkServerTarget(t *testing.T, sink *memSink, want string) {
	t.Helper()
	// The handler's event comes before net/http writes its answer out;
	// waited for all the same, not to depend on that.
	waitFor(t, "the server's response event", func() bool {
		for _, e := range sink.events(connscope.Server) {
			if e.Msg == connscope.MsgResponse {
				return true
			}
		}
		return false
	})
	var got []string
	for _, e := range sink.events(connscope.Server) {
		if e.Msg == connscope.MsgResponse {
			got = append(got, e.Target)
		}
		if strings.Contains(e.Target, "s3cr3t") {
			t.Errorf("%s: target %q holds the fragment", e.Msg, e.Target)
		}
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("server responses' targets %q, want [%q]", got, want)
	}
}

// rawH2Get sends one GET with the given :authority and :path over a TLS
// connection to addr, as no Go client would, and returns the status.
func rawH2Get(t *testing.T, addr, authority, path string) int {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					code := 0
					for _, c := range hf.Value {
						code = code*10 + int(c-'0')
					}
					return code
				}
			}
			t.Fatal("response without :status")
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY: %v", f.ErrCode)
		}
	}
}
