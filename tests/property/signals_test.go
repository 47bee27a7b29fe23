package property

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"pgregory.net/rapid"
)

// Actions of the real-process tier: signals to worker processes, as an
// operator or the kernel would send them.

// signal returns the action sending sig to a live pipeline's worker
// process (real-process tier).
func (mc *machine) signal(sig syscall.Signal) func(*rapid.T) {
	return func(t *rapid.T) {
		id, _ := mc.drawLive(t)
		e, ok := mc.entry(id)
		if !ok || e.Pid <= 0 || (sig == syscall.SIGSTOP && mc.stopped[e.Pid]) {
			t.Skip("no running worker process for this pipeline")
		}
		mc.volatile(id, sig.String())
		// ESRCH: the worker died since the snapshot (its health ended
		// it); the exit watcher takes it out of the table.
		if err := syscall.Kill(e.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			fatalf(t, "%v to %s (pid %d): %v", sig, id, e.Pid, err)
		}
		switch sig {
		case syscall.SIGSTOP:
			mc.stopped[e.Pid] = true
		case syscall.SIGKILL:
			delete(mc.stopped, e.Pid)
			mc.waitGone(t, id, fmt.Sprintf("worker pid %d killed", e.Pid))
		}
	}
}

// sigcont resumes a stopped worker that is still in the table.
func (mc *machine) sigcont(t *rapid.T) {
	present := map[int]bool{}
	for _, p := range mc.m.Snapshot().Pipelines {
		present[p.Pid] = true
	}
	var pids []int
	for pid := range mc.stopped {
		if present[pid] {
			pids = append(pids, pid)
		} else {
			delete(mc.stopped, pid) // reaped: the pid is not ours any more
		}
	}
	if len(pids) == 0 {
		t.Skip("no stopped worker")
	}
	slices.Sort(pids)
	pid := rapid.SampledFrom(pids).Draw(t, "stopped_pid")
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		fatalf(t, "SIGCONT to pid %d: %v", pid, err)
	}
	delete(mc.stopped, pid)
}
