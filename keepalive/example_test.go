package keepalive_test

import (
	"context"
	"fmt"
	"net"
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
	// connect      2m11s (syn: SYN retries from 1s, 4 more 1s apart (tcp_syn_linear_timeouts), then doubling = 2m11s (R = tcp_syn_retries = 6))
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

// Apply sets keepalive and TCP_USER_TIMEOUT on every connection a Dialer makes.
func ExampleApply() {
	s := keepalive.Settings{Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 25 * time.Second}
	var d net.Dialer
	if err := keepalive.Apply(&d, s); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", d.KeepAliveConfig)
	fmt.Println(keepalive.Detect(keepalive.Sending, s, keepalive.DefaultKernel()).After)
	// Output:
	// {Enable:true Idle:10s Interval:5s Count:3}
	// 25s
}

func ExampleApplyListen() {
	var lc net.ListenConfig
	if err := keepalive.ApplyListen(&lc, keepalive.Settings{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}); err != nil {
		panic(err)
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	fmt.Println("listening; accepted connections probe after 30s idle")
	// Output: listening; accepted connections probe after 30s idle
}

// An ALB (60 s idle timeout) in front of a server, settings from the seed.
func ExampleRecommend() {
	r := keepalive.Recommend(keepalive.Settings{Idle: 2 * time.Second}, keepalive.DefaultKernel(),
		keepalive.Path{LoadBalancer: 60 * time.Second})
	fmt.Println(r.Settings)
	fmt.Println(keepalive.FormatDuration(r.IdleConnTimeout))
	fmt.Println(r.Detect[keepalive.Sending].After, r.Detect[keepalive.ZeroWindow].After)
	// Output:
	// 2s/2s/9 user-timeout=20s
	// 54s
	// 20s 20s
}

// A Server and a Client over loopback; the server closes the connection
// after its first line, and the client reports how it noticed.
func ExampleClient() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 6)) // hello
		c.Close()               // FIN
	}()
	cli := keepalive.Client{Port: ln.Addr().(*net.TCPAddr).Port,
		Endpoint: keepalive.Endpoint{Settings: &keepalive.Settings{Idle: 2 * time.Second, Interval: time.Second, Count: 3}}}
	r, err := cli.DialAndRun(context.Background(), "127.0.0.1")
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Op, r.Errno)
	// Output: read EOF
}
