package connscope

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileCopyCounted: io.Copy between a wrapped TCP conn and an *os.File
// goes through (*os.File).WriteTo or ReadFrom, which must not reach the
// socket around the wrapper: every byte is counted, and the peer's FIN
// is seen. (TestSpeedPathsStrace proves a file still goes out by
// sendfile.)
func TestFileCopyCounted(t *testing.T) {
	const size = 1 << 20
	data := make([]byte, size)
	rand.Read(data)
	for _, tc := range []struct {
		name string
		copy func(c io.ReadWriter, f *os.File) (int64, error)
		out  bool // the conn sends the file; else it receives into it
	}{
		{"io.Copy(conn, file)", func(c io.ReadWriter, f *os.File) (int64, error) { return io.Copy(c, f) }, true},
		{"io.Copy(file, conn)", func(c io.ReadWriter, f *os.File) (int64, error) { return io.Copy(f, c) }, false},
		{"io.CopyN(file, conn)", func(c io.ReadWriter, f *os.File) (int64, error) { return io.CopyN(f, c, size) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &Spy{Sink: newCaptureSink()}
			raw, peer := tcpPair(t)
			c := spy.WrapConn(raw, Client)
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			peer.SetDeadline(time.Now().Add(testTimeout))
			path := filepath.Join(t.TempDir(), "f")
			if tc.out {
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := make(chan []byte, 1)
			go func() {
				if tc.out {
					b, _ := io.ReadAll(peer)
					got <- b
					return
				}
				peer.Write(data)
				peer.CloseWrite()
				got <- nil
			}()
			n, err := tc.copy(c, f)
			if err != nil || n != size {
				t.Fatalf("copied %d, %v; want %d", n, err, size)
			}
			r := RecordOf(c)
			if tc.out {
				c.(interface{ CloseWrite() error }).CloseWrite()
				if b := <-got; !bytes.Equal(b, data) {
					t.Fatalf("peer received %d bytes, not the file", len(b))
				}
				if r.BytesWritten() != size {
					t.Errorf("BytesWritten = %d, want %d", r.BytesWritten(), size)
				}
				return
			}
			<-got
			if r.BytesRead() != size {
				t.Errorf("BytesRead = %d, want %d", r.BytesRead(), size)
			}
			if tc.name == "io.Copy(file, conn)" && !r.has(flagEOF) {
				t.Error("the copy read to the peer's FIN, but the record did not see it")
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
				t.Errorf("file holds %d bytes (%v), not what the peer sent", len(b), err)
			}
		})
	}
}
