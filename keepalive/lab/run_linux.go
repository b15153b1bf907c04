//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// UserspaceNotice is printed when the lab runs without namespaces.
const UserspaceNotice = "running only what a userspace proxy can reproduce (idle close with FIN, reset). " +
	"A userspace proxy cannot imitate a silent drop: its kernel keeps acknowledging both sides, " +
	"so keepalive never fires. Run as root for the namespace lab."

// Run executes the scenarios and returns the report. With root it builds a
// namespace lab (removed before Run returns, also when ctx is cancelled);
// without, it falls back to a loopback proxy and skips what that cannot show.
func Run(ctx context.Context, scenarios []Scenario, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	rep := &Report{Mode: "namespaces", Settings: o.Settings, Kernel: o.Kernel()}
	if ok, why := Privileged(); !ok || o.Userspace {
		rep.Mode = "userspace"
		if ok {
			why = "userspace mode requested"
		}
		rep.Notice = why + ": " + UserspaceNotice
	}
	var l *Lab
	if rep.Mode == "namespaces" {
		sys := map[string]string{}
		if o.Retries2 != 0 {
			sys["net.ipv4.tcp_retries2"] = strconv.Itoa(max(o.Retries2, 0)) // negative: 0
		}
		var err error
		if l, err = New(ctx, Config{Sysctls: sys}); err != nil {
			return nil, err
		}
		defer l.Close()
		rep.Lab = l.Name
	}
	for _, sc := range scenarios {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("lab: %w", err)
		}
		r := Result{Scenario: sc.Name, Doc: sc.Doc, Settings: settingsText(o)}
		var err error
		switch {
		case rep.Mode == "userspace" && !sc.Userspace:
			r.Skipped = "needs root: a userspace proxy cannot reproduce it"
			r.Client.Expected, r.Server.Expected = sc.Expected(o, 0)
		case rep.Mode == "userspace":
			err = runUserspace(ctx, sc, o, &r)
		default:
			r.Client.Expected, r.Server.Expected = sc.Expected(o, o.StateTimeout+time.Second)
			if w := longest(r.Client.Expected, r.Server.Expected); w > LongThreshold && !o.Long {
				r.Skipped = fmt.Sprintf("expected %s: run with --long", keepalive.FormatDuration(w))
				break
			}
			err = runNamespaced(ctx, l, sc, o, &r)
		}
		r.Client.ExpectedError, r.Server.ExpectedError = sc.ExpectedErrors(o, rep.Mode == "userspace")
		rep.Results = append(rep.Results, r)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func settingsText(o Options) string {
	s := o.Settings.String()
	if o.Retries2 != 0 {
		s += " retries2=" + strconv.Itoa(max(o.Retries2, 0))
	}
	return s
}

// longest is the longest finite expectation (0 if both are never).
func longest(ds ...keepalive.Detection) time.Duration {
	var m time.Duration
	for _, d := range ds {
		if !d.Never {
			m = max(m, d.After)
		}
	}
	return m
}

// conn is the lab's connection, its two endpoints and what to release.
type conn struct {
	client, server *endpoint
	closers        []func()
}

func (c *conn) close() {
	if c.client != nil {
		c.client.stop()
	}
	if c.server != nil {
		c.server.stop()
	}
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// connect listens with listen, dials with dial, applies the settings to both
// sockets and exchanges a hello (the seed's first message).
func connect(ctx context.Context, o Options, listen func() (net.Listener, error), dial func(addr string) (net.Conn, error), via func(server net.Addr) (string, func(), error)) (c *conn, err error) {
	c = &conn{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	ln, err := listen()
	if err != nil {
		return c, fmt.Errorf("lab: listen: %w", err)
	}
	c.closers = append(c.closers, func() { ln.Close() })
	addr := ln.Addr().String()
	if via != nil {
		a, stop, err := via(ln.Addr())
		if err != nil {
			return c, err
		}
		addr = a
		c.closers = append(c.closers, stop)
	}
	acc := make(chan net.Conn, 1)
	go func() { // bounded: the listener is closed on every path
		sc, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- sc
	}()
	cc, err := dial(addr)
	if err != nil {
		return c, fmt.Errorf("lab: dial %s: %w", addr, err)
	}
	c.client = newEndpoint(cc.(*net.TCPConn))
	select {
	case sc, ok := <-acc:
		if !ok {
			return c, errors.New("lab: accept failed")
		}
		c.server = newEndpoint(sc.(*net.TCPConn))
	case <-time.After(3 * time.Second):
		return c, errors.New("lab: no connection accepted within 3s")
	case <-ctx.Done():
		return c, fmt.Errorf("lab: %w", ctx.Err())
	}
	c.server.read(true)
	c.client.read(false)
	if _, err := c.client.conn.Write([]byte("hello\n")); err != nil {
		return c, fmt.Errorf("lab: hello: %w", err)
	}
	select {
	case <-c.client.gotData:
	case <-time.After(3 * time.Second):
		return c, errors.New("lab: no echo within 3s")
	case <-ctx.Done():
		return c, fmt.Errorf("lab: %w", ctx.Err())
	}
	return c, nil
}

// listenConfig and dialer carry the settings through keepalive.ApplyListen and
// keepalive.Apply, the library API users call; the relay uses Go's plain
// defaults (a middlebox's own sockets are not under test). MPTCP is off: its
// TCP_INFO and TCP_USER_TIMEOUT differ from plain TCP.
func listenConfig(s *keepalive.Settings) (net.ListenConfig, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	if s == nil {
		return lc, nil
	}
	return lc, keepalive.ApplyListen(&lc, *s)
}

func dialer(s *keepalive.Settings) (*net.Dialer, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	d.SetMultipathTCP(false)
	if s == nil {
		return d, nil
	}
	return d, keepalive.Apply(d, *s)
}

func listenTCP(ctx context.Context, s *keepalive.Settings, addr string) (net.Listener, error) {
	lc, err := listenConfig(s)
	if err != nil {
		return nil, err
	}
	return lc.Listen(ctx, "tcp4", addr)
}

func dialTCP(ctx context.Context, s *keepalive.Settings, addr string) (net.Conn, error) {
	d, err := dialer(s)
	if err != nil {
		return nil, err
	}
	return d.DialContext(ctx, "tcp4", addr)
}

func runNamespaced(ctx context.Context, l *Lab, sc Scenario, o Options, r *Result) error {
	if err := l.Inject(FaultNone); err != nil {
		return err
	}
	if sc.kind == kindExpiry {
		// The firewall must see the handshake; its state timeout lives in the router's namespace.
		if err := l.Inject(FaultStateful); err != nil {
			return err
		}
		if err := l.Sysctl(RoleRouter, "net.netfilter.nf_conntrack_tcp_timeout_established",
			strconv.Itoa(int(o.StateTimeout/time.Second))); err != nil {
			return err
		}
	}
	listen := func() (ln net.Listener, err error) {
		err = l.Do(RoleServer, func() error {
			ln, err = listenTCP(ctx, &o.Settings, net.JoinHostPort(ServerAddr.String(), "0"))
			return err
		})
		return ln, err
	}
	dialIn := func(role Role, s *keepalive.Settings) func(string) (net.Conn, error) {
		return func(addr string) (c net.Conn, err error) {
			err = l.Do(role, func() error {
				c, err = dialTCP(ctx, s, addr)
				return err
			})
			return c, err
		}
	}
	var rl *relay
	var via func(net.Addr) (string, func(), error)
	if sc.kind == kindIdleClose {
		via = func(server net.Addr) (string, func(), error) {
			var ln net.Listener
			err := l.Do(RoleRouter, func() (err error) {
				ln, err = listenTCP(ctx, nil, net.JoinHostPort(RouterClientAddr.String(), "0"))
				return err
			})
			if err != nil {
				return "", nil, fmt.Errorf("lab: relay: %w", err)
			}
			rl = newRelay(ln, func() (net.Conn, error) { return dialIn(RoleRouter, nil)(server.String()) }, o.IdleClose)
			return ln.Addr().String(), rl.Close, nil
		}
	}
	c, err := connect(ctx, o, listen, dialIn(RoleClient, &o.Settings), via)
	if err != nil {
		return err
	}
	defer c.close()
	stopStream := make(chan struct{})
	defer close(stopStream)
	if sc.stream {
		c.server.stream(streamEvery, stopStream)
		if !sleep(ctx, 3*streamEvery) { // data in flight when the fault hits
			return fmt.Errorf("lab: %w", ctx.Err())
		}
	}
	var fault time.Time
	switch sc.kind {
	case kindRouter:
		if err := l.Inject(sc.fault); err != nil {
			return err
		}
		fault = time.Now()
	case kindIdleClose:
		select {
		case fault = <-rl.closed:
		case <-time.After(o.IdleClose + 5*time.Second):
			return errors.New("lab: the middlebox did not close the idle connection")
		case <-ctx.Done():
			return fmt.Errorf("lab: %w", ctx.Err())
		}
	case kindExpiry:
		if !sleep(ctx, o.StateTimeout+time.Second) {
			return fmt.Errorf("lab: %w", ctx.Err())
		}
		last := time.Unix(0, max(c.client.lastRecv.Load(), c.server.lastRecv.Load()))
		fault = time.Now()
		r.Client.Expected, r.Server.Expected = sc.Expected(o, fault.Sub(last))
		// The request a pooled client sends on a connection it believes alive.
		if _, err := c.client.conn.Write([]byte("request\n")); err != nil {
			c.client.record("write", err)
		}
	}
	return watch(ctx, sc.Name, c, fault, r, o.Status)
}

// watch waits until both sides detected the fault or the expectation (plus a
// margin) has passed, reporting progress.
func watch(ctx context.Context, name string, c *conn, fault time.Time, r *Result, status func(string)) error {
	exp := longest(r.Client.Expected, r.Server.Expected)
	window := exp + exp/4 + 3*time.Second // long timers fire a few % late
	if exp == 0 && r.Client.Expected.Never && r.Server.Expected.Never {
		window = 5 * time.Second // nothing should happen: watch a while to show it
	}
	deadline := fault.Add(window)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastStatus := time.Time{}
	cFirst, sFirst := c.client.first, c.server.first
	for time.Now().Before(deadline) && !(c.client.detected() && c.server.detected()) {
		if status != nil && time.Since(lastStatus) >= time.Second {
			lastStatus = time.Now()
			status(fmt.Sprintf("%s: %s since fault, expected client %s server %s; client %s, server %s",
				name, keepalive.FormatDuration(time.Since(fault).Round(time.Second)),
				short(r.Client.Expected), short(r.Server.Expected), state(c.client), state(c.server)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %w", ctx.Err())
		case <-tick.C:
			c.client.sample()
			c.server.sample()
		case <-cFirst:
			cFirst = nil // closed channels are always ready: stop selecting on them
		case <-sFirst:
			sFirst = nil
		}
	}
	waited := time.Since(fault)
	// A side that saw its first error may see a second one soon (EPIPE after ECONNRESET).
	sleep(ctx, 50*time.Millisecond)
	r.Client = c.client.side(fault, waited, r.Client.Expected)
	r.Server = c.server.side(fault, waited, r.Server.Expected)
	if !r.Client.Detected && c.client.lastRecv.Load() > fault.UnixNano() {
		r.Note = "connection still works: the client received data after the fault"
	}
	return nil
}

func short(d keepalive.Detection) string {
	if d.Never {
		return "never"
	}
	return keepalive.FormatDuration(d.After.Round(100 * time.Millisecond))
}

func state(e *endpoint) string {
	if e.detected() {
		return "detected"
	}
	return "waiting"
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runUserspace reproduces idle-close and reset with a loopback proxy.
func runUserspace(ctx context.Context, sc Scenario, o Options, r *Result) error {
	r.Client.Expected, r.Server.Expected = sc.expectedUserspace()
	idle := time.Duration(0)
	if sc.kind == kindIdleClose {
		idle = o.IdleClose
	}
	var rl *relay
	listen := func() (net.Listener, error) { return listenTCP(ctx, &o.Settings, "127.0.0.1:0") }
	dial := func(addr string) (net.Conn, error) { return dialTCP(ctx, &o.Settings, addr) }
	via := func(server net.Addr) (string, func(), error) {
		ln, err := listenTCP(ctx, nil, "127.0.0.1:0")
		if err != nil {
			return "", nil, fmt.Errorf("lab: relay: %w", err)
		}
		rl = newRelay(ln, func() (net.Conn, error) { return dialTCP(ctx, nil, server.String()) }, idle)
		return ln.Addr().String(), rl.Close, nil
	}
	c, err := connect(ctx, o, listen, dial, via)
	if err != nil {
		return err
	}
	defer c.close()
	if sc.kind != kindIdleClose {
		sleep(ctx, 300*time.Millisecond)
		rl.Abort()
	}
	var fault time.Time
	select {
	case fault = <-rl.closed:
	case <-time.After(idle + 5*time.Second):
		return errors.New("lab: the proxy did not close the connection")
	case <-ctx.Done():
		return fmt.Errorf("lab: %w", ctx.Err())
	}
	return watch(ctx, sc.Name, c, fault, r, o.Status)
}
