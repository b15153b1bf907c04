//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime"
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

// explainInNetns runs `keepalive explain --json` on a thread in a fresh
// network namespace (discarded with the thread) whose net.ipv4 sysctls are
// set to sysctls, and returns its output. tcp_syn_linear_timeouts may be
// missing (Linux before 6.5).
func explainInNetns(t *testing.T, sysctls map[string]string) string {
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
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	return r.out
}
