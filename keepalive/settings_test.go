package keepalive

import (
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	tests := []struct {
		in      string
		want    Settings
		wantErr bool
	}{
		{"off", Off, false},
		{"os", Settings{}, false},
		{"default", GoDefault, false},
		{"go", GoDefault, false},
		{"2/1/3", Settings{Idle: 2 * sec, Interval: sec, Count: 3}, false},
		{"2s/1s/3", Settings{Idle: 2 * sec, Interval: sec, Count: 3}, false},
		{"2s/os/os", Settings{Idle: 2 * sec}, false},
		{"2s/1s/3 user-timeout=5s", Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}, false},
		{"off user-timeout=1500ms", Settings{Idle: -1, UserTimeout: 1500 * time.Millisecond}, false},
		// Keywords without regard to case, the user-timeout= key too.
		{"OFF", Off, false},
		{"Default", GoDefault, false},
		{"KERNEL", Settings{}, false},
		{"OS/1s/3", Settings{Interval: sec, Count: 3}, false},
		{"2s/1s/OS", Settings{Idle: 2 * sec, Interval: sec}, false},
		{"2s/1s/3 User-Timeout=5s", Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}, false},
		{"", Settings{}, true},
		{"2/1", Settings{}, true},
		{"x/1/3", Settings{}, true},
		{"2/1/0", Settings{}, true},
		{"2/1/200", Settings{}, true},
		{"1.5/1/3", Settings{}, true}, // the kernel takes whole seconds
		{"0/1/3", Settings{}, true},
		{"2/1/3 bogus", Settings{}, true},
		{"2/1/3 user-timeout=1.5us", Settings{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSettings(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseSettings(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			back, err := ParseSettings(got.String())
			if err != nil || back != got {
				t.Errorf("ParseSettings(%q.String() = %q) = %+v, %v", tt.in, got.String(), back, err)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []Settings{{Interval: -1}, {Count: -1}, {Idle: 1500 * time.Millisecond}, {Count: 128}, {UserTimeout: -1}} {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", s)
		}
	}
	for _, s := range []Settings{{}, Off, GoDefault, {Idle: -1, Interval: -1, Count: -1}} {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", s, err)
		}
	}
}

func TestEffective(t *testing.T) {
	k := Kernel{KeepaliveTime: 10 * sec} // other fields: Linux defaults
	got := Settings{Interval: -1, UserTimeout: 3 * sec}.Effective(k)
	want := Settings{Idle: 10 * sec, Interval: 75 * sec, Count: 9, UserTimeout: 3 * sec}
	if got != want {
		t.Errorf("Effective = %+v, want %+v", got, want)
	}
	// Sysctls set to 0 stay 0: they are not the Linux defaults.
	if got := (Settings{}).Effective(Kernel{KeepaliveTime: -1, KeepaliveIntvl: -1, KeepaliveProbes: -1}); got != (Settings{}) {
		t.Errorf("Effective with the keepalive sysctls 0 = %+v, want all 0", got)
	}
	if got := Off.Effective(k); got.Enabled() {
		t.Errorf("Off.Effective = %+v, want disabled", got)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"75", 75 * sec, false},
		{"1.5", 1500 * time.Millisecond, false},
		{"2s", 2 * sec, false},
		{"1m30s", 90 * sec, false},
		{"-1", 0, true},
		{"32768", 0, true},
		{"Inf", 0, true},
		// NaN parsed as a float, and its conversion to a Duration is
		// whatever the CPU gives: MinInt64 on amd64, 0 ("the OS
		// default") on arm64.
		{"NaN", 0, true},
		{"nan", 0, true},
		{"soon", 0, true},
	} {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
