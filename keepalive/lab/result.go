package lab

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/connscope/connscope/keepalive"
	"github.com/connscope/connscope/tcpinfo"
)

// Report is the outcome of a run.
type Report struct {
	Mode     string             `json:"mode"`          // "namespaces" or "userspace"
	Lab      string             `json:"lab,omitempty"` // namespace name prefix, e.g. cslab-1234-1
	Notice   string             `json:"notice,omitempty"`
	Settings keepalive.Settings `json:"settings"`
	Kernel   keepalive.Kernel   `json:"kernel"`
	Results  []Result           `json:"results"`
}

// Result is one scenario's outcome.
type Result struct {
	Scenario string `json:"scenario"`
	Doc      string `json:"doc"`
	Settings string `json:"settings"`
	// Skipped says why the scenario did not run (too long, needs root, ...).
	Skipped string `json:"skipped,omitempty"`
	Note    string `json:"note,omitempty"`
	Client  Side   `json:"client"`
	Server  Side   `json:"server"`
}

// Side is what one endpoint saw, times counted from the fault.
type Side struct {
	Expected keepalive.Detection `json:"expected"`
	// ExpectedError is the error the kernel's rules predict for the first syscall.
	ExpectedError string `json:"expected_error"`
	// Detected: the side saw an error (or EOF) before the run's deadline.
	Detected bool          `json:"detected"`
	After    time.Duration `json:"after_ns,omitempty"`
	Error    string        `json:"error,omitempty"` // ETIMEDOUT, ECONNRESET, EHOSTUNREACH, EOF, EPIPE, ...
	Op       string        `json:"op,omitempty"`    // read or write
	// Waited is how long the run watched this side after the fault.
	Waited time.Duration `json:"waited_ns"`
	// Events lists every error the side's syscalls returned, in order: only the
	// first one carries the kernel's error, later ones see EOF or EPIPE.
	Events []Event `json:"events,omitempty"`
	// TCPInfo is the last TCP_INFO taken before the first error (every 250 ms
	// while waiting): it names the timer that was running and its counters.
	TCPInfo *tcpinfo.Info `json:"tcp_info,omitempty"`
	// TCPInfoAtError is taken right after the first error.
	TCPInfoAtError *tcpinfo.Info `json:"tcp_info_at_error,omitempty"`
}

// Event is one failed syscall on a side.
type Event struct {
	At     time.Duration `json:"at_ns"`
	Op     string        `json:"op"`
	Error  string        `json:"error"`
	Detail string        `json:"detail"`
}

// Classify names an error the way the kernel and the seed do.
func Classify(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "ETIMEDOUT"
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "EHOSTUNREACH"
	case errors.Is(err, syscall.ENETUNREACH):
		return "ENETUNREACH"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "deadline"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return err.Error()
}
