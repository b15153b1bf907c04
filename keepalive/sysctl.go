package keepalive

import "fmt"

// A SysctlError reports a sysctl whose value [ReadKernel] cannot put in a
// [Kernel], such as a negative tcp_keepalive_time: the kernel accepts that,
// but its keepalive timer takes it as about 2^32 jiffies.
type SysctlError struct {
	Name  string // e.g. "net.ipv4.tcp_keepalive_time"
	Value string // as read
	Why   string // what is wrong with it, and what the kernel does with it
}

func (e *SysctlError) Error() string {
	return fmt.Sprintf("keepalive: %s = %s: %s", e.Name, e.Value, e.Why)
}
