package scenarios

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

//go:embed report/report.html.tmpl
var reportTemplateText string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"seconds": fmtSeconds,
	"verdict": verdictWord,
	"bottom":  func(h float64) float64 { return h - plotBottom },
}).Parse(reportTemplateText))

// Geometry of the plots, in SVG user units.
const (
	plotWidth     = 960.0
	plotLeft      = 70.0 // room for the y labels
	plotRight     = 10.0
	plotTop       = 8.0
	plotBottom    = 22.0 // room for the x labels
	scatterHeight = 170.0
	laneHeight    = 18.0
	laneLabel     = 170.0
	spanRow       = 16.0
	spanLabel     = 330.0
	maxLanes      = 80
	maxTraces     = 40
)

type htmlPage struct {
	Rep        *Report
	Verdict    string
	Title      string
	Results    []Result
	Counts     [][2]string
	Faults     [][2]string
	Latency    []latencyRow
	Scatters   []scatterPlot
	Timeline   *timelinePlot
	Traces     []traceView
	TracesNote string
	TraceURL   string
	Generated  string
	// Profile and Bounds say what the target was and what it was judged by.
	Profile string
	Bounds  []string
}

type latencyRow struct {
	Command string
	P       Percentiles
}

type tick struct {
	Pos   float64
	Label string
}

type point struct {
	X, Y  float64
	Class string
	Title string
}

type band struct {
	X, W  float64
	Class string
	Title string
}

type scatterPlot struct {
	Command        string
	W, H           float64
	Left, Bottom   float64
	Points         []point
	Shades         []band
	Marks          []band // instant faults and the shutdown
	XTicks, YTicks []tick
}

type lane struct {
	Label    string
	Y        float64
	Segments []band
	Faults   []band
	Ops      []point
}

type timelinePlot struct {
	W, H   float64
	Left   float64
	Lanes  []lane
	XTicks []tick
	Note   string
}

type spanBar struct {
	Label   string
	LabelX  float64
	Y, X, W float64
	Class   string
	Title   string
	Events  []point
}

type traceView struct {
	Op      string
	TraceID string
	Link    string
	W, H    float64
	Left    float64
	Spans   []spanBar
	Note    string
	Total   string
}

// timeScale maps ns since start to x.
type timeScale struct {
	end         int64
	left, width float64
}

func (s timeScale) x(ns int64) float64 {
	if s.end <= 0 {
		return s.left
	}
	return s.left + s.width*float64(max(0, min(ns, s.end)))/float64(s.end)
}

func (s timeScale) ticks() []tick {
	total := time.Duration(s.end).Seconds()
	step := niceStep(total / 8)
	var out []tick
	for t := 0.0; t <= total+1e-9; t += step {
		out = append(out, tick{Pos: s.x(int64(t * float64(time.Second))), Label: fmt.Sprintf("%gs", math.Round(t*1000)/1000)})
	}
	return out
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func reportHTML(rep *Report) ([]byte, error) {
	// The run's one verdict, as the summary and report.json say it.
	verdict := rep.Verdict
	if verdict == "" {
		verdict = runVerdict(rep.Results)
	}
	page := htmlPage{Rep: rep, Verdict: strings.ToLower(verdict), Results: rep.Results, Generated: time.Now().UTC().Format(time.RFC3339)}
	page.Title = fmt.Sprintf("corral run %s, seed %d: %s", rep.Scenario, rep.Seed, strings.ToUpper(page.Verdict))
	if rep.Target.Profile.Name != "" {
		page.Profile = rep.Target.Profile.summary()
	}
	for _, k := range sortedKeys(rep.Counts) {
		page.Counts = append(page.Counts, [2]string{k, fmt.Sprint(rep.Counts[k])})
	}
	for _, k := range sortedKeys(rep.Faults) {
		page.Faults = append(page.Faults, [2]string{k, fmt.Sprint(rep.Faults[k])})
	}
	for _, k := range sortedKeys(rep.Latency) {
		page.Latency = append(page.Latency, latencyRow{k, rep.Latency[k]})
	}
	if d := rep.Data; d != nil {
		page.Bounds = d.Bounds.declaredLines()
		page.TraceURL = d.TraceURL
		scale := timeScale{end: max(runEnd(d), 1), left: plotLeft, width: plotWidth - plotLeft - plotRight}
		faults := nemesisFaults(d)
		page.Scatters = scatterPlots(d, scale, faults)
		page.Timeline = timeline(d, faults)
		page.Traces, page.TracesNote = traceViews(d)
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func faultTitle(w faultWindow) string {
	s := w.F
	if w.PipelineID != "" {
		s += " on " + w.PipelineID
	}
	s += " from " + secs(w.Start)
	if w.End >= 0 {
		s += " to " + secs(w.End)
	}
	return s
}

// faultBands shades each fault period (instant faults become marks).
func faultBands(scale timeScale, faults []faultWindow, shutdown ShutdownRecord) (shades, marks []band) {
	for _, w := range faults {
		if w.OK == nil {
			continue
		}
		x0 := scale.x(w.Start)
		if w.End >= 0 {
			shades = append(shades, band{X: x0, W: max(1, scale.x(w.End)-x0), Class: "fault", Title: faultTitle(w)})
		} else {
			marks = append(marks, band{X: x0, W: 1.5, Class: "instant", Title: faultTitle(w)})
		}
	}
	if shutdown.Signal != "" {
		marks = append(marks, band{X: scale.x(shutdown.Requested), W: 2, Class: "shutdown",
			Title: fmt.Sprintf("%s to the manager at %s", shutdown.Signal, secs(shutdown.Requested))})
	}
	return shades, marks
}

// scatterPlots draws latency over time per command on a log scale.
func scatterPlots(d *RunData, scale timeScale, faults []faultWindow) []scatterPlot {
	lat := commandLatencies(d)
	shades, marks := faultBands(scale, faults, d.Shutdown)
	var out []scatterPlot
	for _, cmd := range sortedKeys(lat) {
		samples := lat[cmd]
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range samples {
			ms := math.Max(s.Latency.Seconds()*1000, 0.01)
			lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		}
		d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if d1 <= d0 {
			d1 = d0 + 1
		}
		top, bottom := plotTop, scatterHeight-plotBottom
		y := func(ms float64) float64 {
			ms = math.Max(ms, 0.01)
			return bottom - (bottom-top)*(math.Log10(ms)-d0)/(d1-d0)
		}
		p := scatterPlot{Command: cmd, W: plotWidth, H: scatterHeight, Left: plotLeft, Bottom: bottom,
			Shades: shades, Marks: marks, XTicks: scale.ticks()}
		for e := d0; e <= d1; e++ {
			p.YTicks = append(p.YTicks, tick{Pos: y(math.Pow(10, e)), Label: fmtSeconds(math.Pow(10, e) / 1000)})
		}
		for _, s := range samples {
			title := fmt.Sprintf("%s: %s after %v", describeOp(s.Inv), s.Type, s.Latency.Round(time.Microsecond))
			if s.Op.Error != "" {
				title += " (" + s.Op.Error + ")"
			}
			p.Points = append(p.Points, point{X: scale.x(s.At), Y: y(s.Latency.Seconds() * 1000), Class: s.Type, Title: title})
		}
		out = append(out, p)
	}
	return out
}

func stateClass(p pipelineState) string {
	if p.marked {
		return "st-marked"
	}
	return "st-" + p.state
}

type pipelineState struct {
	state  string
	marked bool
}

// timeline draws one lane per pipeline: its state between inspect
// samples, the faults aimed at it and its failed or unanswered commands.
func timeline(d *RunData, faults []faultWindow) *timelinePlot {
	var ids []string
	seen := map[string]bool{}
	addID := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, s := range d.Inspects {
		for _, p := range s.Pipelines {
			addID(p.PipelineID)
		}
	}
	for _, w := range faults {
		addID(w.PipelineID)
	}
	if len(ids) == 0 {
		return &timelinePlot{Note: "No pipeline was seen (no inspect samples and no faults on pipelines)."}
	}
	tp := &timelinePlot{W: plotWidth, Left: laneLabel}
	if len(ids) > maxLanes {
		tp.Note = fmt.Sprintf("Showing the first %d of %d pipelines.", maxLanes, len(ids))
		ids = ids[:maxLanes]
	}
	scale := timeScale{end: max(runEnd(d), 1), left: laneLabel, width: plotWidth - laneLabel - plotRight}
	tp.XTicks = scale.ticks()
	v := newOpView(d.Ops)
	for i, id := range ids {
		l := lane{Label: id, Y: plotTop + float64(i)*laneHeight}
		for si, s := range d.Inspects {
			e := findEntry(&d.Inspects[si], id)
			if e == nil {
				continue
			}
			next := runEnd(d)
			if si+1 < len(d.Inspects) {
				next = d.Inspects[si+1].Time
			}
			ps := pipelineState{state: string(e.State), marked: e.MarkedForRemoval}
			if e.Idle {
				ps.state = string(protocol.StateIdle)
			}
			x0 := scale.x(s.Time)
			title := fmt.Sprintf("%s %s at %s (pid %d, %d failures)", id, entryState(e), secs(s.Time), e.Pid, e.Health.ConsecutiveFailures)
			// Merge with the previous segment when nothing changed.
			if n := len(l.Segments); n > 0 && l.Segments[n-1].Class == stateClass(ps) &&
				math.Abs(l.Segments[n-1].X+l.Segments[n-1].W-x0) < 0.01 {
				l.Segments[n-1].W = scale.x(next) - l.Segments[n-1].X
				continue
			}
			l.Segments = append(l.Segments, band{X: x0, W: math.Max(1, scale.x(next)-x0), Class: stateClass(ps), Title: title})
		}
		for _, w := range faults {
			if w.PipelineID != id || w.OK == nil {
				continue
			}
			x0 := scale.x(w.Start)
			width := 3.0
			if w.End >= 0 {
				width = math.Max(3, scale.x(w.End)-x0)
			}
			l.Faults = append(l.Faults, band{X: x0, W: width, Class: "fault-bar", Title: faultTitle(w)})
		}
		for oi := range d.Ops {
			c := &d.Ops[oi]
			if c.PipelineID != id || !isClientProcess(c.Process) || (c.Type != OpFail && c.Type != OpInfo) {
				continue
			}
			inv := c
			if i, ok := v.byIdx[c.Invoke]; ok {
				inv = i
			}
			l.Ops = append(l.Ops, point{X: scale.x(inv.Time), Y: l.Y + laneHeight/2, Class: c.Type,
				Title: fmt.Sprintf("%s: %s after %v: %s", describeOp(inv), c.Type, time.Duration(c.Time-inv.Time).Round(time.Millisecond), c.Error)})
		}
		tp.Lanes = append(tp.Lanes, l)
	}
	tp.H = plotTop + float64(len(tp.Lanes))*laneHeight + plotBottom
	return tp
}

// traceViews draws the trace of each failing or unanswered client
// operation as a waterfall.
func traceViews(d *RunData) ([]traceView, string) {
	v := newOpView(d.Ops)
	type failing struct {
		op      *Op
		traceID string
		desc    string
	}
	var fs []failing
	want := map[string]bool{}
	for i := range d.Ops {
		c := &d.Ops[i]
		if !isClientProcess(c.Process) || (c.Type != OpFail && c.Type != OpInfo) {
			continue
		}
		id := c.TraceID
		if inv, ok := v.byIdx[c.Invoke]; ok && id == "" {
			id = inv.TraceID
		}
		desc := describeOp(c)
		if inv, ok := v.byIdx[c.Invoke]; ok {
			desc = describeOp(inv) + fmt.Sprintf(" after %v", time.Duration(c.Time-inv.Time).Round(time.Millisecond))
		}
		fs = append(fs, failing{c, normID(id), desc})
		if id != "" {
			want[normID(id)] = true
		}
	}
	if len(fs) == 0 {
		return nil, "No operation failed or went unanswered."
	}
	spans, note := loadTraces(d, want)
	if !d.Embedded && d.TracesFile != "" {
		note = strings.TrimSpace("The manager under test ran elsewhere (--target): traces.json holds the harness's client and fault spans; " +
			"the manager's and its workers' spans are wherever that server exports them (its OTEL_* settings or --trace-file). " + note)
	}
	var out []traceView
	for _, f := range fs {
		if len(out) == maxTraces {
			note = strings.TrimSpace(note + fmt.Sprintf(" Showing the first %d of %d failing operations.", maxTraces, len(fs)))
			break
		}
		tv := traceView{Op: fmt.Sprintf("%s: %s %s", f.desc, f.op.Type, f.op.Error), TraceID: f.traceID}
		if d.TraceURL != "" && f.traceID != "" {
			tv.Link = strings.TrimRight(d.TraceURL, "/") + "/trace/" + f.traceID
		}
		switch {
		case f.traceID == "":
			tv.Note = "This operation has no trace id."
		case spans == nil:
			tv.Note = "No trace available."
		case len(spans[f.traceID]) == 0:
			tv.Note = "Trace " + f.traceID + " is not in traces.json."
		default:
			waterfall(&tv, spans[f.traceID])
		}
		out = append(out, tv)
	}
	return out, note
}

// serviceRole is how the waterfall colours a service: the manager exports
// as "corral", its workers as "corral-worker", the harness as
// "corral-harness" and the CLI as "corral-client".
func serviceRole(service string) string {
	s := strings.ToLower(service)
	switch {
	case strings.Contains(s, "worker"):
		return "worker"
	case strings.Contains(s, "client"), strings.Contains(s, "harness"):
		return "client"
	case s == "corral", strings.Contains(s, "manager"):
		return "manager"
	}
	return "other"
}

// waterfall lays out a trace's spans: parents before children, children
// by start time, one row each, indented by depth.
func waterfall(tv *traceView, spans []traceSpan) {
	slices.SortFunc(spans, func(a, b traceSpan) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return strings.Compare(a.SpanID, b.SpanID)
	})
	byID := map[string]bool{}
	t0, t1 := spans[0].Start, spans[0].End
	for _, s := range spans {
		byID[s.SpanID] = true
		t0, t1 = min(t0, s.Start), max(t1, s.End)
	}
	children := map[string][]int{}
	var roots []int
	for i, s := range spans {
		if s.ParentID == "" || !byID[s.ParentID] {
			roots = append(roots, i)
		} else {
			children[s.ParentID] = append(children[s.ParentID], i)
		}
	}
	total := max(t1-t0, 1)
	width := plotWidth - spanLabel - plotRight
	x := func(ns int64) float64 { return spanLabel + width*float64(ns-t0)/float64(total) }
	tv.W, tv.Left = plotWidth, spanLabel
	tv.Total = time.Duration(total).Round(time.Microsecond).String()
	visited := map[int]bool{}
	var visit func(i, depth int)
	visit = func(i, depth int) {
		if visited[i] {
			return
		}
		visited[i] = true
		s := spans[i]
		y := plotTop + float64(len(tv.Spans))*spanRow
		class := "svc-" + serviceRole(s.Service)
		if s.Error {
			class += " span-error"
		}
		title := fmt.Sprintf("%s [%s] %v", s.Name, s.Service, time.Duration(s.End-s.Start).Round(time.Microsecond))
		if s.StatusMessage != "" {
			title += " error: " + s.StatusMessage
		}
		if len(s.Attrs) > 0 {
			title += "\n" + strings.Join(s.Attrs, "\n")
		}
		bar := spanBar{Label: s.Name + " (" + s.Service + ")", LabelX: 4 + 10*float64(min(depth, 12)), Y: y, X: x(s.Start),
			W: math.Max(1, x(s.End)-x(s.Start)), Class: class, Title: title}
		for _, e := range s.Events {
			class := "event"
			if strings.Contains(e.Name, "fault") || strings.Contains(e.Name, "chaos") || strings.Contains(e.Name, "exception") {
				class = "event-fault"
			}
			bar.Events = append(bar.Events, point{X: x(e.Time), Y: y + spanRow/2, Class: class,
				Title: strings.Join(append([]string{e.Name}, e.Attrs...), "\n")})
		}
		tv.Spans = append(tv.Spans, bar)
		for _, c := range children[s.SpanID] {
			visit(c, depth+1)
		}
	}
	for _, r := range roots {
		visit(r, 0)
	}
	tv.H = plotTop + float64(len(tv.Spans))*spanRow + plotBottom
}
