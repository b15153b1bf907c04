package connscope

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// TestNilWriterSinkDoesNotCrash: a Spy whose Sink is a nil *WriterSink
// (var sink *WriterSink, set only when logging is on: Go's typed-nil
// interface) has a sink whose Emit panics. Like any such sink it must be
// recovered and counted in Stats().SinkPanics, not take the program down
// through the connection's Read, Write or Close.
func TestNilWriterSinkDoesNotCrash(t *testing.T) {
	var sink *WriterSink // logging off
	spy := &Spy{Sink: sink}
	c, peer := tcpPair(t)
	var w interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
		Close() error
	}
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"WrapConn", func() error { w = spy.WrapConn(c, Client); return nil }},
		{"Write", func() error {
			if _, err := w.Write([]byte("ping")); err != nil {
				return err
			}
			// Read by the peer: unread data would turn its FIN into a RST.
			peer.SetReadDeadline(time.Now().Add(testTimeout))
			_, err := io.ReadFull(peer, make([]byte, 4))
			return err
		}},
		{"Read", func() error {
			if _, err := peer.Write([]byte("pong")); err != nil {
				return err
			}
			_, err := io.ReadFull(w, make([]byte, 4))
			return err
		}},
		{"Read at EOF", func() error {
			peer.Close()
			c.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := w.Read(make([]byte, 1)); err != io.EOF {
				return fmt.Errorf("Read after the peer's FIN: %v, want io.EOF", err)
			}
			return nil
		}},
		{"Close", func() error { return w.Close() }},
	} {
		var err error
		func() {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("panicked: %v", v)
				}
			}()
			err = step.do()
		}()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	if got := spy.Stats().SinkPanics; got == 0 {
		t.Errorf("Stats().SinkPanics = 0: the nil sink's events were lost without being counted")
	}
}
