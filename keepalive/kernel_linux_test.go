package keepalive

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inNewNetns runs fn on a thread in a fresh network namespace, which is
// discarded with the thread, so the sysctls fn writes there (they are per
// namespace) never reach the host, even if the test fails.
func inNewNetns(t *testing.T, fn func() error) error {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			errc <- nil
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// TestReadKernelNegativeSysctl: the kernel accepts a negative
// tcp_keepalive_time or tcp_keepalive_intvl (proc_dointvec_jiffies has no
// minimum) and reads it back as written, but its keepalive timer compares
// the value as unsigned: a socket left to the sysctl waits about 2^32
// jiffies (49.7 days at HZ=1000, 198.8 at HZ=250) before the probe the value
// stands for (ss -tino here, HZ=250, with -1: "timer:(keepalive,71582min,0)",
// jiffies_to_msecs wrapped; no probe went out). ReadKernel read -1 as 0,
// which Detect models as probing every tick: a prediction of seconds for a
// socket that does not probe for months. It must refuse the value, naming
// the sysctl. The kernel refuses a negative tcp_keepalive_probes and
// tcp_retries2 (u8 with a minimum) itself.
func TestReadKernelNegativeSysctl(t *testing.T) {
	for _, name := range []string{"tcp_keepalive_time", "tcp_keepalive_intvl"} {
		t.Run(name, func(t *testing.T) {
			var readBack string
			err := inNewNetns(t, func() error {
				p := "/proc/sys/net/ipv4/" + name
				if err := os.WriteFile(p, []byte("-1"), 0o644); err != nil {
					t.Errorf("the kernel refused %s = -1: %v", name, err)
					return nil
				}
				b, _ := os.ReadFile(p)
				readBack = strings.TrimSpace(string(b))
				_, err := ReadKernel()
				return err
			})
			if readBack != "-1" {
				t.Errorf("%s reads back %q after writing -1", name, readBack)
			}
			var se *SysctlError
			if !errors.As(err, &se) || se.Name != "net.ipv4."+name || se.Value != "-1" {
				t.Fatalf("ReadKernel with %s = -1: error %v, want a *SysctlError naming net.ipv4.%s", name, err, name)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "keepalive: net.ipv4."+name+" = -1: ") || !strings.Contains(msg, "2^32 jiffies") {
				t.Errorf("error %q: want it to name the sysctl, its value and what the kernel does with it", msg)
			}
		})
	}
	for _, name := range []string{"tcp_keepalive_probes", "tcp_retries2"} {
		err := inNewNetns(t, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/"+name, []byte("-1"), 0o644)
		})
		if err == nil {
			t.Errorf("the kernel accepted %s = -1; ReadKernel must handle it", name)
		}
	}
}
