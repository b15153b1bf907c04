package keepalive_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"syscall"
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

// Apply sets keepalive and TCP_USER_TIMEOUT on every connection a Dialer
// makes. (The README's example.)
func ExampleApply() {
	s := keepalive.Settings{Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 25 * time.Second}
	var d net.Dialer
	if err := keepalive.Apply(&d, s); err != nil { // KeepAliveConfig + TCP_USER_TIMEOUT via Control
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", d.KeepAliveConfig)
	fmt.Println(keepalive.Detect(keepalive.Sending, s, keepalive.DefaultKernel())) // 25s (user-timeout: U = 25s)
	// Output:
	// {Enable:true Idle:10s Interval:5s Count:3}
	// 25s (user-timeout: U = 25s)
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

// A Server on loopback whose client says hello and hangs up: the server
// reports how it noticed.
func ExampleServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	results := make(chan keepalive.Result, 1)
	srv := keepalive.Server{Endpoint: keepalive.Endpoint{Pattern: keepalive.Quiet}, OnResult: func(r keepalive.Result) { results <- r }}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }() // Serve closes ln

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	c.Write([]byte("hello\n"))
	c.Close() // FIN
	r := <-results
	cancel()
	fmt.Println(r.Side, r.Op, r.Errno, <-served)
	// Output: server read EOF <nil>
}

func ExampleErrno() {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	for _, err := range []error{reset, deadline, timedOut, io.EOF, errors.New("something else"), nil} {
		fmt.Printf("%q\n", keepalive.Errno(err))
	}
	// Output:
	// "ECONNRESET"
	// "deadline"
	// "ETIMEDOUT"
	// "EOF"
	// "other"
	// ""
}

func ExampleFormatDuration() {
	fmt.Println(keepalive.FormatDuration(2 * time.Hour))
	fmt.Println(keepalive.FormatDuration(924600 * time.Millisecond))
	fmt.Println(keepalive.FormatDuration(75 * time.Second))
	// Output:
	// 2h
	// 15m24.6s
	// 1m15s
}

func ExampleParseDuration() {
	for _, v := range []string{"75", "1m30s", "1.5", "soon"} {
		d, err := keepalive.ParseDuration(v)
		fmt.Println(d, err)
	}
	// Output:
	// 1m15s <nil>
	// 1m30s <nil>
	// 1.5s <nil>
	// 0s "soon": not a duration (e.g. 2s, 1m30s, 75)
}

func ExampleParsePattern() {
	p, err := keepalive.ParsePattern("idle")
	fmt.Println(p == keepalive.Quiet, err)
	_, err = keepalive.ParsePattern("bursty")
	fmt.Println(err)
	// Output:
	// true <nil>
	// keepalive: unknown pattern "bursty" (want stream, burst, idle, stop-reading or flood)
}

func ExampleDefaultKernel() {
	k := keepalive.DefaultKernel()
	fmt.Println(k.KeepaliveTime, k.KeepaliveIntvl, k.KeepaliveProbes, k.Retries2, k.RTOMin, k.RTOMax, k.SynRetries)
	// Output: 2h0m0s 1m15s 9 15 200ms 2m0s 6
}

// ReadKernel reads this host's sysctls; Detect uses them as a socket here
// gets them. The output depends on the host.
func ExampleReadKernel() {
	k, err := keepalive.ReadKernel()
	if err != nil {
		k = keepalive.DefaultKernel() // not Linux
	}
	fmt.Println(keepalive.Detect(keepalive.Idle, keepalive.Settings{}, k))
}
