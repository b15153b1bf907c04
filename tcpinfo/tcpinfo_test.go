package tcpinfo

import (
	"testing"
	"time"
)

func TestTimerInference(t *testing.T) {
	tests := []struct {
		name string
		in   Info
		want string
	}{
		{"syn", Info{State: "SYN_SENT"}, "syn"},
		{"unacked", Info{State: "ESTABLISHED", Unacked: 3, Keepalive: true}, "retransmission"},
		{"fin-wait with unacked", Info{State: "FIN_WAIT1", Unacked: 1}, "retransmission"},
		{"zero window", Info{State: "ESTABLISHED", NotSent: 100, SndWndKnown: true, Keepalive: true}, "persist"},
		{"zero window, old kernel", Info{State: "ESTABLISHED", NotSent: 100, Keepalive: true}, "persist"},
		{"queued, window open", Info{State: "ESTABLISHED", NotSent: 100, SndWnd: 65535, SndWndKnown: true, Keepalive: true}, "keepalive"},
		{"idle keepalive", Info{State: "ESTABLISHED", SndWnd: 1000, SndWndKnown: true, Keepalive: true}, "keepalive"},
		{"idle no keepalive", Info{State: "ESTABLISHED", SndWnd: 1000, SndWndKnown: true}, "none"},
		{"closed", Info{State: "CLOSE", Keepalive: true}, "none"},
	}
	for _, tt := range tests {
		if got := tt.in.timer(); got != tt.want {
			t.Errorf("%s: timer() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMarshalJSON(t *testing.T) {
	b, err := Info{State: "ESTABLISHED", Timer: "keepalive", RTO: 204 * time.Millisecond, RTT: 1500 * time.Microsecond,
		SndWnd: 0, SndWndKnown: true, Keepalive: true}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"state":"ESTABLISHED","timer":"keepalive","retransmits":0,"probes":0,"backoff":0,"unacked":0,"total_retrans":0,"notsent_bytes":0,"rto_ms":204,"rtt_ms":1.5,"rttvar_ms":0,"last_data_recv_ms":0,"last_ack_recv_ms":0,"last_data_sent_ms":0,"snd_wnd":0,"keepalive":true}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
