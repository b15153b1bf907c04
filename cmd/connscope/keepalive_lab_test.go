package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connscope/connscope/keepalive/lab"
)

func TestKeepaliveLabBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--idle", "1.5s"}, "--idle"},
		{[]string{"--idle", "soon"}, "--idle"},
		{[]string{"--interval", "-3s"}, "--interval"},
		{[]string{"--count", "-1"}, "--count"},
		{[]string{"--count", "500"}, "--count"},
		{[]string{"--count", "x"}, "count"},
		{[]string{"--user-timeout", "1.5us"}, "--user-timeout"},
		{[]string{"--retries2", "-2"}, "--retries2"},
		{[]string{"--state-timeout", "1500ms"}, "--state-timeout"},
		{[]string{"--scenario", "nope"}, "--scenario"},
		{[]string{"--retries2", "-1", "--list"}, "--retries2"}, // not hidden by --list
		{[]string{"--idle", "soon", "--cleanup"}, "--idle"},
		{[]string{"--html", os.TempDir(), "--list"}, "--html"}, // a directory: said at once, not after the run
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--scenario", ""}, "--scenario"},    // built a lab and ran nothing, exit 0
		{[]string{"--scenario", " , "}, "--scenario"}, // the same
		{[]string{"--scenario", "", "--list"}, "--scenario"},
	} {
		var out, errb bytes.Buffer
		code := execute(context.Background(), append([]string{"keepalive", "lab"}, tc.args...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.flag) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.args, code, errb.String(), tc.flag)
		}
	}
}

func TestKeepaliveLabList(t *testing.T) {
	var out, errb bytes.Buffer
	if code := execute(context.Background(), []string{"keepalive", "lab", "--list"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, n := range lab.Names() {
		if !strings.Contains(out.String(), n) {
			t.Errorf("--list lacks %s", n)
		}
	}
}

func TestKeepaliveLabCleanup(t *testing.T) {
	var out, errb bytes.Buffer
	if code := execute(context.Background(), []string{"keepalive", "lab", "--cleanup"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestKeepaliveLabRun runs the reset scenario for real (namespaces as root,
// the userspace proxy otherwise) and checks the JSON and the HTML page.
func TestKeepaliveLabRun(t *testing.T) {
	html := filepath.Join(t.TempDir(), "lab.html")
	var out, errb bytes.Buffer
	args := []string{"keepalive", "lab", "--scenario", "reset", "--idle", "1", "--interval", "1", "--count", "2", "--json", "--html", html}
	if code := execute(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		Results []struct {
			Client, Server struct{ Error string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].Client.Error != "ECONNRESET" || rep.Results[0].Server.Error != "ECONNRESET" {
		t.Errorf("report: %+v", rep.Results)
	}
	fi, err := os.Stat(html)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&^0o644 != 0 {
		t.Errorf("html mode %v, want 0644 or tighter", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(html)
	for _, want := range []string{"<svg", "reset", "expected"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("html lacks %q", want)
		}
	}
	if bytes.Contains(b, []byte("http://")) && !bytes.Contains(b, []byte(`xmlns="http://www.w3.org/2000/svg"`)) {
		t.Error("html refers to an external resource")
	}
}
