package keepalive

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Settings are one socket's dead-peer detection settings.
//
// Zero Idle, Interval or Count mean "the OS default": the value in [Kernel].
// A negative Idle means keepalive off. A negative Interval or Count has no
// meaning of its own: Validate rejects it (Effective treats it like zero).
// A zero UserTimeout means TCP_USER_TIMEOUT is not set.
type Settings struct {
	Idle        time.Duration `json:"idle"`         // TCP_KEEPIDLE
	Interval    time.Duration `json:"interval"`     // TCP_KEEPINTVL
	Count       int           `json:"count"`        // TCP_KEEPCNT
	UserTimeout time.Duration `json:"user_timeout"` // TCP_USER_TIMEOUT
}

// Well-known settings.
var (
	// Off disables keepalive.
	Off = Settings{Idle: -1}
	// GoDefault is what a zero net.Dialer or net.ListenConfig sets since Go 1.23:
	// 15 s idle, 15 s interval, 9 probes.
	GoDefault = Settings{Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}
)

// Enabled reports whether keepalive probes are on.
func (s Settings) Enabled() bool { return s.Idle >= 0 }

// Effective returns s with the OS defaults from k filled in, so that Idle,
// Interval and Count are positive (or 0 where the sysctl they come from,
// tcp_keepalive_time, _intvl or _probes, is 0), or with Idle < 0 if
// keepalive is off.
func (s Settings) Effective(k Kernel) Settings {
	k = k.withDefaults()
	if s.Idle < 0 {
		return Settings{Idle: -1, UserTimeout: s.UserTimeout}
	}
	if s.Idle == 0 {
		s.Idle = max(k.KeepaliveTime, 0) // negative: the sysctl is 0
	}
	if s.Interval <= 0 {
		s.Interval = max(k.KeepaliveIntvl, 0)
	}
	if s.Count <= 0 {
		s.Count = max(k.KeepaliveProbes, 0) // negative: the sysctl is 0
	}
	if s.UserTimeout < 0 {
		s.UserTimeout = 0
	}
	return s
}

// String formats s as "off", "I/V/C" with "os" for OS defaults, plus
// " user-timeout=U" when TCP_USER_TIMEOUT is set; ParseSettings reads it back.
func (s Settings) String() string {
	var b strings.Builder
	if s.Idle < 0 {
		b.WriteString("off")
	} else {
		b.WriteString(fmtOS(s.Idle))
		b.WriteByte('/')
		b.WriteString(fmtOS(s.Interval))
		b.WriteByte('/')
		if s.Count <= 0 {
			b.WriteString("os")
		} else {
			b.WriteString(strconv.Itoa(s.Count))
		}
	}
	if s.UserTimeout > 0 {
		b.WriteString(" user-timeout=")
		b.WriteString(FormatDuration(s.UserTimeout))
	}
	return b.String()
}

func fmtOS(d time.Duration) string {
	if d <= 0 {
		return "os"
	}
	return FormatDuration(d)
}

// ParseSettings parses keepalive settings written as
//
//	off          keepalive disabled
//	os, kernel   keepalive on with the kernel's idle, interval and count
//	default, go  Go's defaults, 15s/15s/9 (GoDefault)
//	I/V/C        idle, interval and count, e.g. "2s/1s/3" or "2/1/3" (seconds);
//	             "os" in a position keeps the kernel's value
//
// (without regard to case), optionally followed by " user-timeout=U". The
// result is validated.
func ParseSettings(text string) (Settings, error) {
	var s Settings
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return s, errors.New("keepalive: empty settings")
	}
	switch f := strings.ToLower(fields[0]); f {
	case "off":
		s = Off
	case "os", "kernel":
	case "default", "go":
		s = GoDefault
	default:
		parts := strings.Split(f, "/")
		if len(parts) != 3 {
			return Settings{}, fmt.Errorf("keepalive: settings %q: want off, os, default or IDLE/INTERVAL/COUNT", fields[0])
		}
		var err error
		if s.Idle, err = parseDurationOS(parts[0]); err != nil {
			return Settings{}, fmt.Errorf("keepalive: idle: %w", err)
		}
		if s.Interval, err = parseDurationOS(parts[1]); err != nil {
			return Settings{}, fmt.Errorf("keepalive: interval: %w", err)
		}
		if parts[2] != "os" {
			if s.Count, err = strconv.Atoi(parts[2]); err != nil || s.Count <= 0 {
				return Settings{}, fmt.Errorf("keepalive: count %q: want a positive integer", parts[2])
			}
		}
	}
	for _, f := range fields[1:] {
		v, ok := strings.CutPrefix(strings.ToLower(f), "user-timeout=")
		if !ok {
			return Settings{}, fmt.Errorf("keepalive: unexpected %q in settings", f)
		}
		d, err := ParseDuration(v)
		if err != nil {
			return Settings{}, fmt.Errorf("keepalive: user-timeout: %w", err)
		}
		s.UserTimeout = d
	}
	return s, s.Validate()
}

func parseDurationOS(v string) (time.Duration, error) {
	if v == "os" {
		return 0, nil
	}
	d, err := ParseDuration(v)
	if err == nil && d <= 0 {
		err = fmt.Errorf("%q: want a positive duration", v)
	}
	return d, err
}

// ParseDuration is time.ParseDuration that also accepts a bare number of
// seconds ("75" = 75s), as the kernel's sysctls and the seed's tools write them.
func ParseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) { // NaN converts to any Duration
		if f < 0 || f > float64(maxSetting/time.Second) {
			return 0, fmt.Errorf("%q: out of range", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q: not a duration (e.g. 2s, 1m30s, 75)", v)
	}
	return d, nil
}

// Kernel limits: TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds up to
// 32767 (MAX_TCP_KEEPIDLE), TCP_KEEPCNT up to 127 (MAX_TCP_KEEPCNT).
const (
	maxSetting = 32767 * time.Second
	maxCount   = 127
)

// Validate reports settings the kernel would refuse or round: keepalive
// times must be whole seconds from 1 s to 32767 s (or zero), the count from
// 1 to 127 (or zero),
// and TCP_USER_TIMEOUT whole milliseconds that fit in an int.
func (s Settings) Validate() error {
	check := func(name string, d time.Duration) error {
		if d <= 0 {
			return nil // OS default
		}
		if d < time.Second || d > maxSetting || d%time.Second != 0 {
			return fmt.Errorf("keepalive: %s %v: want whole seconds from 1s to %v", name, d, maxSetting)
		}
		return nil
	}
	if s.Idle > 0 {
		if err := check("idle", s.Idle); err != nil {
			return err
		}
	}
	if s.Idle >= 0 {
		if s.Interval < 0 {
			return fmt.Errorf("keepalive: interval %v: want a positive duration, or zero for the OS default", s.Interval)
		}
		if err := check("interval", s.Interval); err != nil {
			return err
		}
		if s.Count < 0 || s.Count > maxCount {
			return fmt.Errorf("keepalive: count %d: want 1 to %d", s.Count, maxCount)
		}
	}
	if s.UserTimeout < 0 || s.UserTimeout%time.Millisecond != 0 || s.UserTimeout > maxUserTimeout {
		return fmt.Errorf("keepalive: user timeout %v: want whole milliseconds, at most %v", s.UserTimeout, maxUserTimeout)
	}
	return nil
}

// FormatDuration formats d compactly: "2h" rather than "2h0m0s", "15m24.6s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// maxUserTimeout is the longest TCP_USER_TIMEOUT: the kernel takes
// milliseconds in an int.
const maxUserTimeout = (1<<31 - 1) * time.Millisecond
