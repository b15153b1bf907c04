package connscope

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// speedPathEnv selects the scenario TestSpeedPathHelper runs in a child
// process started by TestSpeedPathsStrace.
const speedPathEnv = "CONNSCOPE_SPEEDPATH"

const speedPathBytes = 4 << 20

// TestSpeedPathsStrace proves that wrapping keeps the kernel's zero-copy
// paths: it runs each scenario in a child process under strace and counts
// the sendfile and splice calls that moved bytes.
func TestSpeedPathsStrace(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping strace runs")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed: cannot observe the sendfile and splice system calls")
	}
	for _, tc := range []struct {
		scenario string
		syscall  string
		min      int64 // bytes the calls must move; 0: no call may move any
	}{
		// http.ServeContent of an *os.File through a wrapped listener; the
		// server copies the first 512 bytes itself, to sniff them.
		{"sendfile", "sendfile", speedPathBytes - 512},
		// io.Copy(wrapped conn, *os.File): the file's WriteTo finds no
		// poll descriptor behind the wrapper's SyscallConn and goes
		// through its ReadFrom, which still sends the file with sendfile.
		{"file-sendfile", "sendfile", speedPathBytes},
		// io.Copy between two wrapped TCP conns (each byte is spliced twice:
		// socket to pipe, pipe to socket).
		{"splice", "splice", speedPathBytes},
		// io.CopyN between them (an *io.LimitedReader over a wrapped conn).
		{"splice-copyn", "splice", speedPathBytes},
		// Control: a plain embedding wrapper hides ReadFrom and WriteTo, and
		// no splice happens. Proves the counting can see the difference.
		{"control-embedded", "splice", 0},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "strace.txt")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, strace, "-f", "-e", "trace=splice,sendfile", "-o", out,
				os.Args[0], "-test.run=^TestSpeedPathHelper$", "-test.count=1", "-test.v", "-test.timeout=50s")
			cmd.Env = append(os.Environ(), speedPathEnv+"="+tc.scenario)
			b, err := cmd.CombinedOutput()
			if err != nil {
				if strings.Contains(string(b), "PTRACE") || strings.Contains(string(b), "ptrace") {
					t.Skipf("strace cannot trace here: %s", b)
				}
				t.Fatalf("child: %v\n%s", err, b)
			}
			calls, bytes := countSyscalls(t, out, tc.syscall)
			t.Logf("%s: %d %s calls moved %d bytes", tc.scenario, calls, tc.syscall, bytes)
			switch {
			case tc.min == 0 && calls != 0:
				t.Errorf("control: %d %s calls moved data through a plain embedding wrapper", calls, tc.syscall)
			case tc.min > 0 && calls == 0:
				t.Errorf("no %s call moved data: the wrapper hid the fast path\nchild output:\n%s", tc.syscall, b)
			case bytes < tc.min:
				t.Errorf("%s moved %d bytes, want at least %d", tc.syscall, bytes, tc.min)
			}
		})
	}
}

// countSyscalls counts the calls to name in an strace -f log that returned
// a positive byte count, and sums those counts.
func countSyscalls(t *testing.T, file, name string) (calls int, bytes int64) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// "123 splice(7, NULL, 9, NULL, 1048576, SPLICE_F_NONBLOCK) = 65536" or,
	// when interrupted by another thread, "123 <... splice resumed>) = 65536".
	re := regexp.MustCompile(`(?:\b` + name + `\(|<\.\.\. ` + name + ` resumed>).*\)\s+= ([1-9][0-9]*)`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			var n int64
			fmt.Sscan(m[1], &n)
			calls++
			bytes += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return calls, bytes
}

// TestSpeedPathHelper runs one scenario when started by
// TestSpeedPathsStrace; otherwise it does nothing.
func TestSpeedPathHelper(t *testing.T) {
	switch os.Getenv(speedPathEnv) {
	case "":
		t.Skip("run by TestSpeedPathsStrace")
	case "sendfile":
		speedPathSendfile(t)
	case "file-sendfile":
		speedPathFileCopy(t)
	case "splice":
		speedPathRelay(t, "copy")
	case "splice-copyn":
		speedPathRelay(t, "copyn")
	case "control-embedded":
		speedPathRelay(t, "embedded")
	default:
		t.Fatalf("unknown scenario %q", os.Getenv(speedPathEnv))
	}
}

// recorder collects the Records of a spy's connections.
type recorder struct {
	mu   sync.Mutex
	recs []*Record
}

func (rc *recorder) opened(r *Record) {
	rc.mu.Lock()
	rc.recs = append(rc.recs, r)
	rc.mu.Unlock()
}

func (rc *recorder) side(s Side) []*Record {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []*Record
	for _, r := range rc.recs {
		if r.Side() == s {
			out = append(out, r)
		}
	}
	return out
}

func speedPathSendfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	data := make([]byte, speedPathBytes)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	sink := NewJSONSink(io.Discard, nil)
	defer sink.Close()
	spy := &Spy{Sink: sink, Hooks: Hooks{ConnOpened: rec.opened}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "blob", time.Time{}, f)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(spy.WrapListener(ln)) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()

	tr := &http.Transport{DialContext: spy.WrapDial(nil)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != speedPathBytes {
		t.Fatalf("client read %d bytes, %v; want %d", n, err, speedPathBytes)
	}
	srvRecs, cliRecs := rec.side(Server), rec.side(Client)
	if len(srvRecs) != 1 || len(cliRecs) != 1 {
		t.Fatalf("records: %d server, %d client; want 1 and 1", len(srvRecs), len(cliRecs))
	}
	// The body went out by sendfile, through the wrapper's ReadFrom: it
	// must still be counted, with the headers.
	if got := srvRecs[0].BytesWritten(); got < speedPathBytes {
		t.Errorf("server record BytesWritten = %d, want >= %d", got, speedPathBytes)
	}
	if got := cliRecs[0].BytesRead(); got < speedPathBytes {
		t.Errorf("client record BytesRead = %d, want >= %d", got, speedPathBytes)
	}
}

// speedPathFileCopy sends a file over a wrapped TCP conn with io.Copy.
func speedPathFileCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, make([]byte, speedPathBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, peer := tcpPair(t)
	c := (&Spy{}).WrapConn(raw, Client)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	peer.SetDeadline(time.Now().Add(30 * time.Second))
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, peer)
		got <- n
	}()
	if n, err := io.Copy(c, f); err != nil || n != speedPathBytes {
		t.Fatalf("copied %d bytes, %v; want %d", n, err, speedPathBytes)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if n := <-got; n != speedPathBytes {
		t.Fatalf("peer received %d bytes, want %d", n, speedPathBytes)
	}
	if r := RecordOf(c); r.BytesWritten() != speedPathBytes {
		t.Errorf("BytesWritten = %d, want %d", r.BytesWritten(), speedPathBytes)
	}
}

// speedPathRelay copies between two wrapped TCP conns, as a proxy does:
// source -> [in] relay [out] -> sink.
// how is "copy" (io.Copy), "copyn" (io.CopyN) or "embedded" (io.Copy
// through plain embedding wrappers, which hide the fast paths).
func speedPathRelay(t *testing.T, how string) {
	sink := NewJSONSink(io.Discard, nil)
	defer sink.Close()
	spy := &Spy{Sink: sink}
	src, inRaw := tcpPair(t)
	outRaw, dst := tcpPair(t)
	in := spy.WrapConn(inRaw, Server)
	out := spy.WrapConn(outRaw, Client)
	defer in.Close()
	defer out.Close()

	data := make([]byte, speedPathBytes)
	rand.Read(data)
	wrote := make(chan error, 1)
	go func() {
		_, err := src.Write(data)
		if err == nil {
			err = src.CloseWrite()
		}
		wrote <- err
	}()
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, dst)
		got <- n
	}()
	dst.SetDeadline(time.Now().Add(30 * time.Second))
	in.SetDeadline(time.Now().Add(30 * time.Second))

	var n int64
	var err error
	switch how {
	case "copyn":
		n, err = io.CopyN(out, in, speedPathBytes)
	case "embedded":
		n, err = io.Copy(struct{ net.Conn }{out}, struct{ net.Conn }{in})
	default:
		n, err = io.Copy(out, in)
	}
	if err != nil || n != speedPathBytes {
		t.Fatalf("relay copied %d bytes, %v; want %d", n, err, speedPathBytes)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	out.(interface{ CloseWrite() error }).CloseWrite()
	if m := <-got; m != speedPathBytes {
		t.Fatalf("sink received %d bytes, want %d", m, speedPathBytes)
	}
	if r := RecordOf(in); r.BytesRead() != speedPathBytes {
		t.Errorf("relay's incoming record BytesRead = %d, want %d", r.BytesRead(), speedPathBytes)
	}
	if r := RecordOf(out); r.BytesWritten() != speedPathBytes {
		t.Errorf("relay's outgoing record BytesWritten = %d, want %d", r.BytesWritten(), speedPathBytes)
	}
}
