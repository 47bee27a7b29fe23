package scenarios

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// PhaseFinal is the census phase taken after the manager's shutdown.
const PhaseFinal = "final"

// KillBound is how soon every worker must be gone after the manager is
// SIGKILLed (parent-death signal and process groups; Epsilon on top).
const KillBound = time.Second

func describeProc(p launch.ProcInfo) string {
	return fmt.Sprintf("pid %d (%s) ppid %d pgid %d state %s", p.Pid, p.Comm, p.PPid, p.Pgid, p.State)
}

// checkNoLeakedProcesses: no worker outlives its pipeline, and nothing is
// left after shutdown.
//   - During the run, every census sample: a worker process (or a member of
//     its process group) whose pipeline has left the manager's table must be
//     gone within KillBound + epsilon of the first inspect sample without
//     it (the manager removes an entry once its worker is reaped, or after
//     the join timeout when it would not die: then it is a leak).
//   - At a SIGTERM shutdown, the census taken when the manager closes its
//     launcher (PhaseSweep) holds no live process: what is alive there was
//     left by the manager's own stop sequence and is killed only by the
//     launcher's last-resort cleanup, which hides the leak.
//   - The census taken after shutdown holds no process, live or zombie.
func checkNoLeakedProcesses(d *RunData) Result {
	inRun := runLeaks(d)
	swept := sweptProcs(d)
	final := finalLeaks(d)
	if len(inRun)+len(swept) == 0 {
		return final
	}
	details := append(append(inRun, swept...), final.Details...)
	summary := fmt.Sprintf("%d workers outlived their pipeline during the run, %d left for the launcher's last-resort cleanup",
		len(inRun), len(swept))
	if final.Verdict != Valid {
		summary += "; " + final.Summary
	}
	return Result{Verdict: Invalid, Summary: summary, Details: capDetails(details)}
}

// PhaseSweep is the census taken when the manager closes its launcher,
// just before the launcher's last-resort cleanup (embedded manager only).
const PhaseSweep = "sweep"

// sweptProcs lists the live processes of the sweep census of a SIGTERM
// shutdown (a SIGKILL leaves everything to that cleanup by design).
func sweptProcs(d *RunData) []string {
	if d.Shutdown.Signal != "SIGTERM" {
		return nil
	}
	var out []string
	for _, s := range d.Census {
		if s.Phase != PhaseSweep {
			continue
		}
		for _, p := range s.Procs {
			if !p.Zombie() {
				out = append(out, fmt.Sprintf("census at %s: %s was still alive when the manager closed its launcher: swept by the launcher's last-resort cleanup, not stopped by the manager",
					secs(s.Time), describeProc(p)))
			}
		}
	}
	return out
}

// runLeaks applies the in-run rule of checkNoLeakedProcesses.
func runLeaks(d *RunData) []string {
	bound := int64(KillBound + d.Bounds.Epsilon)
	// For each worker pid and group: the pipeline, and when it was last
	// seen in the table (an inspect index).
	type owner struct {
		id   string
		last int
	}
	byPid, byPgid := map[int]owner{}, map[int]owner{}
	// gone returns when the table stopped showing o: the time of the first
	// inspect sample after o.last, if it is at or before t (else -1).
	gone := func(o owner, t int64) int64 {
		if o.last+1 < len(d.Inspects) && d.Inspects[o.last+1].Time <= t {
			return d.Inspects[o.last+1].Time
		}
		return -1
	}
	var out []string
	reported := map[int]bool{}
	// born[pid] is the start time of the process seen with that pid while
	// its pipeline was in the table: a pid reused later is another process.
	born := map[int]uint64{}
	next := 0 // inspect samples taken so far
	for _, s := range d.Census {
		if s.Phase == PhaseFinal {
			continue // judged by finalLeaks
		}
		for next < len(d.Inspects) && d.Inspects[next].Time <= s.Time {
			for _, p := range d.Inspects[next].Pipelines {
				if p.Pid > 0 {
					byPid[p.Pid] = owner{p.PipelineID, next}
				}
				// Only a group the worker leads is its own: a foreign
				// manager's workers may share the manager's group.
				if p.Pgid > 1 && p.Pgid == p.Pid {
					byPgid[p.Pgid] = owner{p.PipelineID, next}
				}
			}
			next++
		}
		for _, p := range s.Procs {
			if p.Zombie() || reported[p.Pid] {
				continue
			}
			o, ok := byPid[p.Pid]
			what := "worker"
			if !ok {
				if o, ok = byPgid[p.Pgid]; !ok {
					continue // never a worker the table showed, nor in one's group
				}
				what = "member of the process group of the worker"
			}
			left := gone(o, s.Time)
			if left < 0 {
				born[p.Pid] = p.Start
				continue
			}
			if start, seen := born[p.Pid]; !seen || start != p.Start {
				continue // not seen alive while its pipeline was listed
			}
			if s.Time > left+bound {
				reported[p.Pid] = true
				out = append(out, fmt.Sprintf("census at %s: %s, %s of pipeline %s, alive %v after the pipeline left the table (inspect at %s; bound %v)",
					secs(s.Time), describeProc(p), what, o.id, time.Duration(s.Time-left).Round(time.Millisecond), secs(left),
					time.Duration(bound)))
			}
		}
	}
	return out
}

// finalLeaks: the census taken after shutdown holds no process, live or
// zombie.
func finalLeaks(d *RunData) Result {
	var final *CensusSample
	for i := range d.Census {
		if d.Census[i].Phase == PhaseFinal {
			final = &d.Census[i]
		}
	}
	if final == nil {
		return Result{Verdict: Unknown, Summary: "no census was taken after shutdown"}
	}
	if why := d.Shutdown.NotDelivered; why != "" {
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("the %s was not delivered (%s): the processes left say nothing about the manager's shutdown", d.Shutdown.Signal, why)}
	}
	var live, zombies []string
	for _, p := range final.Procs {
		if p.Zombie() {
			zombies = append(zombies, "zombie "+describeProc(p)+" was never reaped")
		} else {
			live = append(live, describeProc(p)+" still alive after shutdown")
		}
	}
	if len(live)+len(zombies) == 0 {
		return Result{Verdict: Valid, Summary: fmt.Sprintf("no process left at %s, after shutdown", secs(final.Time))}
	}
	return Result{
		Verdict: Invalid,
		Summary: fmt.Sprintf("%d live and %d zombie processes left after shutdown (census at %s)",
			len(live), len(zombies), secs(final.Time)),
		Details: capDetails(append(live, zombies...)),
	}
}

// checkBoundedShutdown: a SIGTERM ends the manager with exit code 0 within
// grace + join + epsilon and takes every worker with it; after a SIGKILL
// every worker is gone within KillBound + epsilon.
func checkBoundedShutdown(d *RunData) Result {
	sd, b := d.Shutdown, d.Bounds
	if sd.Signal != "" && sd.NotDelivered != "" {
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("the %s was not delivered: %s", sd.Signal, sd.NotDelivered)}
	}
	switch sd.Signal {
	case "":
		return Result{Verdict: Unknown, Summary: "the manager was not shut down in this run"}
	case "SIGTERM":
		bound := b.Grace + b.Join + b.Epsilon
		var details []string
		if sd.Exited == 0 {
			details = append(details, fmt.Sprintf("SIGTERM at %s: the manager never exited", secs(sd.Requested)))
		} else {
			took := time.Duration(sd.Exited - sd.Requested)
			if took > bound {
				details = append(details, fmt.Sprintf("SIGTERM at %s: exited after %v, bound %v (grace %v + join %v + epsilon %v)",
					secs(sd.Requested), took.Round(time.Millisecond), bound, b.Grace, b.Join, b.Epsilon))
			}
			if sd.ExitCode != 0 && !sd.ExitUnknown {
				details = append(details, fmt.Sprintf("exit code %d, want 0", sd.ExitCode))
			}
		}
		details = append(details, workersAfter(d, sd.Requested+int64(bound))...)
		if len(details) > 0 {
			return Result{Verdict: Invalid, Summary: "shutdown after SIGTERM was not bounded", Details: capDetails(details)}
		}
		if sd.Exited == 0 {
			return Result{Verdict: Invalid, Summary: "the manager never exited"}
		}
		status := "exited 0"
		if sd.ExitUnknown {
			status = "exited (exit status unknown: the manager is not the harness's child)"
		}
		return Result{Verdict: Valid, Summary: fmt.Sprintf("SIGTERM: %s after %v (bound %v)", status,
			time.Duration(sd.Exited-sd.Requested).Round(time.Millisecond), bound)}
	case "SIGKILL":
		bound := KillBound + b.Epsilon
		deadline := sd.Requested + int64(bound)
		covered := false
		for _, s := range d.Census {
			if s.Time >= deadline {
				covered = true
			}
		}
		if !covered {
			return Result{Verdict: Unknown, Summary: fmt.Sprintf("no census was taken %v after the SIGKILL", bound)}
		}
		if details := workersAfter(d, deadline); len(details) > 0 {
			return Result{Verdict: Invalid, Summary: fmt.Sprintf("workers outlived the manager's SIGKILL by more than %v", bound),
				Details: capDetails(details)}
		}
		return Result{Verdict: Valid, Summary: fmt.Sprintf("SIGKILL: every worker gone within %v", bound)}
	default:
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("unknown shutdown signal %q", sd.Signal)}
	}
}

// workersAfter lists the live (non-zombie) processes of every census
// sample taken at or after t. Zombies are dead; no_leaked_processes
// reports the unreaped ones.
func workersAfter(d *RunData, t int64) []string {
	var out []string
	for _, s := range d.Census {
		if s.Time < t {
			continue
		}
		for _, p := range s.Procs {
			if !p.Zombie() {
				out = append(out, fmt.Sprintf("census %s at %s: %s still alive", s.Phase, secs(s.Time), describeProc(p)))
			}
		}
	}
	return out
}

// churnWindow bounds how long after a churn cycle its pid is looked for in
// the census: past it, the pid may belong to another process.
const churnWindow = 5 * time.Second

// checkChurnLeavesNothing: a create-and-destroy cycle (Scenario.Churn)
// leaves nothing behind. Once its terminate is answered ok, its pipeline is
// in no later inspect sample (neither in the table, with its health
// record, nor in list_pipelines) from epsilon on, and its worker (any pid
// the table showed for it) is gone from the census from KillBound +
// epsilon on.
func checkChurnLeavesNothing(d *RunData) Result {
	b := d.Bounds
	v := newOpView(d.Ops)
	type cycle struct {
		id   string
		term *Op // the terminate's ok completion
	}
	var cycles []cycle
	var unknown []string
	inits := 0
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !strings.HasPrefix(inv.Process, churnProcess) || inv.F != protocol.TypeTerminate {
			if inv.Type == OpInvoke && strings.HasPrefix(inv.Process, churnProcess) && inv.F == protocol.TypeInit {
				inits++
			}
			continue
		}
		c := v.completion(inv)
		if c == nil || c.Type != OpOK {
			what := "no completion"
			if c != nil {
				what = c.Type + " " + c.Error
			}
			unknown = append(unknown, fmt.Sprintf("%s: terminate not ok (%s): what it leaves cannot be judged", describeOp(inv), what))
			continue
		}
		cycles = append(cycles, cycle{inv.PipelineID, c})
	}
	if inits == 0 {
		return Result{Verdict: Valid, Summary: "no churn in this run"}
	}
	pids := map[string][]int{}
	for _, s := range d.Inspects {
		for _, p := range s.Pipelines {
			if p.Pid > 0 && !slices.Contains(pids[p.PipelineID], p.Pid) {
				pids[p.PipelineID] = append(pids[p.PipelineID], p.Pid)
			}
		}
	}
	var bad []string
	judged := false
	for _, c := range cycles {
		from := c.term.Time + int64(b.Epsilon)
		for si := range d.Inspects {
			s := &d.Inspects[si]
			if s.Time <= from {
				continue
			}
			judged = true
			if e := findEntry(s, c.id); e != nil {
				bad = append(bad, fmt.Sprintf("inspect at %s: pipeline %s (%s) is still in the table %v after its terminate was answered ok (op %d)",
					secs(s.Time), c.id, entryState(e), time.Duration(s.Time-c.term.Time).Round(time.Millisecond), c.term.Index))
				break
			}
			if slices.Contains(s.Listed, c.id) {
				bad = append(bad, fmt.Sprintf("inspect at %s: list_pipelines still shows %s after its terminate was answered ok (op %d)",
					secs(s.Time), c.id, c.term.Index))
				break
			}
		}
		killed := c.term.Time + int64(KillBound+b.Epsilon)
	census:
		for _, s := range d.Census {
			if s.Time <= killed || s.Time > killed+int64(churnWindow) {
				continue
			}
			for _, p := range s.Procs {
				if !p.Zombie() && slices.Contains(pids[c.id], p.Pid) {
					bad = append(bad, fmt.Sprintf("census at %s: %s, the worker of %s, is alive %v after its terminate was answered ok (op %d)",
						secs(s.Time), describeProc(p), c.id, time.Duration(s.Time-c.term.Time).Round(time.Millisecond), c.term.Index))
					break census
				}
			}
		}
	}
	switch {
	case len(bad) > 0:
		return Result{Verdict: Invalid, Summary: fmt.Sprintf("%d of %d destroyed pipelines left something behind", len(bad), len(cycles)),
			Details: capDetails(append(bad, unknown...))}
	case len(unknown) > 0:
		return Result{Verdict: Unknown, Summary: fmt.Sprintf("%d of %d churn cycles could not be judged", len(unknown), inits),
			Details: capDetails(unknown)}
	case len(cycles) > 0 && !judged:
		return Result{Verdict: Unknown, Summary: "no inspect sample was taken after the churn"}
	}
	return Result{Verdict: Valid, Summary: fmt.Sprintf("%d churn cycles (%d created and destroyed) left nothing in the table, the list or the process table",
		inits, len(cycles))}
}
