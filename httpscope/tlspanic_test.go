package httpscope_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/selfsigned"
)

// clientHello returns the first record a TLS 1.2 client sends, captured
// over loopback: a small ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.X25519}}).Handshake() // fails when the other end closes
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(c, rec[5:]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-done
	return rec
}

// TestServerTLSHandshakePanicNotRerun: a handshake that panics (in the
// program's GetCertificate) is recovered by net/http, which closes the
// connection. Reporting the failure at StateClosed must not run a second
// handshake on what the connection still has buffered: here a second
// ClientHello, which would reach GetCertificate again (and, were it to
// panic again, crash the program outside net/http's recover).
func TestServerTLSHandshakePanicNotRerun(t *testing.T) {
	hello := clientHello(t)
	if len(hello) > 250 {
		t.Skipf("ClientHello of %d bytes: two may not arrive in the server's first read", len(hello))
	}
	cert, _, err := selfsigned.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	closed := make(chan struct{}, 1)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if calls.Add(1) == 1 {
				panic("GetCertificate bug")
			}
			return &cert, nil
		}},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				select {
				case closed <- struct{}{}:
				default:
				}
			}
		},
	}
	httpscope.InstrumentServer(spy, srv, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeTLS(spy.WrapListener(ln), "", "")
	}()
	defer func() {
		srv.Close()
		<-served
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The second hello's record says TLS 1.2, the version the first one
	// settled before the panic, as a record after the hello must.
	second := append([]byte{}, hello...)
	second[1], second[2] = 3, 3
	if _, err := c.Write(append(append([]byte{}, hello...), second...)); err != nil { // one segment
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("no ConnState(StateClosed)")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("GetCertificate called %d times for one connection, want 1: the handshake ran again", n)
	}
}
