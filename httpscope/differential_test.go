package httpscope_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"regexp"
	"sync"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/selfsigned"
)

// Differential tests: the same scenario run bare and instrumented, over
// real sockets on 127.0.0.1, must show the program the same thing.

// diffMode says which sides of a run are instrumented.
type diffMode struct {
	name           string
	client, server bool
}

var (
	diffBare   = diffMode{"bare", false, false}
	diffClient = diffMode{"client", true, false}
	diffServer = diffMode{"server", false, true}
	diffBoth   = diffMode{"both", true, true}
	// diffModes are every combination, bare first: the reference.
	diffModes = []diffMode{diffBare, diffClient, diffServer, diffBoth}
	// diffClientModes are for servers that are not net/http's.
	diffClientModes = []diffMode{diffBare, diffClient}
)

// diffProto is what the client and server speak.
type diffProto int

const (
	h1    diffProto = iota // HTTP/1.1
	h1TLS                  // HTTP/1.1 over TLS
	h2TLS                  // HTTP/2 over TLS
	h2C                    // unencrypted HTTP/2 (Protocols on both sides)
)

func (p diffProto) String() string {
	return [...]string{"HTTP/1.1", "HTTP/1.1+TLS", "HTTP/2", "h2c"}[p]
}

// diffEnv is one run: a server, maybe instrumented, and a client for it.
type diffEnv struct {
	url    string
	srv    *http.Server
	tr     *http.Transport // the client's base transport
	client *http.Client
	sink   *memSink
}

// startDiff serves srv over p, instrumented if m.server says so, and
// makes a client for it, instrumented if m.client says so. The test's
// cleanup closes both.
func startDiff(t *testing.T, m diffMode, p diffProto, srv *http.Server) *diffEnv {
	t.Helper()
	env := &diffEnv{srv: srv, sink: &memSink{}}
	spy := &connscope.Spy{Sink: env.sink}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Protocols = new(http.Protocols)
	switch p {
	case h1, h1TLS:
		srv.Protocols.SetHTTP1(true)
	case h2TLS:
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
	case h2C:
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	overTLS := p == h1TLS || p == h2TLS
	if overTLS {
		cert, pool := diffCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if p == h2C {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	if m.server {
		httpscope.InstrumentServer(spy, srv, nil)
		ln = spy.WrapListener(ln)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if overTLS {
			srv.ServeTLS(ln, "", "")
		} else {
			srv.Serve(ln)
		}
	}()
	env.tr = tr
	var rt http.RoundTripper = tr
	if m.client {
		rt = httpscope.WrapTransport(spy, tr, nil)
	}
	env.client = &http.Client{Transport: rt}
	env.url = "http://" + ln.Addr().String()
	if overTLS {
		env.url = "https://" + ln.Addr().String()
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-done
	})
	return env
}

var diffCertOnce = sync.OnceValues(func() (tls.Certificate, error) {
	cert, _, err := selfsigned.New("127.0.0.1")
	return cert, err
})

// diffCert is one certificate for all runs (making one costs a key).
func diffCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := diffCertOnce()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return cert, pool
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// norm takes the ports out of s: each run has its own server.
func norm(s string) string { return addrRE.ReplaceAllString(s, "127.0.0.1:PORT") }

// diff runs observe in each mode over p, each with its own server from
// newServer, and fails where a mode saw something other than bare did
// (ports aside).
func diff(t *testing.T, modes []diffMode, p diffProto, newServer func() *http.Server, observe func(t *testing.T, env *diffEnv) string) {
	t.Helper()
	var ref string
	for i, m := range modes {
		env := startDiff(t, m, p, newServer())
		got := norm(observe(t, env))
		if i == 0 {
			ref = got
			continue
		}
		if got != ref {
			t.Errorf("%s: instrumented %s differs from bare:\nbare:   %s\n%-7s %s", p, m.name, ref, m.name+":", got)
		}
	}
}

// wrapForDiff instruments tr, as startDiff does for a client.
func wrapForDiff(tr *http.Transport) http.RoundTripper {
	return httpscope.WrapTransport(&connscope.Spy{Sink: &memSink{}}, tr, nil)
}
