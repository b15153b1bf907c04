package connscope

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeTable returns the rows of the README table whose header line is
// header, each row split into its cells.
func readmeTable(t *testing.T, header string) [][]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	in := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == header:
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		case in:
			if len(rows) == 0 {
				t.Fatalf("README: no rows under %q", header)
			}
			return rows
		}
	}
	if !in {
		t.Fatalf("README: no table %q", header)
	}
	return rows
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readmeFields returns the README's field table: each field's type.
func readmeFields(t *testing.T) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for _, row := range readmeTable(t, "| field | type | meaning |") {
		var names []string
		for _, m := range backticked.FindAllStringSubmatch(row[0], -1) {
			names = append(names, m[1])
		}
		types := strings.Split(row[1], ", ")
		if len(types) != 1 && len(types) != len(names) {
			t.Fatalf("README field table: row %q has %d names and %d types", row[0], len(names), len(types))
		}
		for i, n := range names {
			typ := types[0]
			if len(types) > 1 {
				typ = types[i]
			}
			fields[n] = typ
		}
	}
	return fields
}

// fullEvents returns events that between them set every field the
// encoders can write, on a connection with a TCP address at each end and
// without one.
func fullEvents(t *testing.T) []*Event {
	t.Helper()
	c, _ := tcpPair(t)
	spy := &Spy{}
	w := spy.WrapConn(c, Client)
	t.Cleanup(func() { w.Close() })
	err := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	full := &Event{
		Time: time.Now(), Level: slog.LevelError, Message: MsgClose, Producer: DefaultProducer, Conn: RecordOf(w), ID: NewID(),
		Target: "GET https://example.com:443/", Request: 2, Status: 200, Protocol: "HTTP/1.1",
		Host: "example.com", Addrs: "192.0.2.1,192.0.2.2", TLS: "TLS 1.3 h2",
		Headers: []Header{{"X-Request-Id", "42"}},
		DNS:     time.Millisecond, Connect: 2 * time.Millisecond, TLSTime: 3 * time.Millisecond,
		TTFB: 4 * time.Millisecond, Idle: 5 * time.Millisecond, Duration: 6 * time.Millisecond,
		BytesRead: 7, BytesWritten: 8, HadError: true, ClosedBy: "remote", Op: "read", Err: err,
	}
	dropped := &Event{Time: time.Now(), Level: slog.LevelWarn, Message: MsgDropped, Producer: DefaultProducer, Dropped: 3}
	evs := []*Event{full, dropped}
	// A field added to Event must be set here, so that what the encoders
	// make of it is checked.
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		if !typ.Field(i).IsExported() {
			continue // not encoded: how the encoders do their work
		}
		if !slices.ContainsFunc(evs, func(e *Event) bool { return !reflect.ValueOf(e).Elem().Field(i).IsZero() }) {
			t.Fatalf("fullEvents: no event sets Event.%s", typ.Field(i).Name)
		}
	}
	return evs
}

// TestReadmeFieldTable checks the README's field table against what the
// JSON encoder writes: every field it writes is in the table, with the
// table's type, and every field in the table is written by some event.
func TestReadmeFieldTable(t *testing.T) {
	table := readmeFields(t)
	seen := map[string]bool{}
	for _, e := range fullEvents(t) {
		var obj map[string]any
		line := e.AppendJSON(nil)
		if err := json.Unmarshal(line, &obj); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		for k, v := range obj {
			seen[k] = true
			typ, ok := table[k]
			if !ok {
				t.Errorf("JSON field %q (%v) is not in the README's field table", k, v)
				continue
			}
			if v == nil {
				switch k {
				case "id", "localAddress", "localPort", "remoteAddress", "remotePort": // null when unknown
				default:
					t.Errorf("JSON field %q is null", k)
				}
				continue
			}
			if !jsonHasType(v, typ) {
				t.Errorf("JSON field %q = %v (%T): README says %s", k, v, v, typ)
			}
		}
	}
	for k := range table {
		if !seen[k] {
			t.Errorf("README field table has %q, which the JSON encoder does not write", k)
		}
	}
}

func jsonHasType(v any, typ string) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "UUID":
		s, ok := v.(string)
		return ok && len(s) == 36 && strings.Count(s, "-") == 4
	case "int":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "number":
		_, ok := v.(float64)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// attrHandler keeps the attributes of the records it handles.
type attrHandler struct{ attrs *[]slog.Attr }

func (h attrHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h attrHandler) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool { *h.attrs = append(*h.attrs, a); return true })
	return nil
}
func (h attrHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h attrHandler) WithGroup(string) slog.Handler      { return h }

// TestReadmeFieldTableSlog checks that the slog bridge (NewSlogSink) writes
// the JSON format's fields, under the same names, as the README says:
// level, message and time as the record's own, headers as one
// header.<Name> attribute each.
func TestReadmeFieldTableSlog(t *testing.T) {
	table := readmeFields(t)
	for _, e := range fullEvents(t) {
		var attrs []slog.Attr
		NewSlogSink(slog.New(attrHandler{&attrs})).Emit(e)
		var obj map[string]any
		if err := json.Unmarshal(e.AppendJSON(nil), &obj); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for k, v := range obj {
			switch {
			case k == "level", k == "message", k == "_timestamp": // the record's own
			case k == "headers":
				for name := range v.(map[string]any) {
					want["header."+name] = true
				}
			case v != nil: // null: left out
				want[k] = true
			}
		}
		got := map[string]bool{}
		for _, a := range attrs {
			got[a.Key] = true
			typ := table[a.Key]
			if strings.HasPrefix(a.Key, "header.") {
				typ = "string"
			}
			if !slogHasType(a.Value, typ) {
				t.Errorf("%s: slog attribute %s is a %v: README says %q", e.Message, a, a.Value.Kind(), typ)
			}
		}
		for k := range want {
			if !got[k] {
				t.Errorf("%s: JSON field %q has no slog attribute", e.Message, k)
			}
		}
		for k := range got {
			if !want[k] {
				t.Errorf("%s: slog attribute %q is not a JSON field", e.Message, k)
			}
		}
	}
}

func slogHasType(v slog.Value, typ string) bool {
	switch typ {
	case "string", "UUID":
		return v.Kind() == slog.KindString
	case "int":
		return v.Kind() == slog.KindInt64 || v.Kind() == slog.KindUint64
	case "number":
		return v.Kind() == slog.KindFloat64
	case "bool":
		return v.Kind() == slog.KindBool
	}
	return false
}

// TestReadmeMessages checks that the README's event reference lists every
// event message this package declares (the Msg constants in event.go), and
// nothing else.
func TestReadmeMessages(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if strings.HasPrefix(n.Name, "Msg") {
					v, err := strconv.Unquote(vs.Values[i].(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					declared[v] = true
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no Msg constants in event.go")
	}
	listed := map[string]bool{}
	for _, row := range readmeTable(t, "| message | when | notable fields |") {
		m := backticked.FindStringSubmatch(row[0])
		if m == nil {
			t.Fatalf("README message table: row %q names no message", row[0])
		}
		listed[m[1]] = true
	}
	for m := range declared {
		if !listed[m] {
			t.Errorf("message %q is not in the README's event reference", m)
		}
	}
	for m := range listed {
		if !declared[m] {
			t.Errorf("README's event reference lists %q, which event.go does not declare", m)
		}
	}
}

// TestReadmeCodeInExamples checks that the Go code in the README and in the
// package documentation appears, line by line and in order, in an example
// test, where the compiler checks it. Comments and spacing may differ.
func TestReadmeCodeInExamples(t *testing.T) {
	var examples [][]string
	for _, dir := range []string{".", "httpscope", "keepalive", "tcpinfo"} {
		files, err := filepath.Glob(filepath.Join(dir, "example*_test.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no example tests (%v)", dir, err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			examples = append(examples, codeLines(string(b)))
		}
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for i, rest := 0, string(readme); ; i++ {
		_, after, ok := strings.Cut(rest, "\n```go\n")
		if !ok {
			break
		}
		block, after, ok := strings.Cut(after, "\n```")
		if !ok {
			t.Fatal("README: unterminated ```go block")
		}
		blocks["README.md block "+strconv.Itoa(i+1)] = block
		rest = after
	}
	if len(blocks) == 0 {
		t.Fatal("README: no ```go blocks")
	}
	doc, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for line := range strings.Lines(doc.Doc.Text()) {
		if strings.HasPrefix(line, "\t") {
			code = append(code, line)
		}
	}
	blocks["doc.go"] = strings.Join(code, "")

	for name, block := range blocks {
		lines := codeLines(block)
		found := slices.ContainsFunc(examples, func(ex []string) bool { return isSubsequence(lines, ex) })
		if !found {
			t.Errorf("%s is in no example test:\n%s", name, strings.Join(lines, "\n"))
		}
	}
}

// codeLines returns the lines of Go code in src without comments, import
// lines and blank lines, with spacing collapsed.
func codeLines(src string) []string {
	var out []string
	for line := range strings.Lines(src) {
		line = strings.Join(strings.Fields(stripComment(line)), " ")
		if line == "" || strings.HasPrefix(line, "import ") || strings.HasPrefix(line, "//") {
			continue
		}
		out = append(out, line)
	}
	return out
}

// stripComment cuts a line comment off line, outside string literals.
func stripComment(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == '\\' && quote == '"':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
		case c == '"' || c == '`' || c == '\'':
			quote = c
		case c == '/' && strings.HasPrefix(line[i:], "//"):
			return line[:i]
		}
	}
	return line
}

// isSubsequence reports whether want's lines appear in have, in order.
func isSubsequence(want, have []string) bool {
	i := 0
	for _, l := range have {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestSlogLeavesOutWhatJSONLeavesOut: a duration under a microsecond is
// left out of the JSON format (it would read 0 ms, and zero values are
// left out); the slog bridge and the text format wrote it as 0.
func TestSlogLeavesOutWhatJSONLeavesOut(t *testing.T) {
	e := &Event{Time: time.Now(), Message: MsgConnect, Producer: DefaultProducer,
		DNS: 400 * time.Nanosecond, Connect: -999 * time.Nanosecond, TTFB: time.Microsecond, Status: -1}
	var attrs []slog.Attr
	NewSlogSink(slog.New(attrHandler{&attrs})).Emit(e)
	var obj map[string]any
	if err := json.Unmarshal(e.AppendJSON(nil), &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"dnsMs", "connectMs", "ttfbMs", "status"} {
		_, inJSON := obj[k]
		inSlog := slices.ContainsFunc(attrs, func(a slog.Attr) bool { return a.Key == k })
		if inJSON != inSlog {
			t.Errorf("%s: in JSON %v, in slog %v (%v)", k, inJSON, inSlog, attrs)
		}
	}
	if text := string(e.AppendText(nil)); strings.Contains(text, "=0ms") || strings.Contains(text, "=-0ms") || strings.Contains(text, "status=") {
		t.Errorf("text format writes a zero duration or a negative status: %s", text)
	}
}
