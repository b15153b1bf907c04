package keepalive_test

import (
	"fmt"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// The seed's client set a 2 s keepalive idle time but left the interval and
// the count at the kernel's defaults: 12 minutes to notice a dead peer.
func ExampleDetect() {
	s := keepalive.Settings{Idle: 2 * time.Second}
	for _, sit := range keepalive.Situations {
		fmt.Printf("%-12s %v\n", sit, keepalive.Detect(sit, s, keepalive.DefaultKernel()))
	}
	// Output:
	// idle         11m17s (keepalive: I + V×C = 2s + 1m15s×9)
	// sending      15m24.6s (retransmission: (2^10−1)×RTOmin + (N−9)×RTOmax = 1023×200ms + 6×2m (N = tcp_retries2 = 15))
	// zero-window  never (persist: the peer answers zero-window probes: never)
	// connect      2m7s (syn: SYN retries from 1s, doubling up to RTOmax = 2m7s (R = tcp_syn_retries = 6))
}

func ExampleParseSettings() {
	s, err := keepalive.ParseSettings("2s/1s/3 user-timeout=5s")
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Idle, s.Interval, s.Count, s.UserTimeout)
	fmt.Println(s)
	// Output:
	// 2s 1s 3 5s
	// 2s/1s/3 user-timeout=5s
}
