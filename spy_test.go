package connscope

import (
	"context"
	"net"
	"testing"
)

// TestNilSpyInstrumentsNothing: every method of a nil *Spy works and
// leaves what it is given as it was.
func TestNilSpyInstrumentsNothing(t *testing.T) {
	var s *Spy
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("Stats = %+v, want zero", st)
	}
	if s.Enabled() {
		t.Error("Enabled")
	}
	s.Emit(Event{Message: MsgConnect})
	s.TLSHandshake(nil, nil, 0, nil)
	c, _ := tcpPair(t)
	if w := s.WrapConn(c, Client); w != net.Conn(c) {
		t.Errorf("WrapConn returned %T, want the conn itself", w)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if w := s.WrapListener(ln); w != ln {
		t.Errorf("WrapListener returned %T, want the listener itself", w)
	}
	dial := s.WrapDial(nil)
	d, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if RecordOf(d) != nil {
		t.Error("WrapDial of a nil Spy wrapped its conn")
	}
}
