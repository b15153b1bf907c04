package keepalive

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

const sec = time.Second

func TestDetect(t *testing.T) {
	linux := DefaultKernel()
	tests := []struct {
		name  string
		sit   Situation
		s     Settings
		k     Kernel
		after time.Duration
		never bool
		timer string
		rule  string // substring
	}{
		// BRIEF: 2/1/3 -> ~4 s after the fault (≤ 5 s after the last packet received).
		{"idle 2/1/3", Idle, Settings{Idle: 2 * sec, Interval: sec, Count: 3}, linux, 5 * sec, false, "keepalive", "I + V×C = 2s + 1s×3"},
		{"idle Go Dialer{}", Idle, GoDefault, linux, 150 * sec, false, "keepalive", "15s + 15s×9"},
		{"idle DefaultTransport 30/15/9", Idle, Settings{Idle: 30 * sec, Interval: 15 * sec, Count: 9}, linux, 165 * sec, false, "keepalive", ""},
		{"idle Linux default", Idle, Settings{}, linux, 2*time.Hour + 11*time.Minute + 15*sec, false, "keepalive", "2h + 1m15s×9"},
		// The seed: idle 2 s set, interval and count left at the kernel's: 2 + 9×75 = 677 s.
		{"idle seed 2/os/os", Idle, Settings{Idle: 2 * sec}, linux, 677 * sec, false, "keepalive", ""},
		{"idle zero Kernel means Linux", Idle, Settings{Idle: 2 * sec}, Kernel{}, 677 * sec, false, "keepalive", ""},
		{"idle lab sysctls", Idle, Settings{}, Kernel{KeepaliveTime: 1 * sec, KeepaliveIntvl: sec, KeepaliveProbes: 2}, 3 * sec, false, "keepalive", ""},
		// tcp_keepalive_probes=0 (negative in Kernel): the first firing aborts.
		{"idle probes sysctl 0", Idle, Settings{Idle: 2 * sec}, Kernel{KeepaliveProbes: -1}, 2 * sec, false, "keepalive", "1m15s×0"},
		// tcp_keepalive_time=0 (negative in Kernel): probes every V from the
		// start, so the first comes up to V after the last packet.
		{"idle time sysctl 0", Idle, Settings{}, Kernel{KeepaliveTime: -1, KeepaliveIntvl: sec, KeepaliveProbes: 2}, 3 * sec, false, "keepalive", "V + V×C = 1s + 1s×2"},
		{"idle time sysctl 0, U", Idle, Settings{UserTimeout: 25 * sec}, Kernel{KeepaliveTime: -1, KeepaliveIntvl: 10 * sec}, 30 * sec, false, "keepalive", "V + V×2"},
		{"idle time sysctl 0, own idle", Idle, Settings{Idle: 5 * sec}, Kernel{KeepaliveTime: -1, KeepaliveIntvl: sec, KeepaliveProbes: 2}, 7 * sec, false, "keepalive", "I + V×C"},
		// tcp_keepalive_intvl=0: the probes are a timer tick apart.
		{"idle intvl sysctl 0", Idle, Settings{Idle: 2 * sec}, Kernel{KeepaliveIntvl: -1, KeepaliveProbes: 3}, 2 * sec, false, "keepalive", "2s + 0s×3"},
		{"idle intvl sysctl 0, U", Idle, Settings{Idle: 2 * sec, UserTimeout: 5 * sec}, Kernel{KeepaliveIntvl: -1}, 5 * sec, false, "keepalive", "max(I, U)"},
		// Both 0, or time 0 and probes 0: even a live connection dies at once.
		{"idle time and intvl sysctl 0", Idle, Settings{}, Kernel{KeepaliveTime: -1, KeepaliveIntvl: -1}, 0, false, "keepalive", "I = 0 and V = 0"},
		{"idle time and probes sysctl 0", Idle, Settings{}, Kernel{KeepaliveTime: -1, KeepaliveProbes: -1}, 0, false, "keepalive", "I = 0 and C = 0"},
		{"idle off", Idle, Off, linux, 0, true, "none", "keepalive off"},
		{"idle off with U", Idle, Settings{Idle: -1, UserTimeout: 5 * sec}, linux, 0, true, "none", ""},
		// U and keepalive: first firing (I + kV, k ≥ 1) at or after U.
		{"idle U=5 on boundary", Idle, Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}, linux, 5 * sec, false, "keepalive", "U = 5s"},
		{"idle U=30 ignores count", Idle, Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 30 * sec}, linux, 30 * sec, false, "keepalive", ""},
		{"idle U between firings", Idle, Settings{Idle: 10 * sec, Interval: 4 * sec, Count: 9, UserTimeout: 15 * sec}, linux, 18 * sec, false, "keepalive", ""},
		{"idle U below I needs one probe", Idle, Settings{Idle: 10 * sec, Interval: 4 * sec, Count: 9, UserTimeout: 3 * sec}, linux, 14 * sec, false, "keepalive", ""},
		// Sending: retransmission backoff to tcp_retries2, keepalive irrelevant.
		{"sending default retries2", Sending, GoDefault, linux, 924600 * time.Millisecond, false, "retransmission", "1023×200ms + 6×2m"},
		{"sending keepalive off", Sending, Off, linux, 924600 * time.Millisecond, false, "retransmission", ""},
		{"sending retries2 5", Sending, Settings{}, Kernel{Retries2: 5}, 12600 * time.Millisecond, false, "retransmission", "63×200ms"},
		{"sending retries2 9", Sending, Settings{}, Kernel{Retries2: 9}, 204600 * time.Millisecond, false, "retransmission", ""},
		// tcp_retries2=0 (negative in Kernel): the first RTO expiry aborts.
		{"sending retries2 sysctl 0", Sending, Settings{}, Kernel{Retries2: -1}, 200 * time.Millisecond, false, "retransmission", "1×200ms (N = tcp_retries2 = 0)"},
		{"sending U=10", Sending, Settings{UserTimeout: 10 * sec}, linux, 10 * sec, false, "user-timeout", "U = 10s"},
		// Zero window: never without U.
		{"zero-window", ZeroWindow, GoDefault, linux, 0, true, "persist", "never"},
		{"zero-window U", ZeroWindow, Settings{UserTimeout: 7 * sec}, linux, 7 * sec, false, "user-timeout", ""},
		// Connect: 1+2+4+...+64 = 127 s.
		{"connect", Connect, Settings{}, linux, 131 * sec, false, "syn", ""},
		{"connect syn_retries 2", Connect, Settings{}, Kernel{SynRetries: 2}, 7 * sec, false, "syn", ""},
		{"connect syn_retries 3 (linear 4)", Connect, Settings{}, Kernel{SynRetries: 3}, 19 * sec, false, "syn", ""},
		// No linear timeouts, on a kernel without the sysctl or with it at 0:
		// the same timer, but only the second has a setting to name.
		{"connect pre-6.5", Connect, Settings{}, Kernel{SynRetries: 6, SynLinearTimeoutsAbsent: true}, 127 * sec, false, "syn", "(R = tcp_syn_retries = 6)"},
		{"connect linear sysctl 0", Connect, Settings{}, Kernel{SynRetries: 6, SynLinearTimeouts: -1}, 127 * sec, false, "syn", "tcp_syn_linear_timeouts = 0"},
		{"connect pre-6.5, count left zero", Connect, Settings{}, Kernel{SynRetries: 3, SynLinearTimeoutsAbsent: true}, 15 * sec, false, "syn", ""},
		{"connect U", Connect, Settings{UserTimeout: 5 * sec}, linux, 5 * sec, false, "user-timeout", ""},
		{"unknown", Situation("nope"), Settings{}, linux, 0, true, "none", "unknown"},
		// Kernels no Linux has, built in code: an answer, not a panic.
		// RTOMax under the SYN's 1 s (and raised to RTOMin's 200 ms): the
		// bound is 1s + 6×200ms, passed at the third 1 s expiry.
		{"connect RTOMax 100ms", Connect, Settings{}, Kernel{RTOMax: 100 * time.Millisecond}, 3 * sec, false, "syn", ""},
		// RTOMax under TCP_RTO_MIN: bound 200ms + 15×100ms; RTOs 10, 20,
		// 40, 80 ms, then 100 ms each.
		{"sending RTOMax under 200ms", Sending, Settings{}, Kernel{RTOMin: 10 * time.Millisecond, RTOMax: 100 * time.Millisecond},
			1750 * time.Millisecond, false, "retransmission", "1×200ms + 15×100ms"},
		{"sending RTOs 1ns", Sending, Settings{}, Kernel{RTOMin: 1, RTOMax: 1}, 200*time.Millisecond + 15, false, "retransmission", ""},
		{"sending RTOMax below RTOMin", Sending, Settings{}, Kernel{Retries2: 2, RTOMin: sec, RTOMax: time.Millisecond}, 2 * sec, false, "retransmission", ""},
		// Overflowing values saturate at the longest Duration.
		{"sending retries2 huge", Sending, Settings{}, Kernel{Retries2: 1 << 62}, math.MaxInt64, false, "retransmission", ""},
		{"idle count huge", Idle, Settings{Idle: sec, Interval: sec, Count: 1 << 62}, linux, math.MaxInt64, false, "keepalive", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Detect(tt.sit, tt.s, tt.k)
			if d.Never != tt.never || (!tt.never && d.After != tt.after) || d.Timer != tt.timer {
				t.Errorf("Detect = %v after=%v never=%v timer=%q; want after=%v never=%v timer=%q",
					d, d.After, d.Never, d.Timer, tt.after, tt.never, tt.timer)
			}
			if !strings.Contains(d.Rule, tt.rule) {
				t.Errorf("Rule = %q; want it to contain %q", d.Rule, tt.rule)
			}
		})
	}
}

// TestDetectSendingKernelModel checks the closed formula against the timer
// itself: the RTO starts at 200 ms and doubles up to 120 s; the connection is
// aborted at the (N+1)-th expiry.
func TestDetectSendingKernelModel(t *testing.T) {
	for n := 1; n <= 30; n++ {
		var want float64
		rto := 0.2
		for i := 0; i <= n; i++ {
			want += rto
			rto = min(2*rto, 120)
		}
		got := Detect(Sending, Settings{}, Kernel{Retries2: n}).After.Seconds()
		if diff := got - want; diff > 1e-6 || diff < -1e-6 {
			t.Errorf("tcp_retries2=%d: got %.3fs, kernel model %.3fs", n, got, want)
		}
	}
}

// With a larger RTOmin the closed formula still lands on an expiry; with a
// max that is not a power-of-two multiple it may not, and the first expiry
// past the bound counts.
func TestFirstExpiry(t *testing.T) {
	bound, thresh := modelTimeout(15, 200*time.Millisecond, 120*time.Second)
	if bound != 924600*time.Millisecond || thresh != 9 {
		t.Fatalf("modelTimeout = %v, %d", bound, thresh)
	}
	if got := firstExpiry(10*sec, 3*sec, 120*sec); got != 21*sec { // 3, 9, 21
		t.Errorf("firstExpiry = %v, want 21s", got)
	}
}

func TestDetectionJSON(t *testing.T) {
	b, err := json.Marshal(Detect(Idle, Settings{Idle: 2 * sec, Interval: sec, Count: 3}, DefaultKernel()))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"after":"5s","after_seconds":5,"timer":"keepalive","rule":"I + V×C = 2s + 1s×3"}`
	if string(b) != want {
		t.Errorf("got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Detect(ZeroWindow, Settings{}, DefaultKernel()))
	if !strings.Contains(string(b), `"never":true`) || strings.Contains(string(b), `"after"`) {
		t.Errorf("never: %s", b)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7200 * sec:                            "2h",
		75 * sec:                              "1m15s",
		924600 * time.Millisecond:             "15m24.6s",
		2*time.Hour + 11*time.Minute + 15*sec: "2h11m15s",
		500 * time.Millisecond:                "500ms",
		3*time.Hour + 5*time.Minute:           "3h5m",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestDetectionJSONRoundTrip(t *testing.T) {
	for _, sit := range Situations {
		for _, s := range []Settings{{}, {Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 1500 * time.Millisecond}} {
			want := Detect(sit, s, DefaultKernel())
			b, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			var got Detection
			if err := json.Unmarshal(b, &got); err != nil || got != want {
				t.Errorf("round trip of %s: got %+v, %v; want %+v", b, got, err, want)
			}
		}
	}
}

// TestDetectIntervalZeroNoteWithUserTimeout: with tcp_keepalive_intvl 0
// and TCP_USER_TIMEOUT U the abort comes at about U (max(I, U)), not "a few
// ms after the first" probe, as the note said whatever U.
func TestDetectIntervalZeroNoteWithUserTimeout(t *testing.T) {
	for _, tt := range []struct {
		s    Settings
		k    Kernel
		want string
	}{
		{Settings{Idle: 2 * sec}, Kernel{KeepaliveIntvl: -1}, "a few ms after the first"},
		{Settings{Idle: 2 * sec, UserTimeout: 5 * sec}, Kernel{KeepaliveIntvl: -1}, "at the first tick at or after U"},
		{Settings{UserTimeout: 300 * time.Millisecond}, Kernel{KeepaliveTime: -1, KeepaliveIntvl: -1}, "at the first tick at or after U"},
	} {
		d := Detect(Idle, tt.s, tt.k)
		if !strings.Contains(d.Note, tt.want) {
			t.Errorf("Detect(Idle, %v, intvl 0) = %v, note %q; want it to say %q", tt.s, d, d.Note, tt.want)
		}
	}
}
