//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) and exist only
// inside the lab's namespaces.
var (
	ClientAddr       = netip.MustParseAddr("198.18.1.2")
	RouterClientAddr = netip.MustParseAddr("198.18.1.1")
	RouterServerAddr = netip.MustParseAddr("198.18.2.1")
	ServerAddr       = netip.MustParseAddr("198.18.2.2")
)

// Role names one of the lab's namespaces.
type Role string

const (
	RoleClient Role = "client"
	RoleRouter Role = "router"
	RoleServer Role = "server"
)

var labSeq atomic.Int64

// Lab is a client and a server namespace joined through a router namespace by
// veth pairs, with an nftables filter chain on the router's FORWARD hook where
// faults are injected.
type Lab struct {
	Name string // "cslab-<pid>-<n>", the namespaces are Name+"-client" etc.

	ns    map[Role]netns.NsHandle
	names []string

	mu    sync.Mutex
	nft   *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain

	closeOnce sync.Once
	closeErr  error
}

// Config holds the per-namespace sysctls applied in the client and server
// namespaces (e.g. "net.ipv4.tcp_retries2": "5"); the host is never touched.
type Config struct {
	Sysctls map[string]string
}

// New builds the topology. It first removes leftovers of dead processes
// (never reusing them). On error everything built so far is removed.
func New(ctx context.Context, cfg Config) (l *Lab, err error) {
	if _, err := Cleanup(); err != nil {
		return nil, err
	}
	l = &Lab{
		Name: fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), labSeq.Add(1)),
		ns:   map[Role]netns.NsHandle{},
	}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	for _, r := range []Role{RoleClient, RoleRouter, RoleServer} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		name := l.Name + "-" + string(r)
		// An existing name would be another live lab's (ours are unique per
		// pid+seq): fail rather than reuse it blindly.
		if _, err := os.Stat(netnsDir + "/" + name); err == nil {
			return nil, fmt.Errorf("lab: namespace %s already exists", name)
		}
		h, err := newNamedNS(name)
		if err != nil {
			return nil, err
		}
		l.ns[r] = h
		l.names = append(l.names, name)
	}
	if err := l.wire(); err != nil {
		return nil, err
	}
	if err := l.waitUp(ctx); err != nil {
		return nil, err
	}
	if err := setSysctl(l.ns[RoleRouter], "net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	for _, r := range []Role{RoleClient, RoleServer} {
		for k, v := range cfg.Sysctls {
			if err := setSysctl(l.ns[r], k, v); err != nil {
				return nil, err
			}
		}
	}
	l.nft, err = nftables.New(nftables.WithNetNSFd(int(l.ns[RoleRouter])))
	if err != nil {
		return nil, fmt.Errorf("lab: nftables: %w", err)
	}
	l.table = l.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "cslab"})
	accept := nftables.ChainPolicyAccept
	l.chain = l.nft.AddChain(&nftables.Chain{
		Name: "forward", Table: l.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	if err := l.nft.Flush(); err != nil {
		return nil, fmt.Errorf("lab: nftables table: %w", err)
	}
	return l, nil
}

// wire creates both veth pairs from the router side (netlink handles bound to
// namespace fds, so no thread switches namespace) and sets addresses and routes.
func (l *Lab) wire() error {
	hr, err := netlink.NewHandleAt(l.ns[RoleRouter])
	if err != nil {
		return fmt.Errorf("lab: netlink: %w", err)
	}
	defer hr.Close()
	type leg struct {
		peer       Role
		routerIf   string
		routerAddr netip.Addr
		peerAddr   netip.Addr
	}
	legs := []leg{
		{RoleClient, "to-client", RouterClientAddr, ClientAddr},
		{RoleServer, "to-server", RouterServerAddr, ServerAddr},
	}
	if err := linkUp(hr, "lo"); err != nil {
		return err
	}
	for _, g := range legs {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: g.routerIf},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(l.ns[g.peer]),
		}
		if err := hr.LinkAdd(v); err != nil {
			return fmt.Errorf("lab: veth %s: %w", g.routerIf, err)
		}
		if err := addrUp(hr, g.routerIf, g.routerAddr); err != nil {
			return err
		}
		hp, err := netlink.NewHandleAt(l.ns[g.peer])
		if err != nil {
			return fmt.Errorf("lab: netlink: %w", err)
		}
		err = errors.Join(linkUp(hp, "lo"), addrUp(hp, "eth0", g.peerAddr))
		if err == nil {
			lk, _ := hp.LinkByName("eth0")
			err = hp.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: g.routerAddr.AsSlice()})
			if err != nil {
				err = fmt.Errorf("lab: default route in %s: %w", g.peer, err)
			}
		}
		hp.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// waitUp waits until every veth end is operationally up. An end brought up
// before its peer gets its carrier when the peer comes up, but the kernel
// activates its transmit queue afterwards, in the linkwatch work, which
// needs the RTNL lock; until then the end drops what it is given. On a busy
// machine that outlasted New: the router dropped its first ARP, and the
// first connection through the lab waited for a 1 s retransmission.
func (l *Lab) waitUp(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for _, end := range []struct {
		role Role
		name string
	}{{RoleRouter, "to-client"}, {RoleRouter, "to-server"}, {RoleClient, "eth0"}, {RoleServer, "eth0"}} {
		if err := waitLinkUp(ctx, l.ns[end.role], end.name, deadline); err != nil {
			return fmt.Errorf("lab: %s in %s: %w", end.name, end.role, err)
		}
	}
	return nil
}

func waitLinkUp(ctx context.Context, ns netns.NsHandle, name string, deadline time.Time) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for {
		lk, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		st := lk.Attrs().OperState
		if st == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s after 5s", st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func linkUp(h *netlink.Handle, name string) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	if err := h.LinkSetUp(lk); err != nil {
		return fmt.Errorf("lab: link %s up: %w", name, err)
	}
	return nil
}

func addrUp(h *netlink.Handle, name string, a netip.Addr) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", name, err)
	}
	ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}
	if err := h.AddrAdd(lk, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("lab: address %s on %s: %w", a, name, err)
	}
	return linkUp(h, name)
}

// Do runs fn on a thread inside the role's namespace; sockets fn creates live there.
func (l *Lab) Do(r Role, fn func() error) error {
	h, ok := l.ns[r]
	if !ok {
		return fmt.Errorf("lab: no namespace %q", r)
	}
	return inNS(h, fn)
}

// Sysctl sets a sysctl inside one of the lab's namespaces.
func (l *Lab) Sysctl(r Role, key, value string) error {
	return setSysctl(l.ns[r], key, value)
}

// Inject replaces the router's rules with the fault's. FaultNone heals the path.
// nftables commits the whole batch atomically, so the fault starts at one instant.
func (l *Lab) Inject(f Fault) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nft == nil {
		return errors.New("lab: closed")
	}
	l.nft.FlushChain(l.chain)
	tcp := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	from := func(a netip.Addr) []expr.Any {
		return append(append([]expr.Any{}, tcp...),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()})
	}
	verdict := func(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }
	var rules [][]expr.Any
	switch f {
	case FaultNone:
	case FaultDropBoth:
		rules = [][]expr.Any{append(tcp, verdict(expr.VerdictDrop))}
	case FaultDropToClient:
		rules = [][]expr.Any{append(from(ServerAddr), verdict(expr.VerdictDrop))}
	case FaultDropToServer:
		rules = [][]expr.Any{append(from(ClientAddr), verdict(expr.VerdictDrop))}
	case FaultReset:
		rules = [][]expr.Any{append(tcp, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})}
	case FaultUnreachable:
		rules = [][]expr.Any{append(tcp, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 1 /* host unreachable */})}
	case FaultStateful:
		zero := []byte{0, 0, 0, 0}
		rules = [][]expr.Any{
			// ct state established,related accept
			{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: zero},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
				verdict(expr.VerdictAccept),
			},
			// tcp flags & (syn|ack) == syn ct state new accept: only a real SYN opens a flow
			append(append([]expr.Any{}, tcp...),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
				verdict(expr.VerdictAccept)),
			// everything else (a forgotten flow's mid-stream packets) is dropped silently
			append(tcp, verdict(expr.VerdictDrop)),
		}
	default:
		return fmt.Errorf("lab: unknown fault %q", f)
	}
	for _, ex := range rules {
		l.nft.AddRule(&nftables.Rule{Table: l.table, Chain: l.chain, Exprs: ex})
	}
	if err := l.nft.Flush(); err != nil {
		return fmt.Errorf("lab: inject %s: %w", f, err)
	}
	return nil
}

// RuleCount returns the number of rules in the lab's chain (for tests and status).
func (l *Lab) RuleCount() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nft == nil {
		return 0, errors.New("lab: closed")
	}
	rs, err := l.nft.GetRules(l.table, l.chain)
	if err != nil {
		return 0, fmt.Errorf("lab: list rules: %w", err)
	}
	return len(rs), nil
}

// Close deletes the nftables table and the three namespaces (their veths go with
// them). It is safe to call more than once.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		l.mu.Lock()
		if l.nft != nil {
			l.nft.DelTable(l.table)
			if err := l.nft.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("lab: delete table: %w", err))
			}
			l.nft = nil
		}
		l.mu.Unlock()
		for _, h := range l.ns {
			h.Close()
		}
		for _, n := range l.names {
			if err := deleteNamed(n); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// Namespaces returns the names of the lab's namespaces.
func (l *Lab) Namespaces() []string { return append([]string(nil), l.names...) }
