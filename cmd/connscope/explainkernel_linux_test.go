//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExplainUsesTheKernelsValues: "Unset keepalive flags mean the
// kernel's value, as on a socket where they were not set." On a host whose
// sysctls are not the Linux defaults (tcp_keepalive_time=600 is common),
// explain must use them, as a socket would. The test runs explain on a
// thread in a fresh network namespace (discarded with the thread) whose
// keepalive sysctls are 600 s / 10 s / 5, and whose tcp_syn_linear_timeouts
// (Linux 6.5+) is 2.
func TestExplainUsesTheKernelsValues(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	out := explainInNetns(t, map[string]string{"tcp_keepalive_time": "600", "tcp_keepalive_intvl": "10", "tcp_keepalive_probes": "5", "tcp_syn_linear_timeouts": "2"})
	var v struct {
		Detect map[string]struct {
			AfterSeconds float64 `json:"after_seconds"`
		} `json:"detect"`
		Kernel map[string]any `json:"kernel"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if got := v.Detect["idle"].AfterSeconds; got != 600+10*5 {
		t.Errorf("explain with no keepalive flags on a kernel with keepalive 600s/10s/5: idle detection %v s, want 650 s (a socket here gets 600+10×5); kernel shown: %v", got, v.Kernel)
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"); err == nil && v.Kernel["tcp_syn_linear_timeouts"] != 2.0 {
		t.Errorf("kernel shown %v: tcp_syn_linear_timeouts %v, want the namespace's 2", v.Kernel, v.Kernel["tcp_syn_linear_timeouts"])
	}
}

// TestExplainSysctlsSetToZero: tcp_keepalive_probes=0 and tcp_retries2=0 are
// real settings, not "the default". With probes 0 the kernel aborts an idle
// socket at the first keepalive firing, I, without a probe (measured here:
// ETIMEDOUT 1.01 s after idle with I=1s, peer alive); with retries2 0 a
// connection with unacknowledged data is aborted at the first RTO expiry
// (measured 0.22 s). explain must neither show 0 and compute with 9 and
// 15, nor compute 2h11m15s and 15m24.6s.
func TestExplainSysctlsSetToZero(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	out := explainInNetns(t, map[string]string{"tcp_keepalive_time": "600", "tcp_keepalive_intvl": "10", "tcp_keepalive_probes": "0", "tcp_retries2": "0"})
	var v struct {
		Detect map[string]struct {
			AfterSeconds float64 `json:"after_seconds"`
		} `json:"detect"`
		Kernel   map[string]any `json:"kernel"`
		Settings map[string]any `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Settings["count"] != 0.0 {
		t.Errorf("settings shown %v, want the effective count 0", v.Settings)
	}
	if got := v.Detect["idle"].AfterSeconds; got != 600 {
		t.Errorf("idle detection with tcp_keepalive_probes=0: %v s, want 600 (the first firing aborts)", got)
	}
	if got := v.Detect["sending"].AfterSeconds; got != 0.2 {
		t.Errorf("sending detection with tcp_retries2=0: %v s, want 0.2 (the first RTO expiry)", got)
	}
	if v.Kernel["tcp_keepalive_probes"] != 0.0 || v.Kernel["tcp_retries2"] != 0.0 {
		t.Errorf("kernel shown %v, want tcp_keepalive_probes 0 and tcp_retries2 0", v.Kernel)
	}
}

// TestExplainKeepaliveTimeAndIntervalZero: tcp_keepalive_time=0 and
// tcp_keepalive_intvl=0 are accepted by the kernel and are not "the
// default". With no per-socket value, keepalive_time_when() is 0, so the
// timer never waits for idleness: it probes at once and then every V,
// answered or not, and the first probe after the last packet received comes
// up to V later (measured in a namespace with a peer silenced by an nftables
// drop: 0/1s/3 aborted 4.1 s after the last packet, (C+1)×V). With
// intvl 0 the probes after the first are one timer tick apart (2s/0/3:
// ETIMEDOUT 2.02 s after the last packet). With both 0 a probe goes out
// every tick and the peer answers at most one per tcp_invalid_ratelimit
// (500 ms), so even a live connection is aborted 16 ms after it starts.
// explain must not compute with 2h and 75 s instead.
func TestExplainKeepaliveTimeAndIntervalZero(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	tests := []struct {
		name                 string
		time, intvl          string
		idle                 float64 // seconds
		settingsIdle, kernel float64 // shown: effective idle, tcp_keepalive_time_s
		note                 string  // in the idle detection's note
	}{
		{"time 0", "0", "10", 10 + 10*5, 0, 0, "every V from the start"},
		{"intvl 0", "600", "0", 600, 600, 600, "one timer tick"},
		{"both 0", "0", "0", 0, 0, 0, "even a live connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := explainInNetns(t, map[string]string{"tcp_keepalive_time": tt.time, "tcp_keepalive_intvl": tt.intvl, "tcp_keepalive_probes": "5"})
			var v struct {
				Detect map[string]struct {
					AfterSeconds float64 `json:"after_seconds"`
					Note         string  `json:"note"`
				} `json:"detect"`
				Kernel   map[string]any `json:"kernel"`
				Settings map[string]any `json:"settings"`
			}
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatal(err)
			}
			if got := v.Detect["idle"].AfterSeconds; got != tt.idle {
				t.Errorf("idle detection with tcp_keepalive_time=%s tcp_keepalive_intvl=%s probes 5: %v s, want %v", tt.time, tt.intvl, got, tt.idle)
			}
			if n := v.Detect["idle"].Note; !strings.Contains(n, tt.note) {
				t.Errorf("idle note %q, want it to say %q", n, tt.note)
			}
			if v.Settings["idle_s"] != tt.settingsIdle {
				t.Errorf("settings shown %v, want the effective idle %v s", v.Settings, tt.settingsIdle)
			}
			if v.Kernel["tcp_keepalive_time_s"] != tt.kernel {
				t.Errorf("kernel shown %v, want tcp_keepalive_time_s %v", v.Kernel, tt.kernel)
			}
		})
	}
}

// TestExplainSynLinearTimeoutsZero: tcp_syn_linear_timeouts=0 is a valid
// setting (no SYN retry at the linear 1 s timeout; measured in the lab with
// tcp_syn_retries 3: connect fails after 15.5 s, 1+2+4+8, against 19.5 s
// with the default 4), not the sysctl missing on a kernel before 6.5. explain
// must show it as 0 and say so in the connect rule, not leave it out as if
// the kernel had no such sysctl.
func TestExplainSynLinearTimeoutsZero(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"); err != nil {
		t.Skip("no tcp_syn_linear_timeouts before Linux 6.5")
	}
	out := explainInNetns(t, map[string]string{"tcp_syn_retries": "3", "tcp_syn_linear_timeouts": "0"})
	var v struct {
		Detect map[string]struct {
			AfterSeconds float64 `json:"after_seconds"`
			Rule         string  `json:"rule"`
		} `json:"detect"`
		Kernel map[string]any `json:"kernel"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if lin, ok := v.Kernel["tcp_syn_linear_timeouts"]; !ok || lin != 0.0 {
		t.Errorf("kernel shown %v: tcp_syn_linear_timeouts %v (present %v), want 0", v.Kernel, lin, ok)
	}
	c := v.Detect["connect"]
	if c.AfterSeconds != 15 {
		t.Errorf("connect detection with tcp_syn_retries 3 and no linear timeouts: %v s, want 15 (1+2+4+8)", c.AfterSeconds)
	}
	if !strings.Contains(c.Rule, "tcp_syn_linear_timeouts = 0") {
		t.Errorf("connect rule %q, want it to say tcp_syn_linear_timeouts = 0", c.Rule)
	}
}

// TestExplainNegativeKeepaliveSysctl: the kernel accepts a negative
// tcp_keepalive_time or tcp_keepalive_intvl, and its keepalive timer then
// waits about 2^32 jiffies (keepalive.TestReadKernelNegativeSysctl).
// explain showed 0s and predicted seconds, as for a sysctl at 0; it must
// fail instead, naming the sysctl, and not fall back to Linux's defaults as
// it does where the sysctls cannot be read.
func TestExplainNegativeKeepaliveSysctl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, name := range []string{"tcp_keepalive_time", "tcp_keepalive_intvl"} {
		out, errOut, code := runExplainInNetns(t, map[string]string{name: "-1"})
		if code != 1 || !strings.Contains(errOut, "net.ipv4."+name+" = -1") {
			t.Errorf("explain with %s = -1: exit %d, stderr %q, stdout %q; want exit 1 and an error naming net.ipv4.%s", name, code, errOut, out, name)
		}
	}
}

// explainInNetns runs `keepalive explain --json` on a thread in a fresh
// network namespace (discarded with the thread) whose net.ipv4 sysctls are
// set to sysctls, and returns its output. tcp_syn_linear_timeouts may be
// missing (Linux before 6.5).
func explainInNetns(t *testing.T, sysctls map[string]string) string {
	t.Helper()
	out, errOut, code := runExplainInNetns(t, sysctls)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	return out
}

// runExplainInNetns is explainInNetns returning the exit status and stderr.
func runExplainInNetns(t *testing.T, sysctls map[string]string) (out, errOut string, code int) {
	t.Helper()
	type res struct {
		out, errOut string
		code        int
		err         error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			c <- res{err: err}
			return
		}
		for k, v := range sysctls {
			if err := os.WriteFile("/proc/sys/net/ipv4/"+k, []byte(v), 0o644); err != nil && !(k == "tcp_syn_linear_timeouts" && os.IsNotExist(err)) {
				c <- res{err: err}
				return
			}
		}
		var out, errOut bytes.Buffer
		code := execute(context.Background(), []string{"keepalive", "explain", "--json"}, &out, &errOut)
		c <- res{out.String(), errOut.String(), code, nil}
	}()
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.out, r.errOut, r.code
}
