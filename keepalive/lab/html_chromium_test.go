//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// chromiumShotEnv names a file the test copies its screenshot to, for a
// person to look at (the temporary directory is removed after the test).
const chromiumShotEnv = "CONNSCOPE_CHROMIUM_SCREENSHOT"

// TestHTMLReportChromium renders a hand-built report with WriteHTMLFile and
// loads it in a real headless Chromium: the DOM after load must hold the
// chart and every scenario, the screenshot must show the grey expected bars
// and the blue measured bars, and in a 1000 px window (and a wider one) the
// page must not scroll sideways nor cut any chart text. Needs a chromium
// binary; no root, no namespaces.
func TestHTMLReportChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a headless Chromium; skipped under -short")
	}
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no chromium or chromium-browser in PATH (Debian: apt-get install chromium)")
	}

	rep := chromiumReport()
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := WriteHTMLFile(page, rep); err != nil {
		t.Fatal(err)
	}
	url := "file://" + page

	// The screenshot, with the old headless flag first and --headless=new as
	// the fallback; the form that worked also dumps the DOM.
	shot := filepath.Join(dir, "report.png")
	var headless string
	var errs []string
	for i, h := range []string{"--headless", "--headless=new"} {
		os.Remove(shot)
		_, stderr, err := runChromium(t, bin, filepath.Join(dir, fmt.Sprintf("profile-shot-%d", i)), h,
			"--screenshot="+shot, "--window-size=1000,800", url)
		if err == nil {
			if fi, serr := os.Stat(shot); serr == nil && fi.Size() > 0 {
				headless = h
				break
			}
			err = errors.New("exited 0 but wrote no screenshot")
		}
		errs = append(errs, fmt.Sprintf("%s: %v\n%s", h, err, tail(stderr, 2000)))
	}
	if headless == "" {
		t.Fatalf("chromium %s could not take a screenshot:\n%s", bin, strings.Join(errs, "\n"))
	}
	if dst := os.Getenv(chromiumShotEnv); dst != "" {
		if b, err := os.ReadFile(shot); err != nil {
			t.Error(err)
		} else if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Error(err)
		}
	}

	dom, stderr, err := runChromium(t, bin, filepath.Join(dir, "profile-dom"), headless, "--dump-dom", url)
	if err != nil {
		t.Fatalf("chromium %s --dump-dom: %v\n%s", headless, err, tail(stderr, 2000))
	}
	checkDOM(t, string(dom), rep)
	checkScreenshot(t, shot)
	for _, width := range []int{1000, 1600} {
		checkLayout(t, bin, headless, page, width)
	}
}

// chromiumReport has a scenario detected by both sides, one detected fast by
// a reset, one that is never expected to be and was not detected (dashed
// bar), and a skipped one (table only, no bar).
func chromiumReport() *Report {
	ka := keepalive.Settings{Idle: 2 * time.Second, Interval: time.Second, Count: 3}
	kaRule := keepalive.Detection{After: 5 * time.Second, Timer: "keepalive", Rule: "I + V×C = 2s + 1s×3"}
	return &Report{
		Mode:     "userspace",
		Notice:   "hand-built report for the Chromium test",
		Settings: ka,
		Results: []Result{
			{
				Scenario: "drop-idle", Settings: "keepalive 2s/1s/3",
				Client: Side{Expected: kaRule, ExpectedError: "ETIMEDOUT", Detected: true,
					After: 5030 * time.Millisecond, Error: "ETIMEDOUT", Op: "read", Waited: 5030 * time.Millisecond},
				Server: Side{Expected: kaRule, ExpectedError: "ETIMEDOUT", Detected: true,
					After: 5010 * time.Millisecond, Error: "ETIMEDOUT", Op: "read", Waited: 5010 * time.Millisecond},
			},
			{
				Scenario: "reset", Settings: "keepalive 2s/1s/3",
				Client: Side{Expected: keepalive.Detection{After: 100 * time.Millisecond, Timer: "retransmission"},
					ExpectedError: "ECONNRESET", Detected: true, After: 120 * time.Millisecond,
					Error: "ECONNRESET", Op: "write", Waited: 120 * time.Millisecond},
				Server: Side{Expected: keepalive.Detection{After: 2 * time.Second, Timer: "keepalive"},
					ExpectedError: "ECONNRESET", Detected: true, After: 2100 * time.Millisecond,
					Error: "EPIPE", Op: "write", Waited: 2100 * time.Millisecond},
			},
			{
				Scenario: "idle-close", Settings: "no keepalive",
				Client: Side{Expected: keepalive.Detection{Never: true, Timer: "none"},
					Detected: false, Waited: 6 * time.Second},
				Server: Side{Expected: keepalive.Detection{Never: true, Timer: "none"},
					Detected: true, After: 3 * time.Second, Error: "EOF", Op: "read", Waited: 3 * time.Second},
			},
			{
				Scenario: "firewall-expiry", Settings: "keepalive 2s/1s/3",
				Skipped: "needs root for network namespaces",
				Client:  Side{Expected: kaRule}, Server: Side{Expected: kaRule},
			},
		},
	}
}

// runChromium runs one headless Chromium with its own profile directory,
// killing its whole process group after 60 s or once it has exited, so no
// renderer or helper outlives the test.
func runChromium(t *testing.T, bin, profile, headless string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := append([]string{headless, "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	// HOME and XDG dirs inside the profile: the crashpad handlers (which leave
	// the process group) keep their database there, not in the user's home,
	// and the sweep below can find them by that path.
	cmd.Env = append(os.Environ(), "HOME="+profile, "XDG_CONFIG_HOME="+filepath.Join(profile, "config"),
		"XDG_CACHE_HOME="+filepath.Join(profile, "cache"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A helper that keeps stdout open must not hold Wait forever.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err = cmd.Start(); err != nil {
		return nil, nil, err
	}
	pgid := cmd.Process.Pid
	err = cmd.Wait()
	// Whatever is left of the group (zygote, crashpad, renderers) goes too.
	if kerr := syscall.Kill(-pgid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
		t.Errorf("kill chromium process group %d: %v", pgid, kerr)
	}
	sweepChromium(t, profile)
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (after %v)", ctx.Err(), time.Since(start).Round(time.Millisecond))
	}
	t.Logf("chromium %s %s: %v in %v", headless, args[0], err, time.Since(start).Round(time.Millisecond))
	return out.Bytes(), errOut.Bytes(), err
}

// sweepChromium waits up to 5 s for every live process whose command line
// names profile (crashpad handlers run in their own session) to exit, then
// kills what is left, by pid, and fails the test for it.
func sweepChromium(t *testing.T, profile string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesNaming(profile)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("chromium processes %v still running 5s after the browser exited; killed", pids)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesNaming lists the pids, other than zombies, whose command line
// contains s.
func processesNaming(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func checkDOM(t *testing.T, dom string, rep *Report) {
	t.Helper()
	if !strings.Contains(dom, "<svg") {
		t.Errorf("DOM has no <svg>:\n%s", tail([]byte(dom), 2000))
	}
	if n, want := strings.Count(dom, `class="meas"`)+strings.Count(dom, `class="none"`), 6; n != want {
		t.Errorf("DOM has %d measured bars, want %d (3 run scenarios × 2 sides)", n, want)
	}
	// The notice must end its sentence, not run into the legend after it.
	notice := html.EscapeString(rep.Notice)
	if i := strings.Index(dom, notice); i < 0 {
		t.Errorf("DOM does not hold the notice %q", rep.Notice)
	} else if rest := dom[i+len(notice):]; !strings.HasPrefix(rest, ".") && !strings.HasPrefix(rest, "<") {
		t.Errorf("the notice runs into what follows it: %q", tail([]byte(dom[:i+len(notice)+20]), 80))
	}
	for _, r := range rep.Results {
		if !strings.Contains(dom, r.Scenario) {
			t.Errorf("DOM does not mention scenario %q", r.Scenario)
		}
		if r.Skipped == "" && !strings.Contains(dom, r.Scenario+" · client") {
			t.Errorf("DOM has no chart label for %q", r.Scenario+" · client")
		}
	}
}

// layoutProbe runs at the end of the page, once it is laid out, and writes
// what it finds into a hidden <pre> that --dump-dom then shows: the window
// and page widths, the SVG text elements it saw, and one line per problem.
const layoutProbe = `<script>(function () {
  var out = [], de = document.documentElement, texts = 0;
  out.push("viewport " + window.innerWidth + " " + de.clientWidth + " " + de.scrollWidth);
  document.querySelectorAll("svg").forEach(function (svg) {
    var s = svg.getBoundingClientRect();
    svg.querySelectorAll("text").forEach(function (t) {
      var r = t.getBoundingClientRect();
      texts++;
      if (r.left < s.left - 0.5 || r.right > s.right + 0.5 || r.top < s.top - 0.5 || r.bottom > s.bottom + 0.5) {
        out.push("text outside its svg: " + JSON.stringify(t.textContent) + " at x " + Math.round(r.left) + ".." +
          Math.round(r.right) + ", svg x " + Math.round(s.left) + ".." + Math.round(s.right));
      }
      if (r.left < 0 || r.right > de.clientWidth + 0.5) {
        out.push("text outside the window: " + JSON.stringify(t.textContent) + " at x " + Math.round(r.left) + ".." +
          Math.round(r.right) + ", window 0.." + de.clientWidth);
      }
    });
  });
  out.push("texts " + texts);
  document.querySelectorAll("body *").forEach(function (e) {
    var o = getComputedStyle(e).overflowX;
    if (o != "visible" && e.scrollWidth > e.clientWidth + 1) {
      out.push("box scrolls sideways: <" + e.tagName.toLowerCase() + "> " + e.scrollWidth + " > " + e.clientWidth + " px");
    }
  });
  var p = document.createElement("pre");
  p.id = "layout-probe";
  p.hidden = true;
  p.textContent = out.join("\n");
  document.body.appendChild(p);
})();</script>`

// checkLayout loads a copy of the page with layoutProbe in a window width px
// wide: the page must not be wider than the window, no SVG text may lie
// outside its SVG or the window, and no box (such as a <pre>) may scroll
// sideways.
func checkLayout(t *testing.T, bin, headless, page string, width int) {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, []byte("</body>"))
	if i < 0 {
		t.Fatalf("%s has no </body>", page)
	}
	probed := filepath.Join(filepath.Dir(page), fmt.Sprintf("layout-%d.html", width))
	b = append(append(append([]byte(nil), b[:i]...), layoutProbe...), b[i:]...)
	if err := os.WriteFile(probed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dom, stderr, err := runChromium(t, bin, filepath.Join(filepath.Dir(page), fmt.Sprintf("profile-layout-%d", width)),
		headless, "--dump-dom", fmt.Sprintf("--window-size=%d,800", width), "file://"+probed)
	if err != nil {
		t.Fatalf("chromium %s --dump-dom at %d px: %v\n%s", headless, width, err, tail(stderr, 2000))
	}
	const open, end = `<pre id="layout-probe" hidden="">`, "</pre>"
	d := string(dom)
	j := strings.Index(d, open)
	if j < 0 {
		t.Fatalf("at %d px the layout probe left no result; DOM:\n%s", width, tail(dom, 2000))
	}
	d = d[j+len(open):]
	d = html.UnescapeString(d[:max(0, strings.Index(d, end))])
	t.Logf("layout at %d px:\n%s", width, d)
	var inner, client, scroll, texts int
	for _, line := range strings.Split(d, "\n") {
		switch {
		case strings.HasPrefix(line, "viewport "):
			fmt.Sscanf(line, "viewport %d %d %d", &inner, &client, &scroll)
		case strings.HasPrefix(line, "texts "):
			fmt.Sscanf(line, "texts %d", &texts)
		default:
			t.Errorf("at %d px: %s", width, line)
		}
	}
	// Chromium must have honoured --window-size, or the checks prove nothing.
	if inner != width {
		t.Errorf("window is %d px wide, want %d", inner, width)
	}
	if client <= 0 || scroll > client {
		t.Errorf("at %d px the page is %d px wide in a %d px viewport: it scrolls sideways", width, scroll, client)
	}
	// A label, an expected and a measured text per side, 3 scenarios × 2 sides.
	if texts < 18 {
		t.Errorf("at %d px the probe saw %d SVG texts, want at least 18", width, texts)
	}
}

// checkScreenshot decodes the PNG, wants more than a handful of colours, and
// looks for the two bar fills of the page's stylesheet.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	b := img.Bounds()
	colours := map[[4]uint32]bool{}
	var grey, blue int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
			switch {
			case near(r, g, bl, 0xbb, 0xbb, 0xbb): // .exp
				grey++
			case near(r, g, bl, 0x2b, 0x6c, 0xb0): // .meas
				blue++
			}
		}
	}
	t.Logf("screenshot %dx%d: %d colours, %d grey and %d blue pixels", b.Dx(), b.Dy(), len(colours), grey, blue)
	if len(colours) <= 8 {
		t.Errorf("screenshot has %d distinct colours: a blank or flat page", len(colours))
	}
	// The smallest bar is 1×14 px; the real ones are far larger.
	if grey < 200 {
		t.Errorf("screenshot has %d pixels of the expected-bar grey #bbb, want the chart's bars", grey)
	}
	if blue < 200 {
		t.Errorf("screenshot has %d pixels of the measured-bar blue #2b6cb0, want the chart's bars", blue)
	}
}

// near reports whether a 16-bit colour is within a few steps of an 8-bit one.
func near(r, g, b uint32, wr, wg, wb int) bool {
	d := func(c uint32, w int) bool { v := int(c>>8) - w; return v >= -4 && v <= 4 }
	return d(r, wr) && d(g, wg) && d(b, wb)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
