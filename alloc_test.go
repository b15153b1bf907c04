package connscope

import (
	"io"
	"net"
	"testing"
)

// TestZeroAllocReadWrite: the wrapper's Read and Write allocate nothing,
// over a loopback TCP pair and over a net.Pipe.
func TestZeroAllocReadWrite(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation counts")
	}
	sink := NewJSONSink(io.Discard, nil)
	defer sink.Close()
	spy := &Spy{Sink: sink}

	t.Run("tcp", func(t *testing.T) {
		c, s := tcpPair(t)
		wc, ws := spy.WrapConn(c, Client), spy.WrapConn(s, Server)
		out, in := []byte("x"), make([]byte, 1)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := wc.Write(out); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(ws, in); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("wrapped Write+Read over TCP: %v allocs per run, want 0", allocs)
		}
		if r := RecordOf(ws); r.BytesRead() != 1001 {
			t.Errorf("BytesRead = %d, want 1001", r.BytesRead())
		}
	})

	t.Run("pipe", func(t *testing.T) {
		a, b := net.Pipe()
		wa, wb := spy.WrapConn(a, Client), spy.WrapConn(b, Server)
		defer wa.Close()
		defer wb.Close()
		done := make(chan struct{})
		go func() { // echo every byte back
			defer close(done)
			buf := make([]byte, 64)
			for {
				n, err := wb.Read(buf)
				if err != nil {
					return
				}
				if _, err := wb.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
		out, in := []byte("x"), make([]byte, 1)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := wa.Write(out); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(wa, in); err != nil {
				t.Fatal(err)
			}
		})
		wa.Close()
		<-done
		if allocs != 0 {
			t.Errorf("wrapped Write+Read over net.Pipe: %v allocs per run, want 0", allocs)
		}
	})
}
