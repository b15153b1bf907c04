package connscope

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestRelayWriteErrorNotBlamedOnSource: a proxy copies from a spied
// backend to a client the spy does not wrap (io.Copy takes the backend's
// WriteTo). The client's side is shut for writing, so the copy fails with
// EPIPE, which only a write returns: the client's failure, not the
// backend's. The backend's record must stay clean: no "Socket Error", no
// hadError, closed by this side. With a spied client, the EPIPE is the
// client's write error.
func TestRelayWriteErrorNotBlamedOnSource(t *testing.T) {
	for _, tc := range []struct {
		name        string
		wrapClient  bool
		clientError bool // the client's record gets the write error
	}{
		{"unwrapped client", false, false},
		{"spied client", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			backendConn, backendPeer := tcpPair(t)
			clientConn, _ := tcpPair(t)
			backend := spy.WrapConn(backendConn, Client)
			var client net.Conn = clientConn
			if tc.wrapClient {
				client = spy.WrapConn(clientConn, Server)
			}
			if err := clientConn.CloseWrite(); err != nil { // writes to the client now fail with EPIPE
				t.Fatal(err)
			}
			if _, err := backendPeer.Write([]byte("response")); err != nil {
				t.Fatal(err)
			}
			backendConn.SetReadDeadline(time.Now().Add(testTimeout))
			_, err := io.Copy(client, backend)
			if kind, _ := Classify(err); kind != KindBrokenPipe {
				t.Fatalf("io.Copy: %v (kind %q), want EPIPE", err, kind)
			}
			br := RecordOf(backend)
			if errs := sink.of(MsgError, br); len(errs) != 0 {
				t.Errorf("backend got %d %q (op %q, %v): the client's EPIPE was blamed on it", len(errs), MsgError, errs[0].Op, errs[0].Err)
			}
			if cr := RecordOf(client); cr != nil {
				errs := sink.of(MsgError, cr)
				if got := len(errs) == 1 && errs[0].Op == "write"; got != tc.clientError {
					t.Errorf("client's errors %+v, want one with op write: %v", errs, tc.clientError)
				}
			}
			backend.Close()
			closes := sink.of(MsgClose, br)
			if len(closes) != 1 || closes[0].HadError || closes[0].ClosedBy != "local" {
				t.Errorf("backend's Socket Close %+v, want hadError=false closedBy=local", closes)
			}
		})
	}
}
