package connscope

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// truncatedBody yields its data, then io.ErrUnexpectedEOF: a response
// body whose upstream ended early, as a proxy sees it.
type truncatedBody struct{ r io.Reader }

func (b *truncatedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// TestCopyFromTruncatedReaderIsNotPeerEOF: a program copies a reader
// that ends with io.ErrUnexpectedEOF into a spied connection (io.Copy
// and io.CopyN take the connection's ReadFrom). The reader's early end is
// not the connection's peer sending FIN: no "Socket End" for the
// connection, which is not broken and is closed by this side.
func TestCopyFromTruncatedReaderIsNotPeerEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		copy func(dst io.Writer, src io.Reader) (int64, error)
	}{
		{"io.Copy", io.Copy},
		{"io.CopyN", func(dst io.Writer, src io.Reader) (int64, error) { return io.CopyN(dst, src, 100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			c, peer := tcpPair(t)
			w := spy.WrapConn(c, Server)
			n, err := tc.copy(w, &truncatedBody{strings.NewReader("partial")})
			if n != 7 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("copy: %d, %v; want 7, io.ErrUnexpectedEOF", n, err)
			}
			// The connection itself is fine: the peer gets the bytes.
			peer.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := io.ReadFull(peer, make([]byte, 7)); err != nil {
				t.Fatal(err)
			}
			r := RecordOf(w)
			if ends := sink.of(MsgEnd, r); len(ends) != 0 {
				t.Errorf("%d %q for the connection: the reader's early end was taken for the peer's FIN", len(ends), MsgEnd)
			}
			if r.Broken() {
				t.Errorf("record Broken after the reader failed: %+v", r.Snapshot())
			}
			w.Close()
			closes := sink.of(MsgClose, r)
			if len(closes) != 1 || closes[0].ClosedBy != "local" || closes[0].HadError {
				t.Errorf("Socket Close %+v, want closedBy=local hadError=false", closes)
			}
		})
	}
}
