//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted (the `ip netns` convention),
// so leftovers stay visible to `ip netns list` and to Cleanup after a crash.
const netnsDir = "/run/netns"

// inNS runs fn on a fresh OS thread switched into ns. The thread is locked and
// never unlocked: when the goroutine returns, the runtime throws the thread away
// instead of handing a thread in the wrong namespace to another goroutine.
// Sockets created inside fn stay in ns and may be used from any goroutine.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("lab: enter namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNamedNS creates and bind-mounts a named namespace. netns.NewNamed unshares
// the calling thread, so it runs on a throwaway locked thread.
func newNamedNS(name string) (netns.NsHandle, error) {
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		c <- res{h, err}
	}()
	r := <-c
	if r.err != nil {
		return netns.None(), fmt.Errorf("lab: create namespace %s: %w", name, r.err)
	}
	return r.h, nil
}

// setSysctl writes /proc/sys/<key> from inside ns: /proc/sys/net resolves to the
// namespace of the writing thread, so the host's values are never touched.
func setSysctl(ns netns.NsHandle, key, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return inNS(ns, func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("lab: sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// Leftover is a lab namespace found in /run/netns.
type Leftover struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"` // its owning process still runs: not a leftover yet
}

// Leftovers lists the namespaces named with Prefix and says whether their owner lives.
func Leftovers() ([]Leftover, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: list namespaces: %w", err)
	}
	var out []Leftover
	for _, e := range ents {
		pid, ok := parseName(e.Name())
		if !ok {
			continue
		}
		out = append(out, Leftover{Name: e.Name(), PID: pid, Alive: pidAlive(pid)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// parseName extracts the owner PID of "cslab-<pid>-...".
func parseName(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	p, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

func pidAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Cleanup deletes the lab namespaces whose owning process is gone (a crashed or
// killed run). Deleting a namespace also deletes its veth ends and its nftables
// rules. Namespaces of live processes are left alone: they belong to a running lab.
func Cleanup() (removed []string, err error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, l := range left {
		if l.Alive {
			continue
		}
		if err := deleteNamed(l.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, l.Name)
	}
	return removed, errors.Join(errs...)
}

func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	// EINVAL: not a mount point (a crash between create and bind mount).
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: remove %s: %w", p, err)
	}
	return nil
}

// Privileged reports whether this process may build the namespace lab
// (CAP_NET_ADMIN and CAP_SYS_ADMIN in its effective set), and if not, why.
func Privileged() (bool, string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, "cannot read /proc/self/status: " + err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, "cannot parse CapEff"
		}
		const netAdmin, sysAdmin = 1 << unix.CAP_NET_ADMIN, 1 << unix.CAP_SYS_ADMIN
		if caps&netAdmin == 0 || caps&sysAdmin == 0 {
			return false, "no CAP_NET_ADMIN/CAP_SYS_ADMIN (not root)"
		}
		if _, err := os.Stat("/proc/self/ns/net"); err != nil {
			return false, "no network namespace support"
		}
		return true, ""
	}
	return false, "no CapEff in /proc/self/status"
}
