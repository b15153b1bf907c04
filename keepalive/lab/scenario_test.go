package lab

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// TestExpected checks the scenario model against keepalive.Detect's numbers.
func TestExpected(t *testing.T) {
	ka := keepalive.Settings{Idle: 2 * time.Second, Interval: time.Second, Count: 3}
	for _, tc := range []struct {
		scenario       string
		o              Options
		client, server string // "never" or a duration
	}{
		{"drop-idle", Options{Settings: ka}, "5s", "5s"},
		{"drop-sending", Options{Settings: ka, Retries2: 5}, "5s", "12.6s"},
		{"drop-sending", Options{Settings: ka, Retries2: -1}, "5s", "200ms"},    // tcp_retries2 0: the first RTO expiry
		{"drop-sending", Options{Settings: keepalive.Off}, "never", "15m24.6s"}, // the seed's streaming server
		{"drop-sending", Options{Settings: keepalive.Settings{Idle: -1, UserTimeout: 3 * time.Second}}, "never", "3s"},
		{"drop-one-way", Options{Settings: ka, Retries2: 5}, "5s", "5s"}, // the client's RST
		{"drop-one-way", Options{Settings: keepalive.Off, Retries2: 5}, "never", "12.6s"},
		{"reset", Options{Settings: ka}, "2s", "100ms"},
		{"reset", Options{Settings: keepalive.Off}, "never", "100ms"},
		{"idle-close", Options{Settings: ka}, "0s", "0s"},
		{"firewall-expiry", Options{Settings: ka}, "never", "never"},                                                                                                  // 2s < 3s state timeout
		{"firewall-expiry", Options{Settings: keepalive.Settings{Idle: 10 * time.Second, Interval: time.Second, Count: 2, UserTimeout: 5 * time.Second}}, "5s", "7s"}, // 10s+1s (first firing after U) - 4s idle
	} {
		sc, _ := Lookup(tc.scenario)
		c, s := sc.Expected(tc.o, 4*time.Second)
		str := func(d keepalive.Detection) string {
			if d.Never {
				return "never"
			}
			return keepalive.FormatDuration(d.After)
		}
		if str(c) != tc.client || str(s) != tc.server {
			t.Errorf("%s %v: expected client %s server %s, want %s %s", tc.scenario, tc.o.Settings, str(c), str(s), tc.client, tc.server)
		}
	}
}

func TestParseNames(t *testing.T) {
	got, err := ParseNames([]string{"reset,drop-idle", "reset"})
	if err != nil || len(got) != 2 || got[0].Name != "reset" || got[1].Name != "drop-idle" {
		t.Errorf("ParseNames = %v, %v", got, err)
	}
	// Without regard to case, as every keyword on the command line.
	got, err = ParseNames([]string{"DROP-IDLE, Reset", "reset"})
	if err != nil || len(got) != 2 || got[0].Name != "drop-idle" || got[1].Name != "reset" {
		t.Errorf("ParseNames in capitals = %v, %v", got, err)
	}
	if _, err := ParseNames([]string{"nope"}); err == nil || !strings.HasPrefix(err.Error(), "lab: ") {
		t.Errorf("unknown scenario: %v", err)
	}
	// Given but naming none ("--scenario ''" from a script): not the default set.
	for _, names := range [][]string{{""}, {" , "}, {",", ""}} {
		if got, err := ParseNames(names); err == nil {
			t.Errorf("ParseNames(%q) = %v, nil; want an error", names, got)
		}
	}
	if all, _ := ParseNames(nil); len(all) != len(Scenarios) {
		t.Errorf("default set has %d scenarios", len(all))
	}
}

// TestRetries2Zero: a negative Retries2 is tcp_retries2 set to 0, as in
// keepalive.Kernel (connscope keepalive lab --retries2 0). It was refused
// by Validate and ignored by Kernel, so the lab could not model or set it.
func TestRetries2Zero(t *testing.T) {
	o := Options{Retries2: -1}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if k := o.Kernel(); k.Retries2 != -1 {
		t.Errorf("Kernel().Retries2 = %d, want -1 (the sysctl at 0)", k.Retries2)
	}
	if err := (Options{StateTimeout: MaxStateTimeout}).Validate(); err != nil {
		t.Errorf("Validate(StateTimeout %v): %v", MaxStateTimeout, err)
	}
	if err := (Options{StateTimeout: MaxStateTimeout + time.Second}).Validate(); err == nil {
		t.Errorf("Validate(StateTimeout %v) = nil; the kernel refuses it", MaxStateTimeout+time.Second)
	}
	if err := (Options{Retries2: 256}).Validate(); err == nil || !strings.Contains(err.Error(), "retries2") {
		t.Errorf("Validate(Retries2 256) = %v, want an error naming retries2", err)
	}
}

// TestExpectedOddOptions: Expected, ExpectedErrors and Kernel take Options
// built in code, which Run validates but they do not. They must answer
// for any, without a panic or a negative time. A negative lastRecv made
// firewall-expiry's "After - lastRecv" overflow to a detection at once.
func TestExpectedOddOptions(t *testing.T) {
	const maxDur = time.Duration(math.MaxInt64)
	huge := keepalive.Settings{Idle: maxDur, Interval: maxDur, Count: math.MaxInt, UserTimeout: maxDur}
	for _, o := range []Options{
		{},
		{Retries2: math.MaxInt},
		{Retries2: math.MinInt},
		{Settings: huge},
		{Settings: keepalive.Settings{Idle: math.MinInt64, Interval: math.MinInt64, Count: math.MinInt, UserTimeout: math.MinInt64}},
		{Settings: keepalive.Settings{Idle: 1, Interval: 1, Count: 1, UserTimeout: 1}},
		{StateTimeout: maxDur, IdleClose: maxDur},
		{StateTimeout: math.MinInt64, IdleClose: math.MinInt64},
	} {
		for _, sc := range Scenarios {
			for _, lastRecv := range []time.Duration{math.MinInt64, -1, 0, time.Second, maxDur} {
				c, s := sc.Expected(o, lastRecv)
				for side, d := range map[string]keepalive.Detection{"client": c, "server": s} {
					if !d.Never && d.After < 0 {
						t.Errorf("%s with %+v, lastRecv %v: %s expected after %v", sc.Name, o, lastRecv, side, d.After)
					}
				}
			}
			for _, userspace := range []bool{false, true} {
				if c, s := sc.ExpectedErrors(o, userspace); c == "" || s == "" {
					t.Errorf("%s with %+v: expected errors %q, %q", sc.Name, o, c, s)
				}
			}
		}
	}
	// Past the Duration's range: saturated, not wrapped to 0.
	sc, _ := Lookup("firewall-expiry")
	if _, s := sc.Expected(Options{Settings: huge}, -1); s.Never || s.After != maxDur {
		t.Errorf("firewall-expiry with %v, lastRecv -1: server expected %v, want %v", huge, s, maxDur)
	}
}
