package connscope

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/selfsigned"
)

// TestClassifyTLSAlertFromPeer: a TLS handshake that the peer refuses
// fails on this side with the peer's alert, which crypto/tls returns as
// a *net.OpError with Op "remote error" around an unexported alert type
// (tls.AlertError is QUIC's), inside an unexported wrapper. Over real TCP, that is a "tls" error, not
// "other".
func TestClassifyTLSAlertFromPeer(t *testing.T) {
	cert, pool, err := selfsigned.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		serverSide bool // whose error carries the peer's alert
	}{
		{"client does not trust the certificate",
			&tls.Config{Certificates: []tls.Certificate{cert}},
			&tls.Config{ServerName: "localhost"}, // no RootCAs with the self-signed one
			true},
		{"server requires a client certificate",
			&tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13},
			&tls.Config{ServerName: "localhost", RootCAs: pool},
			false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := tcpPair(t)
			deadline := time.Now().Add(testTimeout)
			c.SetDeadline(deadline)
			s.SetDeadline(deadline)
			srv := tls.Server(s, tc.server)
			cli := tls.Client(c, tc.client)
			errs := make(chan error, 1)
			go func() {
				err := srv.Handshake()
				if err == nil {
					// TLS 1.3: the server learns of the client's refusal on its first read.
					_, err = srv.Read(make([]byte, 1))
				}
				errs <- err
			}()
			cerr := cli.Handshake()
			if cerr == nil {
				_, cerr = cli.Read(make([]byte, 1))
			}
			if !tc.serverSide {
				s.Close() // the client has its error: let the server's read end
			}
			serr := <-errs
			var err error = cerr
			if tc.serverSide {
				err = serr
			}
			if oe := (*net.OpError)(nil); !errors.As(err, &oe) || oe.Op != "remote error" {
				t.Fatalf("error %#v (%v): not the peer's alert; the test needs one", err, err)
			}
			if kind, _ := Classify(err); kind != KindTLS {
				t.Errorf("Classify(%v) = %q, want %q", err, kind, KindTLS)
			}
		})
	}
}
