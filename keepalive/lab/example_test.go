package lab_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/connscope/connscope/keepalive"
	"github.com/connscope/connscope/keepalive/lab"
)

// Measure how long keepalive 2s/1s/3 takes to notice a silent drop, on both
// sides. Needs root for the namespaces, so it is compiled but not run.
func Example() {
	sc, _ := lab.Lookup("drop-idle")
	rep, err := lab.Run(context.Background(), []lab.Scenario{sc}, lab.Options{
		Settings: keepalive.Settings{Idle: 2 * time.Second, Interval: time.Second, Count: 3},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	lab.WriteTable(os.Stdout, rep)
}

// Remove the namespaces a crashed run left behind (those of dead processes).
func ExampleCleanup() {
	removed, err := lab.Cleanup()
	fmt.Println(removed, err)
}
