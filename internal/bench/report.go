package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Target is one goal of issue 13, checked against a run's own floor.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Le    bool    `json:"at_most"` // the value must be <= Limit (else >=)
	Met   bool    `json:"met"`
}

func atMost(name string, v, limit float64) Target {
	return Target{Name: name, Value: v, Limit: limit, Le: true, Met: v <= limit && !math.IsNaN(v)}
}

func atLeast(name string, v, limit float64) Target {
	return Target{Name: name, Value: v, Limit: limit, Met: v >= limit}
}

// targets evaluates r against the goals; every one is a ratio to something
// measured in the same run, or a bound of the manager's own.
func targets(r *Result) []Target {
	var out []Target
	for _, c := range r.List {
		if c.Clients == 1 {
			out = append(out, atMost(fmt.Sprintf("list p50 / floor, 1 client, %d pipelines", c.Pipelines), c.FloorP50, 1.3))
		} else {
			out = append(out, atLeast(fmt.Sprintf("list ops / floor, %d clients, %d pipelines", c.Clients, c.Pipelines), c.FloorOps, 0.7))
		}
	}
	for _, c := range r.Status {
		if c.Clients == 1 {
			var floor1 float64
			for _, f := range r.Floor.Cells {
				if f.Clients == 1 && f.Pipelines == c.Pipelines {
					floor1 = f.P50us
				}
			}
			// Expressed as a ratio: p50 / (floor p50 + 3 pipe round trips) <= 1.
			out = append(out, atMost(fmt.Sprintf("status p50 / (floor + 3 pipe RTT), 1 client, %d pipelines", c.Pipelines),
				c.P50us/(floor1+3*r.Floor.PipeRTTus), 1))
		}
	}
	out = append(out, atLeast("status ops 64 clients / 1 client, one pipeline", r.StatusFanRatio, 5),
		atMost("otel_overhead_ratio", r.OtelOverheadRatio, 1.10),
		atMost("otel_noop_overhead_ratio", r.OtelNoopOverheadRatio, 1.03))
	lo, hi := math.Inf(1), 0.0
	for _, s := range r.ShutdownS {
		lo, hi = min(lo, s), max(hi, s)
	}
	out = append(out, atMost("shutdown_s max / min", hi/lo, 1.5), atMost("shutdown_s max", hi, 2.5),
		atMost("crash_detect_ms_p50", r.CrashDetectMsP50, 50),
		atMost("hang_detect_s / bound", r.HangDetectS/r.HangBoundS, 1),
		atMost("init_warm / init_cold", r.InitWarmMsP50/r.InitColdMsP50, 0.5),
		atMost("worker_rss_mb", r.WorkerRSSMB, 20),
		atMost("probe_cpu_pct", r.ProbeCPUPct, 5))
	return out
}

// PrintTable writes r as the human-readable table.
func PrintTable(w io.Writer, r *Result) {
	fmt.Fprintf(w, "corral bench: %d cores, %s %s, commit %s, load %.1f -> %.1f, %.1fs per cell\n\n",
		r.Machine.Cores, r.Machine.Go, r.Machine.OSArch, r.Commit, r.Machine.Load1, r.Machine.Load1At, r.CellSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tpipelines\tclients\tops/s\tp50 µs\tp99 µs\tp50/floor\tops/floor\terrors\t")
	row := func(what string, c Cell) {
		p := "-"
		if c.Pipelines > 0 {
			p = fmt.Sprint(c.Pipelines)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%d\t\n", what, p, c.Clients, c.OpsPerSec, c.P50us, c.P99us, c.FloorP50, c.FloorOps, c.Errors)
	}
	for i, c := range r.Floor.Cells {
		c.FloorP50, c.FloorOps = 1, 1
		row("floor", c)
		if i < len(r.List) {
			row("list", r.List[i])
		}
		if i < len(r.Status) {
			row("status", r.Status[i])
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\npipe round trip to a child: %.0f µs (median)\n", r.Floor.PipeRTTus)
	fmt.Fprintf(w, "status ops 64 clients / 1 client on one pipeline: %.2f\n", r.StatusFanRatio)
	fmt.Fprintf(w, "otel_overhead_ratio %.3f, otel_noop_overhead_ratio %.3f\n", r.OtelOverheadRatio, r.OtelNoopOverheadRatio)
	fmt.Fprintf(w, "shutdown_s (workers ignore SIGTERM, grace 1s, join 1s): 1: %.2f, 16: %.2f, 64: %.2f\n",
		r.ShutdownS["1"], r.ShutdownS["16"], r.ShutdownS["64"])
	fmt.Fprintf(w, "crash_detect_ms_p50 %.1f; hang_detect_s %.2f (bound %.1f)\n", r.CrashDetectMsP50, r.HangDetectS, r.HangBoundS)
	fmt.Fprintf(w, "init_cold_ms_p50 %.1f, init_warm_ms_p50 %.1f\n", r.InitColdMsP50, r.InitWarmMsP50)
	fmt.Fprintf(w, "with 64 pipelines: manager_rss_mb %.1f, worker_rss_mb %.1f (median), probe_cpu_pct %.2f (probe interval %.0fs)\n\n",
		r.ManagerRSSMB, r.WorkerRSSMB, r.ProbeCPUPct, r.ProbeIntervalS)
	met := 0
	for _, t := range r.Targets {
		mark, op := "met ", ">="
		if !t.Met {
			mark = "MISS"
		} else {
			met++
		}
		if t.Le {
			op = "<="
		}
		fmt.Fprintf(w, "  %s %-58s %8.3f %s %g\n", mark, t.Name, t.Value, op, t.Limit)
	}
	fmt.Fprintf(w, "targets met: %d of %d\n", met, len(r.Targets))
}
