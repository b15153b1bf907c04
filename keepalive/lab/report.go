package lab

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

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
		fmt.Fprintf(w, "; tcp_retries2=%d inside the lab", max(rep.Kernel.Retries2, 0)) // negative: 0
	}
	fmt.Fprintln(w)
	if rep.Notice != "" {
		fmt.Fprintf(w, "note: %s\n", rep.Notice)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSETTINGS\tSIDE\tEXPECTED\tMEASURED\tERROR\tRULE")
	rows, notes := tableRows(rep)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Settings, r.Side,
			r.Expected, r.Measured, r.Error, r.Rule)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s: %s\n", n.Scenario, n.Note)
	}
	return nil
}

// tableRow is one line of the table, shared by the text and the HTML forms.
// Scenario and Settings are only set on a scenario's first line.
type tableRow struct {
	Scenario, Settings, Side, Expected, Measured, Error, Rule string
}

type scenarioNote struct{ Scenario, Note string }

// tableRows gives a skipped scenario one line and a run one a line per side.
func tableRows(rep *Report) (rows []tableRow, notes []scenarioNote) {
	for _, r := range rep.Results {
		if r.Skipped != "" {
			rows = append(rows, tableRow{Scenario: r.Scenario, Settings: r.Settings, Side: "-",
				Expected: expectedText(longestDetection(r.Client.Expected, r.Server.Expected)),
				Measured: "skipped: " + r.Skipped})
			continue
		}
		for i, side := range []struct {
			name string
			s    Side
		}{{"client", r.Client}, {"server", r.Server}} {
			row := tableRow{Side: side.name, Expected: expectedText(side.s.Expected),
				Measured: measuredText(side.s), Error: errorText(side.s), Rule: side.s.Expected.Rule}
			if i == 0 {
				row.Scenario, row.Settings = r.Scenario, r.Settings
			}
			rows = append(rows, row)
		}
		if r.Note != "" {
			notes = append(notes, scenarioNote{r.Scenario, r.Note})
		}
	}
	return rows, notes
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
	Label, ExpText, MeasText string
	Y, ExpW, MeasW           float64
	ExpNever, MeasNone       bool
	Gap                      bool // first side of a scenario after another one
}

// The chart's geometry, in px at its natural size: per side a label, two
// bars and under them the expected and the measured text, side by side when
// they fit in the bars' width, else one under the other. Nothing sits at a
// fixed x: the label column is as wide as the longest label, and the page
// scales the whole chart down (viewBox) when the window is narrower, so no
// text is cut.
const (
	chartBarW = 680.0 // the longest bar
	chartPad  = 16.0  // between columns
	chartSide = 60.0  // one side's block with one line of text
	chartLine = 15.0  // a second line of text
	chartGap  = 12.0  // between scenarios
)

// textWidth over-estimates how wide s is drawn in the chart's 12px font, so
// the layout can be chosen before a browser draws it: too wide only shrinks
// the chart a little, too narrow would clip the text. DejaVu Sans, a wide
// sans-serif, averages about 8, 7.6 and 6 px for capitals, digits and the
// rest.
func textWidth(s string) float64 {
	w := 0.0
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			w += 9
		case unicode.IsDigit(r):
			w += 8
		default:
			w += 7
		}
	}
	return w
}

// WriteHTML writes the page: an SVG bar chart of expected vs measured per
// scenario and side, and the table.
func WriteHTML(w io.Writer, rep *Report) error {
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
	scale := func(d time.Duration) float64 { return max(1, chartBarW*float64(d)/float64(maxT)) }
	var bars []bar
	var labelW, expW, measW float64
	for _, r := range rep.Results {
		if r.Skipped != "" {
			continue
		}
		for i, side := range []struct {
			n string
			s Side
		}{{"client", r.Client}, {"server", r.Server}} {
			b := bar{Label: r.Scenario + " · " + side.n, ExpText: "expected " + expectedText(side.s.Expected),
				MeasText: "measured " + measuredText(side.s), ExpNever: side.s.Expected.Never,
				Gap: i == 0 && len(bars) > 0}
			if e := errorText(side.s); e != "-" {
				b.MeasText += " " + e
			}
			if !b.ExpNever {
				b.ExpW = scale(side.s.Expected.After)
			}
			if side.s.Detected {
				b.MeasW = scale(side.s.After)
			} else {
				b.MeasNone = true
				b.MeasW = scale(side.s.Waited)
			}
			labelW = max(labelW, textWidth(b.Label))
			expW = max(expW, textWidth(b.ExpText))
			measW = max(measW, textWidth(b.MeasText))
			bars = append(bars, b)
		}
	}
	barX := math.Ceil(labelW + chartPad)
	measX, measY, step := barX+math.Ceil(expW+chartPad), 49.0, chartSide
	textW := expW + chartPad + measW
	if textW > chartBarW {
		measX, measY, step = barX, 49+chartLine, chartSide+chartLine
		textW = max(expW, measW)
	}
	y := 0.0
	for i := range bars {
		if bars[i].Gap {
			y += chartGap
		}
		bars[i].Y = y
		y += step
	}
	rows, notes := tableRows(rep)
	var where []string
	if rep.Lab != "" {
		where = append(where, "namespaces "+rep.Lab+"-{client,router,server}")
	}
	if rep.Mode == "namespaces" {
		where = append(where, fmt.Sprintf("tcp_retries2=%d inside the lab", max(rep.Kernel.Retries2, 0))) // negative: 0
	}
	return htmlPage.Execute(w, map[string]any{
		"Bars": bars, "BarX": barX, "MeasX": measX, "MeasY": measY,
		"Width":  math.Ceil(barX + max(chartBarW, textW) + 4),
		"Height": max(y, 1), "Max": fmtDur(maxT),
		"Where": strings.Join(where, "; "), "Notice": sentence(rep.Notice),
		"Rows": rows, "Notes": notes, "Report": rep,
	})
}

// sentence ends s with a full stop unless it already ends a sentence, so the
// notice does not run into what follows it.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "!") || strings.HasSuffix(s, "?") {
		return s
	}
	return s + "."
}

// The table wraps inside the page width (long rules and errors break, a
// word too long for any line mid-word) rather than scrolling sideways; the chart shrinks
// with the page (max-width, height from the viewBox) and never grows past
// its natural size.
var htmlPage = template.Must(template.New("lab").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>connscope keepalive lab</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;line-height:1.4}h1{font-size:1.7em}
svg.chart{display:block;max-width:100%;height:auto}
.exp{fill:#bbb}.meas{fill:#2b6cb0}.none{fill:none;stroke:#c53030;stroke-dasharray:4 3}
text{font-size:12px;font-family:system-ui,sans-serif}.t-exp{fill:#555}.t-meas{fill:#1f4e80}
table{border-collapse:collapse;font-size:14px}th,td{text-align:left;vertical-align:top;padding:.3em .6em;overflow-wrap:break-word}
thead th{border-bottom:2px solid #999}tr.start td{border-top:1px solid #ccc}td.nw{white-space:nowrap}</style></head>
<body><h1>Dead-connection detection: expected vs measured</h1>
<p>Mode: {{.Report.Mode}}{{with .Where}} ({{.}}){{end}}.</p>
{{with .Notice}}<p class="notice">Note: {{.}}</p>
{{end}}<p>Grey: the kernel model (keepalive.Detect); blue: measured from the fault;
dashed red: not detected within the watch window. Scale: 0 to {{.Max}}.</p>
<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="expected vs measured detection times">
{{range .Bars}}<g transform="translate(0,{{.Y}})">
<text x="0" y="13">{{.Label}}</text>
{{if .ExpNever}}<text x="{{$.BarX}}" y="13">expected: never</text>{{else}}<rect class="exp" x="{{$.BarX}}" y="2" width="{{.ExpW}}" height="14"/>{{end}}
<rect class="{{if .MeasNone}}none{{else}}meas{{end}}" x="{{$.BarX}}" y="20" width="{{.MeasW}}" height="14"/>
<text class="t-exp" x="{{$.BarX}}" y="49">{{.ExpText}}</text><text class="t-meas" x="{{$.MeasX}}" y="{{$.MeasY}}">{{.MeasText}}</text>
</g>
{{end}}</svg>
<h2>Table</h2>
<table><thead><tr><th>Scenario</th><th>Settings</th><th>Side</th><th>Expected</th><th>Measured</th><th>Error</th><th>Rule</th></tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Scenario}} class="start"{{end}}><td class="nw">{{.Scenario}}</td><td>{{.Settings}}</td><td class="nw">{{.Side}}</td><td>{{.Expected}}</td><td>{{.Measured}}</td><td>{{.Error}}</td><td>{{.Rule}}</td></tr>
{{end}}</tbody></table>
{{with .Notes}}<ul>{{range .}}<li>{{.Scenario}}: {{.Note}}</li>{{end}}</ul>{{end}}
</body></html>
`))
