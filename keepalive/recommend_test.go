package keepalive

import (
	"strings"
	"testing"
	"time"
)

func TestRecommend(t *testing.T) {
	tests := []struct {
		name    string
		current Settings
		path    Path
		want    Settings
		idleTO  time.Duration
		note    string
	}{
		{"2/1/3 kept, U added", Settings{Idle: 2 * sec, Interval: sec, Count: 3}, Path{}, Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}, 0, "TCP_USER_TIMEOUT 5s"},
		{"seed: idle only", Settings{Idle: 2 * sec}, Path{}, Settings{Idle: 2 * sec, Interval: 2 * sec, Count: 9, UserTimeout: 20 * sec}, 0, "12 minutes"},
		{"off turned on", Off, Path{}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 0, "Turn keepalive on"},
		{"linux default under NLB", Settings{}, Path{IdleTimeouts: []time.Duration{350 * sec}}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 0, "Set idle explicitly"},
		{"an idle of 10 min under NLB", Settings{Idle: 600 * sec}, Path{IdleTimeouts: []time.Duration{350 * sec}}, Settings{Idle: 175 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 310 * sec}, 0, "below the shortest idle timeout"},
		{"ALB", GoDefault, Path{LoadBalancer: 60 * sec}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 54 * sec, "IdleConnTimeout 54s"},
		{"conntrack 30s", GoDefault, Path{IdleTimeouts: []time.Duration{30 * sec, 350 * sec}}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 0, "HTTP/2"},
		{"kernel's 2 h idle", Settings{}, Path{}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 0, "Set idle explicitly"},
		{"kernel's idle, interval given", Settings{Interval: 5 * sec, Count: 3}, Path{}, Settings{Idle: 15 * sec, Interval: 5 * sec, Count: 3, UserTimeout: 30 * sec}, 0, "Go's default"},
		{"an idle of 2 h asked for", Settings{Idle: 2 * time.Hour, Interval: 15 * sec, Count: 9}, Path{}, Settings{Idle: 2 * time.Hour, Interval: 15 * sec, Count: 9, UserTimeout: 924600 * time.Millisecond}, 0, "kept at 15m24.6s"},
		{"firewall 20s", GoDefault, Path{IdleTimeouts: []time.Duration{20 * sec}}, Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Recommend(tt.current, DefaultKernel(), tt.path)
			if r.Settings != tt.want {
				t.Errorf("Settings = %v, want %v", r.Settings, tt.want)
			}
			if r.IdleConnTimeout != tt.idleTO {
				t.Errorf("IdleConnTimeout = %v, want %v", r.IdleConnTimeout, tt.idleTO)
			}
			notes := strings.Join(r.Notes, "\n")
			if !strings.Contains(notes, tt.note) {
				t.Errorf("notes %q do not mention %q", notes, tt.note)
			}
			// No situation is detected later than with the current settings.
			for _, sit := range Situations {
				now, rec := Detect(sit, tt.current, DefaultKernel()), r.Detect[sit]
				if !now.Never && (rec.Never || rec.After > now.After) {
					t.Errorf("%s detection %v with the recommendation, later than %v now", sit, rec, now)
				}
			}
			// The point of U ≈ I+V×C: every situation is detected in about the idle time.
			idle := r.Detect[Idle].After
			for _, sit := range []Situation{Sending, ZeroWindow} {
				if d := r.Detect[sit]; d.Never || d.After > idle {
					t.Errorf("%s detection %v, want at most the idle detection %v", sit, d, idle)
				}
			}
			for _, to := range append(tt.path.IdleTimeouts, tt.path.LoadBalancer) {
				if to > 0 && r.Settings.Idle >= to {
					t.Errorf("keepalive idle %v not below idle timeout %v", r.Settings.Idle, to)
				}
			}
		})
	}
}

// TestRecommendIdleConnTimeoutBelowLB: the note says the IdleConnTimeout
// is "below the load balancer's" timeout; with an ALB idle timeout of 1 s
// (the ALB minimum) it is equal to it, so the pooled-socket race stays.
func TestRecommendIdleConnTimeoutBelowLB(t *testing.T) {
	for _, lb := range []time.Duration{time.Second, 1500 * time.Millisecond, 60 * time.Second} {
		r := Recommend(GoDefault, DefaultKernel(), Path{LoadBalancer: lb})
		if r.IdleConnTimeout >= lb {
			t.Errorf("LoadBalancer %v: IdleConnTimeout %v, not below it", lb, r.IdleConnTimeout)
		}
	}
}

// TestRecommendPathTimeoutUnderASecond: no keepalive idle (whole
// seconds, at least 1) is below a path idle timeout of 1 s or less; the
// notes must not claim one is.
func TestRecommendPathTimeoutUnderASecond(t *testing.T) {
	for _, to := range []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond} {
		r := Recommend(GoDefault, DefaultKernel(), Path{IdleTimeouts: []time.Duration{to}})
		notes := strings.Join(r.Notes, "\n")
		below := strings.Contains(notes, ", below the shortest idle timeout")
		if want := r.Settings.Idle < to; below != want {
			t.Errorf("path idle timeout %v, keepalive idle %v: notes say it is below = %v, want %v:\n%s", to, r.Settings.Idle, below, want, notes)
		}
		if !below && !strings.Contains(notes, "No keepalive idle can stay below") {
			t.Errorf("path idle timeout %v: notes do not say keepalive cannot keep it alive:\n%s", to, notes)
		}
	}
}

// TestRecommendValid: what Recommend returns (and explain prints as a
// keepalive.Apply call) must be settings Apply accepts.
func TestRecommendValid(t *testing.T) {
	cur := Settings{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}
	if err := cur.Validate(); err != nil {
		t.Fatal(err)
	}
	r := Recommend(cur, DefaultKernel(), Path{})
	if err := r.Settings.Validate(); err != nil {
		t.Errorf("Recommend(%v) = %v, which Validate (and so Apply) refuses: %v", cur, r.Settings, err)
	}
}

// TestRecommendKeepaliveTimeZero: with tcp_keepalive_time 0 the effective
// idle is 0, which in Settings would mean "the kernel's" again: the
// recommendation must name an idle, not print Idle: 0.
func TestRecommendKeepaliveTimeZero(t *testing.T) {
	k := Kernel{KeepaliveTime: -1, KeepaliveIntvl: -1}
	r := Recommend(Settings{}, k, Path{})
	want := Settings{Idle: 15 * sec, Interval: 15 * sec, Count: 9, UserTimeout: 150 * sec}
	if r.Settings != want {
		t.Errorf("Recommend with tcp_keepalive_time and _intvl 0 = %v, want %v", r.Settings, want)
	}
	if notes := strings.Join(r.Notes, "\n"); !strings.Contains(notes, "tcp_keepalive_time is 0") {
		t.Errorf("notes do not say why idle is set:\n%s", notes)
	}
	if d := r.Detect[Idle]; d.After != 150*sec {
		t.Errorf("recommended idle detection %v, want 2m30s", d)
	}
}

// TestRecommendKernelLeftNote: the note on an interval or count left to
// the kernel blamed the seed's 12 minutes (Linux's 75 s × 9) whatever the
// kernel's values, also with tcp_keepalive_intvl 0 ("they are 0s × 9, which
// turned a 2 s idle into 12 minutes"), and named both even when only one was
// left ("they are 1m15s × 9" with an interval of 1 s set). It must be true
// for every input: name what is left, its value here, and the seed only
// where 75 s × 9 are left.
func TestRecommendKernelLeftNote(t *testing.T) {
	linux := DefaultKernel()
	tests := []struct {
		name    string
		current Settings
		k       Kernel
		want    []string // in the note
		notWant []string
	}{
		{"seed: both left, Linux's", Settings{Idle: 2 * sec}, linux,
			[]string{"Set the interval and count explicitly", "they are 1m15s × 9 here", "12 minutes"}, nil},
		{"all os, Linux's", Settings{}, linux,
			[]string{"interval and count", "1m15s × 9", "12 minutes"}, nil},
		{"intvl sysctl 0", Settings{Idle: 2 * sec}, Kernel{KeepaliveIntvl: -1},
			[]string{"they are 0s × 9 here", "one timer tick apart"}, []string{"12 minutes", "seed"}},
		{"probes sysctl 0", Settings{Idle: 2 * sec}, Kernel{KeepaliveProbes: -1},
			[]string{"they are 1m15s × 0 here", "without a probe"}, []string{"12 minutes", "seed", "tick"}},
		{"both sysctl 0", Settings{Idle: 2 * sec}, Kernel{KeepaliveIntvl: -1, KeepaliveProbes: -1},
			[]string{"0s × 0", "tick", "without a probe"}, []string{"12 minutes"}},
		{"other host 10s×5", Settings{Idle: 2 * sec}, Kernel{KeepaliveIntvl: 10 * sec, KeepaliveProbes: 5},
			[]string{"they are 10s × 5 here", "each host's sysctls"}, []string{"12 minutes", "seed"}},
		{"interval set, count left", Settings{Idle: 2 * sec, Interval: sec}, linux,
			[]string{"Set the count explicitly", "it is 9 here (tcp_keepalive_probes)"}, []string{"interval", "1m15s", "12 minutes"}},
		{"count set, interval left", Settings{Idle: 2 * sec, Count: 3}, linux,
			[]string{"Set the interval explicitly", "it is 1m15s here (tcp_keepalive_intvl)"}, []string{"count", "× 9", "12 minutes"}},
		{"interval set, count sysctl 0", Settings{Idle: 2 * sec, Interval: sec}, Kernel{KeepaliveIntvl: -1, KeepaliveProbes: -1},
			[]string{"it is 0 here", "without a probe"}, []string{"tick", "12 minutes"}},
		{"count set, intvl sysctl 0", Settings{Idle: 2 * sec, Count: 3}, Kernel{KeepaliveIntvl: -1, KeepaliveProbes: -1},
			[]string{"it is 0s here", "tick"}, []string{"without a probe", "12 minutes"}},
		{"all set", Settings{Idle: 2 * sec, Interval: sec, Count: 3}, linux, nil, []string{"left to the kernel"}},
		{"off", Off, Kernel{KeepaliveIntvl: -1}, nil, []string{"left to the kernel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Recommend(tt.current, tt.k, Path{})
			var note string
			for _, n := range r.Notes {
				if strings.Contains(n, "left to the kernel") {
					note = n
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(note, w) {
					t.Errorf("note %q lacks %q", note, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(note, w) {
					t.Errorf("note %q says %q", note, w)
				}
			}
		})
	}
}

// TestRecommendNeverLater: over a grid of settings, kernels and paths, no
// situation is detected later with the recommendation than with the
// current settings, the recommendation is one Apply accepts, and no note
// calls a TCP_USER_TIMEOUT I + V×C that is not. Except where the current
// detection comes from a sysctl at 0 that aborts even a live connection
// (an interval or a count of 0, or an idle of 0 with either): making it
// later is the point. It was later where the kernel's interval or count,
// left to it, were shorter than Go's 15 s × 9 (30 s/5 s/3: 45 s became
// 2m30s), and where a TCP_USER_TIMEOUT kept from current met keepalive
// firings that a shorter idle had moved; and a U capped at what gives up
// a send now was still said to be I + V×C.
func TestRecommendNeverLater(t *testing.T) {
	durations := func(ds ...time.Duration) []time.Duration { return ds }
	var settings []Settings
	for _, i := range durations(-1, 0, sec, 5*sec, 20*sec, 7200*sec) {
		for _, v := range durations(0, sec, 10*sec, 75*sec) {
			for _, c := range []int{0, 1, 3, 20} {
				for _, u := range durations(0, 500*time.Millisecond, 36*sec, 2000*sec) {
					settings = append(settings, Settings{Idle: i, Interval: v, Count: c, UserTimeout: u})
				}
			}
		}
	}
	var kernels []Kernel
	for _, kt := range durations(0, 5*sec, 20*sec, -1) {
		for _, ki := range durations(0, sec, 20*sec, -1) {
			for _, kp := range []int{0, 3, -1} {
				for _, r2 := range []int{0, 3} {
					kernels = append(kernels, Kernel{KeepaliveTime: kt, KeepaliveIntvl: ki, KeepaliveProbes: kp, Retries2: r2})
				}
			}
		}
	}
	paths := []Path{{}, {IdleTimeouts: []time.Duration{30 * sec}}, {LoadBalancer: 60 * sec}, {IdleTimeouts: []time.Duration{3 * sec}}}
	failures := 0
	for _, cur := range settings {
		for _, k := range kernels {
			e := cur.Effective(k)
			// A sysctl at 0 that the current settings leave to it and
			// that aborts even a live connection.
			aborts := cur.Idle >= 0 && (cur.Interval <= 0 && k.KeepaliveIntvl < 0 || cur.Count <= 0 && k.KeepaliveProbes < 0 ||
				cur.Idle == 0 && k.KeepaliveTime < 0 && (e.Interval == 0 || e.Count == 0))
			for _, p := range paths {
				r := Recommend(cur, k, p)
				rs := r.Settings
				if err := rs.Validate(); err != nil {
					t.Errorf("Recommend(%v, %+v, %v) = %v, which Apply refuses: %v", cur, k, p, rs, err)
					failures++
				}
				for _, n := range r.Notes {
					if strings.Contains(n, "= I + V×C:") && rs.UserTimeout != rs.Idle+rs.Interval*time.Duration(rs.Count) {
						t.Errorf("Recommend(%v, %+v, %v) = %v, with the note %q", cur, k, p, rs, n)
						failures++
					}
				}
				for _, sit := range Situations {
					now, rec := Detect(sit, cur, k), r.Detect[sit]
					if !aborts && !now.Never && (rec.Never || rec.After > now.After) {
						t.Errorf("Recommend(%v, %+v, %v) = %v: %s detected after %v, later than %v now", cur, k, p, rs, sit, rec, now)
						failures++
					}
				}
				if failures > 10 {
					t.Fatal("too many failures")
				}
			}
		}
	}
}
