package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/idleproxy"
	"github.com/connscope/connscope/internal/selfsigned"
)

type demoOptions struct {
	IdleTimeout time.Duration // the load balancer's
	Format      string        // json or text
	Requests    int
}

func newDemoCmd(stdout io.Writer) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Reproduce the load-balancer idle-close race on loopback",
		Long: `demo runs connection-spy's ELB example on this machine, on loopback only:
an HTTPS server behind a load balancer that closes connections idle longer
than --idle-timeout, and a spied client whose second request comes before
the idle timeout (the pooled socket is reused) and whose third comes after
it (the balancer closed the socket; a new one is dialed). Further requests
(--requests) alternate the same way. It prints the events, then a
diagnosis (with --format json, the events go to stdout and the diagnosis
to stderr).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), o, stdout, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.IdleTimeout, "idle-timeout", 2*time.Second, "the load balancer's idle timeout (50ms to 5m)")
	f.StringVar(&o.Format, "format", "json", "event format: json (connection-spy's NDJSON) or text")
	f.IntVar(&o.Requests, "requests", 3, "number of requests (3 to 100), alternately before and after the idle timeout")
	return cmd
}

func (o demoOptions) validate() error {
	switch {
	case o.IdleTimeout < 50*time.Millisecond || o.IdleTimeout > 5*time.Minute:
		return usagef("--idle-timeout %v: must be between 50ms and 5m", o.IdleTimeout)
	case o.Format != "json" && o.Format != "text":
		return usagef("--format %q: must be json or text", o.Format)
	case o.Requests < 3 || o.Requests > 100:
		// Fewer show no idle close: the third request is the first after
		// the idle timeout, and the second bounds the timeout from below.
		return usagef("--requests %d: must be between 3 and 100 (a request to dial, one to reuse the connection before the idle timeout, one after it)", o.Requests)
	}
	return nil
}

// demoGaps returns the pause before each request after the first: half
// the idle timeout (the pooled socket is still open), then a quarter more
// than the idle timeout (the balancer has closed it), alternately.
func demoGaps(o demoOptions) []time.Duration {
	gaps := make([]time.Duration, 0, o.Requests)
	for i := 1; i < o.Requests; i++ {
		if i%2 == 1 {
			gaps = append(gaps, o.IdleTimeout/2)
		} else {
			gaps = append(gaps, o.IdleTimeout+o.IdleTimeout/4+100*time.Millisecond)
		}
	}
	return gaps
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	cert, pool, err := selfsigned.New("127.0.0.1")
	if err != nil {
		return err
	}

	// The web service: HTTPS with HTTP/2, on loopback.
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err // the CLI names the command
	}
	backend := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, "{\"query\":%q,\"proto\":%q}\n", r.URL.RawQuery, r.Proto)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:  nil,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		backend.ServeTLS(backendLn, "", "")
	}()
	defer func() {
		backend.Close()
		wg.Wait()
	}()

	// The load balancer in front of it.
	lb := &idleproxy.Proxy{Backend: backendLn.Addr().String(), IdleTimeout: o.IdleTimeout}
	if err := lb.Start("127.0.0.1:0"); err != nil {
		return err // the CLI names the command
	}
	defer lb.Close()

	// The spied client: a clone of http.DefaultTransport, so it keeps
	// Go's default IdleConnTimeout, which is what the diagnosis is about.
	var sink *connscope.WriterSink
	if o.Format == "text" {
		sink = connscope.NewTextSink(stdout, nil)
	} else {
		sink = connscope.NewJSONSink(stdout, nil)
	}
	var diag idleDiagnosis
	spy := &connscope.Spy{Sink: connscope.MultiSink(sink, &diag)}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: pool}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil), Timeout: 10 * time.Second}

	url := "https://" + lb.Addr() + "/headers?"
	gaps := demoGaps(o)
	var reqErr error
	for i := range o.Requests {
		if i > 0 {
			select {
			case <-time.After(gaps[i-1]):
			case <-ctx.Done():
				reqErr = ctx.Err()
			}
		}
		if reqErr != nil {
			break
		}
		q := string(rune('a'+2*(i%13))) + "=" + string(rune('b'+2*(i%13)))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+q, nil)
		if err != nil {
			reqErr = err
			break
		}
		resp, err := client.Do(req)
		if err != nil {
			reqErr = fmt.Errorf("request %d: %w", i+1, err)
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	base.CloseIdleConnections()
	if err := sink.Close(); err != nil {
		fmt.Fprintf(stderr, "connscope: %v\n", err)
	}
	out := stdout
	if o.Format == "json" {
		out = stderr // keep stdout pure NDJSON
	} else {
		fmt.Fprintln(out) // after the events
	}
	diag.write(out, o, base.IdleConnTimeout)
	if errors.Is(reqErr, context.Canceled) {
		return nil // Ctrl-C: what ran is printed
	}
	return reqErr
}

// idleDiagnosis collects, from the events, what bounds the peer's idle
// timeout: how long a pooled connection sat idle before a reuse that got
// its response (the peer allowed that much), and how long pooled
// connections sat idle before the peer closed them (its timeout, plus
// however late its timer fired and this program noticed).
type idleDiagnosis struct {
	mu      sync.Mutex
	reuses  map[request]time.Duration // the idle before each reuse, until its response
	allowed time.Duration             // the longest idle before a reuse that got its response
	closes  []time.Duration
}

// request is a request on a connection.
type request struct {
	conn *connscope.Record
	n    uint64
}

func (d *idleDiagnosis) Emit(e *connscope.Event) {
	if e.Conn == nil || e.Conn.Side() != connscope.Client {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e.Message {
	case connscope.MsgReuse:
		if d.reuses == nil {
			d.reuses = make(map[request]time.Duration)
		}
		d.reuses[request{e.Conn, e.Request}] = e.Idle
	case connscope.MsgResponse:
		// Only an answer proves the peer still had the connection open:
		// a reuse that raced the close fails or is retried elsewhere.
		if idle, ok := d.reuses[request{e.Conn, e.Request}]; ok {
			d.allowed = max(d.allowed, idle)
			delete(d.reuses, request{e.Conn, e.Request})
		}
	case connscope.MsgEnd:
		if e.Idle > 0 {
			d.closes = append(d.closes, e.Idle)
		}
	}
}

func (d *idleDiagnosis) write(w io.Writer, o demoOptions, idleConnTimeout time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.closes) == 0 {
		fmt.Fprintf(w, "diagnosis: the peer closed no idle pooled connection in this run (load balancer idle timeout: %s)", o.IdleTimeout)
		if d.allowed > 0 {
			fmt.Fprintf(w, ";\na pooled connection reused after %s idle got its response", roundDur(d.allowed))
		}
		fmt.Fprintf(w, ".\n")
		return
	}
	lo, hi := d.closes[0], d.closes[0]
	for _, c := range d.closes[1:] {
		lo, hi = min(lo, c), max(hi, c)
	}
	conns := "connection"
	if len(d.closes) > 1 {
		conns += "s"
	}
	fmt.Fprintf(w, "diagnosis: the peer closed %d idle pooled %s after %s", len(d.closes), conns, roundDur(lo))
	if roundDur(hi) != roundDur(lo) {
		fmt.Fprintf(w, " to %s", roundDur(hi))
	}
	fmt.Fprintf(w, " idle (load balancer idle timeout: %s);\n", o.IdleTimeout)
	switch {
	case d.allowed > 0 && roundDur(d.allowed) < roundDur(lo):
		fmt.Fprintf(w, "a pooled connection reused after %s idle got its response, so the peer's idle timeout is between %s and about %s.\n",
			roundDur(d.allowed), roundDur(d.allowed), roundDur(lo))
	case d.allowed > 0:
		fmt.Fprintf(w, "a pooled connection reused after %s idle got its response.\n", roundDur(d.allowed))
	default:
		fmt.Fprintf(w, "no reused connection got a response, so the peer's idle timeout is known only to be at most about %s.\n", roundDur(lo))
	}
	fmt.Fprintf(w, "The client's Transport keeps idle connections for IdleConnTimeout = %s: a request that takes one from the pool\n", idleConnTimeout)
	fmt.Fprintf(w, "as the peer closes it fails (EOF, ECONNRESET) or is retried.\n")
	if fix := suggestIdle(d.allowed, lo); fix > 0 {
		fmt.Fprintf(w, "Fix: set http.Transport.IdleConnTimeout below the peer's idle timeout, e.g. IdleConnTimeout: %s.\n", fix)
	} else {
		fmt.Fprintf(w, "Fix: set http.Transport.IdleConnTimeout below the peer's idle timeout; this run cannot say how far below.\n")
	}
}

// suggestIdle returns an IdleConnTimeout safely below the peer's idle
// timeout, or 0 if the run cannot tell one: the longest idle the peer was
// seen to allow (a lower bound of its timeout), and at most three quarters
// of the shortest idle after which it closed (so that a timeout just above
// the allowed idle keeps a margin), truncated to a value a person would
// write in a config. The closing idle alone is no bound: it is the
// peer's timeout plus however late its timer fired and the close was
// noticed, which on a busy machine is a lot.
func suggestIdle(allowed, closed time.Duration) time.Duration {
	d := allowed
	if closed > 0 {
		d = min(d, closed*3/4)
	}
	var t time.Duration
	switch {
	case d >= 10*time.Second:
		t = d.Truncate(time.Second)
	case d >= time.Second:
		t = d.Truncate(100 * time.Millisecond)
	case d >= 100*time.Millisecond:
		t = d.Truncate(10 * time.Millisecond)
	default:
		t = d.Truncate(time.Millisecond)
	}
	if t <= 0 {
		return d // 0 would mean no limit
	}
	return t
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
