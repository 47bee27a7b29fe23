package scenarios

import (
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/launch"
)

// PhaseFinal is the census phase taken after the manager's shutdown.
const PhaseFinal = "final"

// KillBound is how soon every worker must be gone after the manager is
// SIGKILLed (parent-death signal and process groups; Epsilon on top).
const KillBound = time.Second

func describeProc(p launch.ProcInfo) string {
	return fmt.Sprintf("pid %d (%s) ppid %d pgid %d state %s", p.Pid, p.Comm, p.PPid, p.Pgid, p.State)
}

// checkNoLeakedProcesses: the census taken after shutdown holds no
// process, live or zombie.
func checkNoLeakedProcesses(d *RunData) Result {
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
