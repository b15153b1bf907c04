package selfsigned

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandshakeOverLoopback(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			cert, pool, err := New(host)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.WriteString(c, "ok")
			}()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{RootCAs: pool, ServerName: host})
			if err != nil {
				t.Fatalf("handshake with the pool's trust: %v", err)
			}
			b, _ := io.ReadAll(c)
			c.Close()
			<-done
			if string(b) != "ok" {
				t.Errorf("read %q", b)
			}
		})
	}
}
