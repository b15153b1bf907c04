//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// crashHelper builds a lab with a fault in place, announces it and waits to be
// killed: a crashed run, as far as the namespaces know.
func crashHelper() {
	l, err := New(context.Background(), Config{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if err := l.Inject(FaultDropBoth); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready", l.Name)
	time.Sleep(time.Minute) // bounded, in case the parent dies first
	os.Exit(3)
}

// TestCleanupAfterKill: a process that built a lab is killed with SIGKILL (no
// deferred cleanup runs); its namespaces are then found as leftovers of a dead
// PID and Cleanup removes them.
func TestCleanupAfterKill(t *testing.T) {
	needLab(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	name, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		t.Fatalf("helper: %q, %v", line, err)
	}
	t.Cleanup(func() { assertGone(t, name) })
	owned := func() (n int, alive bool) {
		left, err := Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range left {
			if strings.HasPrefix(l.Name, name+"-") {
				n++
				alive = alive || l.Alive
			}
		}
		return n, alive
	}
	if n, alive := owned(); n != 3 || !alive {
		t.Fatalf("before kill: %d namespaces, alive=%v; want 3 of a live owner", n, alive)
	}
	// A live lab is not a leftover: Cleanup must not touch it.
	if _, err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, _ := owned(); n != 3 {
		t.Fatalf("Cleanup removed a live lab's namespaces (%d left)", n)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if n, alive := owned(); n != 3 || alive {
		t.Fatalf("after kill: %d namespaces, alive=%v; want 3 of a dead owner", n, alive)
	}
	removed, err := Cleanup()
	if err != nil {
		t.Fatal(err)
	}
	var mine int
	for _, r := range removed {
		if strings.HasPrefix(r, name+"-") {
			mine++
		}
	}
	if mine != 3 {
		t.Errorf("Cleanup removed %v, want the 3 namespaces of %s", removed, name)
	}
}

// TestCancelRemovesLab: Ctrl-C (a cancelled context) in the middle of a
// scenario returns promptly and leaves no namespace.
func TestCancelRemovesLab(t *testing.T) {
	needLab(t)
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc, _ := Lookup("drop-idle")
	var name string
	o := Options{Settings: keepalive.Settings{Idle: 30 * time.Second, Interval: time.Second, Count: 2},
		Status: func(string) { cancel() }} // cancel at the first status line, mid-wait
	start := time.Now()
	rep, err := Run(ctx, []Scenario{sc}, o)
	if rep != nil {
		name = rep.Lab
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if name == "" {
		t.Fatal("no lab name in the report")
	}
	assertGone(t, name)
}

// TestPanicCleanup: a panic inside a scenario's caller still runs Close via
// defer (t.Cleanup does the same in tests), and the lab is gone afterwards.
func TestPanicCleanup(t *testing.T) {
	needLab(t)
	t.Parallel()
	var name string
	func() {
		defer func() { recover() }()
		l, err := New(context.Background(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		name = l.Name
		defer l.Close()
		if err := l.Inject(FaultReset); err != nil {
			t.Fatal(err)
		}
		panic("scenario blew up")
	}()
	assertGone(t, name)
}
