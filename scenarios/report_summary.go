package scenarios

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// summaryDetails is how many detail lines of a failing checker the
// terminal shows; the rest are in report.json and report.html.
const summaryDetails = 5

// verdictWord is how the terminal shows a verdict.
func verdictWord(v string) string {
	switch v {
	case Valid:
		return "PASS"
	case Invalid:
		return "FAIL"
	}
	return "UNKNOWN"
}

// PrintSummary writes the terminal summary of a judged run: the verdict of
// each checker (with the first details of those that did not pass), the
// faults fired, latency percentiles per command, the seed, the exact
// replay command and the run folder.
func PrintSummary(w io.Writer, rep *Report) {
	verdict := rep.Verdict
	if verdict == "" {
		verdict = runVerdict(rep.Results)
	}
	fmt.Fprintf(w, "corral run %s  seed %d  %s\n", rep.Scenario, rep.Seed, verdict)
	tg := rep.Target
	where := "embedded manager"
	if !tg.Embedded {
		where = "target " + tg.Addr
		if tg.Pid > 0 {
			where += fmt.Sprintf(" (pid %d)", tg.Pid)
		}
	}
	if tg.Profile.Name != "" {
		fmt.Fprintf(w, "%s, profile %s\n", where, tg.Profile.summary())
	}
	if d := rep.Data; d != nil {
		if d.Interrupted > 0 {
			fmt.Fprintf(w, "interrupted at %s: the rest of the plan was never played (not applicable, not failed)\n", secs(d.Interrupted))
		}
		fmt.Fprintln(w, "bounds judged by:")
		for _, l := range d.Bounds.declaredLines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "checker\tverdict\tsummary")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Checker, verdictWord(r.Verdict), r.Summary)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if r.Verdict == Valid || len(r.Details) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", r.Checker, r.Verdict)
		for i, d := range r.Details {
			if i == summaryDetails {
				fmt.Fprintf(w, "  ... %d more in %s\n", len(r.Details)-i, ReportJSONFile)
				break
			}
			fmt.Fprintf(w, "  - %s\n", d)
		}
	}

	fmt.Fprintln(w)
	if len(rep.Faults) == 0 {
		fmt.Fprintln(w, "faults fired: none")
	} else {
		var parts []string
		for _, f := range sortedKeys(rep.Faults) {
			parts = append(parts, fmt.Sprintf("%s x%d", f, rep.Faults[f]))
		}
		fmt.Fprintf(w, "faults fired: %s\n", strings.Join(parts, ", "))
	}
	if len(rep.NotApplicable) > 0 {
		fmt.Fprintf(w, "faults not applicable to this target: %d\n", len(rep.NotApplicable))
		for i, f := range rep.NotApplicable {
			if i == summaryDetails {
				fmt.Fprintf(w, "  ... %d more in %s\n", len(rep.NotApplicable)-i, ReportJSONFile)
				break
			}
			fmt.Fprintf(w, "  - %s at %s: %s\n", f.Fault, f.At.D(), f.Reason)
		}
	}
	if n := rep.Counts[OpInvoke]; n > 0 {
		fmt.Fprintf(w, "operations: %d invoked, %d ok, %d fail, %d info\n", n, rep.Counts[OpOK], rep.Counts[OpFail], rep.Counts[OpInfo])
	}

	if len(rep.Latency) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "command\tcount\tp50\tp90\tp99\tmax\t")
		for _, cmd := range sortedKeys(rep.Latency) {
			p := rep.Latency[cmd]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", cmd, p.Count, fmtSeconds(p.P50), fmtSeconds(p.P90), fmtSeconds(p.P99), fmtSeconds(p.Max))
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "seed:   %d\n", rep.Seed)
	if rep.Replay != "" {
		fmt.Fprintf(w, "replay: %s\n", rep.Replay)
	}
	if rep.Dir != "" {
		fmt.Fprintf(w, "run folder: %s\n", rep.Dir)
	}
	if d := rep.Data; d != nil && d.TracesFile != "" {
		fmt.Fprintf(w, "traces: %s\n", d.TracesFile)
		if d.TraceURL != "" {
			fmt.Fprintf(w, "jaeger: %s (traces exported as services corral, corral-worker, corral-harness)\n", d.TraceURL)
		}
		if !d.Embedded {
			fmt.Fprintln(w, "        (the --target manager's spans are wherever that server exports them)")
		}
	}
}

// fmtSeconds shows a latency in seconds with a readable unit.
func fmtSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
