package keepalive

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzModel feeds Detect, Recommend and Effective with Kernel, Settings and
// Path values built in code, which no sysctl or Validate has checked: an
// RTOMax under 200 ms or 1 s, RTOMax below RTOMin, zero, negative and huge
// fields. They must answer, never panic, and answer sanely: no negative
// detection time, a recommendation Apply accepts. The seed corpus runs with
// every go test; the cases are the ones that panicked or overflowed.
func FuzzModel(f *testing.F) {
	const maxDur = time.Duration(math.MaxInt64)
	type input struct {
		s Settings
		k Kernel
		p time.Duration // Path.LoadBalancer and its one IdleTimeouts
	}
	seeds := []input{
		{k: DefaultKernel()},
		{s: GoDefault, k: DefaultKernel(), p: 60 * sec},
		// Panicked: negative shift in the give-up bound.
		{k: Kernel{RTOMax: 100 * time.Millisecond}},                                // connect: under the SYN's 1 s
		{k: Kernel{RTOMin: 10 * time.Millisecond, RTOMax: 100 * time.Millisecond}}, // sending: under 200 ms
		{k: Kernel{RTOMin: 1, RTOMax: 1}},
		{k: Kernel{RTOMin: sec, RTOMax: 100 * time.Millisecond}}, // RTOMax < RTOMin
		{k: Kernel{RTOMin: -sec, RTOMax: -sec}},
		// Overflowed into negative or nonsense times.
		{k: Kernel{RTOMin: maxDur, RTOMax: maxDur}},
		{k: Kernel{RTOMin: 1, RTOMax: maxDur}},
		{k: Kernel{Retries2: math.MaxInt, SynRetries: math.MaxInt, SynLinearTimeouts: math.MaxInt}},
		{k: Kernel{Retries2: 1 << 40, RTOMin: 1, RTOMax: 1}},
		{k: Kernel{KeepaliveTime: maxDur, KeepaliveIntvl: maxDur, KeepaliveProbes: math.MaxInt}},
		{k: Kernel{KeepaliveTime: math.MinInt64, KeepaliveIntvl: math.MinInt64, KeepaliveProbes: math.MinInt, Retries2: math.MinInt,
			SynRetries: math.MinInt, SynLinearTimeouts: math.MinInt}},
		{s: Settings{Idle: maxDur, Interval: maxDur, Count: math.MaxInt, UserTimeout: maxDur}},
		{s: Settings{Idle: 1, Interval: 1, Count: 1, UserTimeout: maxDur}},
		{s: Settings{Idle: 1500 * time.Millisecond, Interval: 1, Count: 1000, UserTimeout: 1}},
		{s: Settings{Idle: sec, Interval: maxDur, Count: 2, UserTimeout: maxDur - 1}},
		{s: Settings{Idle: math.MinInt64, Interval: math.MinInt64, Count: math.MinInt, UserTimeout: math.MinInt64}},
		{s: GoDefault, p: maxDur},
		{s: GoDefault, p: 1},
		{s: GoDefault, p: math.MinInt64},
	}
	for _, in := range seeds {
		f.Add(int64(in.s.Idle), int64(in.s.Interval), in.s.Count, int64(in.s.UserTimeout),
			int64(in.k.KeepaliveTime), int64(in.k.KeepaliveIntvl), in.k.KeepaliveProbes, in.k.Retries2,
			int64(in.k.RTOMin), int64(in.k.RTOMax), in.k.SynRetries, in.k.SynLinearTimeouts, in.k.SynLinearTimeoutsAbsent,
			int64(in.p))
	}
	f.Fuzz(func(t *testing.T, idle, interval int64, count int, u int64,
		kt, ki int64, kp, r2 int, rtoMin, rtoMax int64, syn, synLin int, synAbsent bool, p int64) {
		s := Settings{Idle: time.Duration(idle), Interval: time.Duration(interval), Count: count, UserTimeout: time.Duration(u)}
		k := Kernel{KeepaliveTime: time.Duration(kt), KeepaliveIntvl: time.Duration(ki), KeepaliveProbes: kp, Retries2: r2,
			RTOMin: time.Duration(rtoMin), RTOMax: time.Duration(rtoMax), SynRetries: syn, SynLinearTimeouts: synLin,
			SynLinearTimeoutsAbsent: synAbsent}
		path := Path{LoadBalancer: time.Duration(p), IdleTimeouts: []time.Duration{time.Duration(p)}}

		e := s.Effective(k)
		if e.Enabled() && (e.Idle < 0 || e.Interval < 0 || e.Count < 0 || e.UserTimeout < 0) {
			t.Errorf("Settings%+v.Effective(%+v) = %+v: a negative field", s, k, e)
		}
		_ = s.String()
		for _, sit := range Situations {
			d := Detect(sit, s, k)
			checkDetection(t, "Detect", sit, s, k, d)
			if b, err := json.Marshal(d); err != nil {
				t.Errorf("Detect(%s, %+v, %+v) = %v: MarshalJSON: %v", sit, s, k, d, err)
			} else if err := json.Unmarshal(b, new(Detection)); err != nil {
				t.Errorf("Detect(%s, %+v, %+v): UnmarshalJSON(%s): %v", sit, s, k, b, err)
			}
		}
		r := Recommend(s, k, path)
		if err := r.Settings.Validate(); err != nil {
			t.Errorf("Recommend(%+v, %+v, %+v) = %v, which Apply refuses: %v", s, k, path, r.Settings, err)
		}
		if r.IdleConnTimeout < 0 || (path.LoadBalancer > 0 && r.IdleConnTimeout == 0) || r.HTTP2SendPingTimeout <= 0 || r.HTTP2PingTimeout <= 0 {
			t.Errorf("Recommend(%+v, %+v, %+v): IdleConnTimeout %v, HTTP/2 ping %v / %v", s, k, path, r.IdleConnTimeout, r.HTTP2SendPingTimeout, r.HTTP2PingTimeout)
		}
		for sit, d := range r.Detect {
			checkDetection(t, "Recommend", sit, s, k, d)
		}
	})
}

func checkDetection(t *testing.T, who string, sit Situation, s Settings, k Kernel, d Detection) {
	t.Helper()
	if d.Timer == "" || d.Rule == "" {
		t.Errorf("%s: %s with %+v on %+v = %+v: no timer or rule", who, sit, s, k, d)
	}
	if d.Never {
		return
	}
	// Only the idle situation, with a sysctl at 0, aborts at once.
	if d.After < 0 || (d.After == 0 && sit != Idle) {
		t.Errorf("%s: %s with %+v on %+v after %v (%s)", who, sit, s, k, d.After, d.Rule)
	}
}
