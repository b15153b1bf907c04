package lab

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// WriteTable prints one row per side: scenario, settings, expected (with the
// kernel timer and its rule), measured, and the error seen (with the expected
// one when they differ).
func WriteTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "mode: %s", rep.Mode)
	if rep.Lab != "" {
		fmt.Fprintf(w, " (namespaces %s-{client,router,server})", rep.Lab)
	}
	if rep.Mode == "namespaces" {
		fmt.Fprintf(w, "; tcp_retries2=%d inside the lab", rep.Kernel.Retries2)
	}
	fmt.Fprintln(w)
	if rep.Notice != "" {
		fmt.Fprintf(w, "note: %s\n", rep.Notice)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSETTINGS\tSIDE\tEXPECTED\tMEASURED\tERROR\tRULE")
	var notes []string
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t%s\tskipped: %s\t\t\n", r.Scenario, r.Settings,
				expectedText(longestDetection(r.Client.Expected, r.Server.Expected)), r.Skipped)
			continue
		}
		for i, side := range []struct {
			name string
			s    Side
		}{{"client", r.Client}, {"server", r.Server}} {
			name, set := r.Scenario, r.Settings
			if i > 0 {
				name, set = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, set, side.name,
				expectedText(side.s.Expected), measuredText(side.s), errorText(side.s), side.s.Expected.Rule)
		}
		if r.Note != "" {
			notes = append(notes, r.Scenario+": "+r.Note)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func longestDetection(a, b keepalive.Detection) keepalive.Detection {
	if a.Never || (!b.Never && b.After > a.After) {
		return b
	}
	return a
}

func expectedText(d keepalive.Detection) string {
	if d.Never {
		return "never (" + d.Timer + ")"
	}
	return fmtDur(d.After) + " (" + d.Timer + ")"
}

func measuredText(s Side) string {
	if !s.Detected {
		return "not within " + fmtDur(s.Waited)
	}
	t := fmtDur(s.After)
	if in := s.TCPInfo; in != nil && in.Timer != "" && in.Timer != "none" {
		t += fmt.Sprintf(" [%s", in.Timer)
		switch in.Timer {
		case "retransmission":
			t += fmt.Sprintf(", %d retrans", in.Retransmits)
		case "keepalive":
			t += fmt.Sprintf(", %d probes", in.Probes)
		}
		t += "]"
	}
	return t
}

func errorText(s Side) string {
	got := s.Error
	if got == "" {
		got = "-"
	}
	if s.Detected && s.ExpectedError != "" && s.Error != s.ExpectedError {
		got += " (expected " + s.ExpectedError + ")"
	}
	return got
}

// fmtDur rounds for people: 3.05s, 15m25s, 120ms.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return keepalive.FormatDuration(d.Round(time.Millisecond))
	case d < time.Minute:
		return keepalive.FormatDuration(d.Round(10 * time.Millisecond))
	}
	return keepalive.FormatDuration(d.Round(time.Second))
}

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteHTMLFile writes a self-contained page (inline SVG, no external
// resources) atomically: a temporary file in the same directory, mode 0644,
// renamed over path, so a reader never sees half a page.
func WriteHTMLFile(path string, rep *Report) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("lab: html: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("lab: html: %w", err)
	}
	if err = WriteHTML(f, rep); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("lab: html: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("lab: html: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("lab: html: %w", err)
	}
	return nil
}

type bar struct {
	Label, ExpText, MeasText, Err string
	Y, ExpW, MeasW                float64
	ExpNever, MeasNone            bool
}

// WriteHTML writes the page: an SVG bar chart of expected vs measured per
// scenario and side, and the table.
func WriteHTML(w io.Writer, rep *Report) error {
	var bars []bar
	var maxT time.Duration
	for _, r := range rep.Results {
		if r.Skipped != "" {
			continue
		}
		for _, s := range []Side{r.Client, r.Server} {
			if !s.Expected.Never {
				maxT = max(maxT, s.Expected.After)
			}
			if s.Detected {
				maxT = max(maxT, s.After)
			} else {
				maxT = max(maxT, s.Waited)
			}
		}
	}
	if maxT <= 0 {
		maxT = time.Second
	}
	const width = 560.0
	scale := func(d time.Duration) float64 { return max(1, width*float64(d)/float64(maxT)) }
	y := 10.0
	for _, r := range rep.Results {
		if r.Skipped != "" {
			continue
		}
		for _, side := range []struct {
			n string
			s Side
		}{{"client", r.Client}, {"server", r.Server}} {
			b := bar{Label: r.Scenario + " · " + side.n, Y: y, ExpText: expectedText(side.s.Expected),
				MeasText: measuredText(side.s), Err: errorText(side.s), ExpNever: side.s.Expected.Never}
			if !b.ExpNever {
				b.ExpW = scale(side.s.Expected.After)
			}
			if side.s.Detected {
				b.MeasW = scale(side.s.After)
			} else {
				b.MeasNone = true
				b.MeasW = scale(side.s.Waited)
			}
			bars = append(bars, b)
			y += 44
		}
	}
	var tbl strings.Builder
	if err := WriteTable(&tbl, rep); err != nil {
		return err
	}
	return htmlPage.Execute(w, map[string]any{
		"Bars": bars, "Height": y + 10, "Width": width + 760, "Max": fmtDur(maxT), "Table": tbl.String(), "Report": rep,
	})
}

var htmlPage = template.Must(template.New("lab").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>connscope keepalive lab</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto}
.exp{fill:#bbb}.meas{fill:#2b6cb0}.none{fill:none;stroke:#c53030;stroke-dasharray:4 3}text{font-size:12px}</style></head>
<body><h1>Dead-connection detection: expected vs measured</h1>
<p>Mode: {{.Report.Mode}}. {{.Report.Notice}} Grey: the kernel model (keepalive.Detect); blue: measured from the fault;
dashed red: not detected within the watch window. Scale: 0 to {{.Max}}.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="expected vs measured detection times">
{{range .Bars}}<g transform="translate(0,{{.Y}})">
<text x="0" y="12">{{.Label}}</text>
{{if .ExpNever}}<text x="200" y="12">expected: never</text>{{else}}<rect class="exp" x="200" y="2" width="{{.ExpW}}" height="14"/>{{end}}
<rect class="{{if .MeasNone}}none{{else}}meas{{end}}" x="200" y="20" width="{{.MeasW}}" height="14"/>
<text x="770" y="13">expected {{.ExpText}}</text><text x="770" y="31">measured {{.MeasText}} {{.Err}}</text>
</g>
{{end}}</svg>
<h2>Table</h2><pre>{{.Table}}</pre>
</body></html>
`))
