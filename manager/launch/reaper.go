package launch

import (
	"fmt"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// sweepInterval is the reaper's fallback period. A descendant orphaned by a
// double fork reaches us without a SIGCHLD; it must be seen alive (its
// environ is empty once it is a zombie) to be recognised as ours later.
const sweepInterval = time.Second

// setChildSubreaper makes orphaned descendants of this process reparent to
// it instead of init, so the ones that escape a worker can still be reaped.
func setChildSubreaper() error {
	const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("launch: prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return nil
}

// reapLoop sweeps on every SIGCHLD (a worker's exit reparents its children
// here; an escaped descendant's death leaves a zombie here) and every
// sweepInterval. Close does the last sweeps itself once this has returned.
func (p *Processes) reapLoop() {
	defer close(p.reaperDone)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.sigchld:
		case <-tick.C:
		case <-p.stop:
			return
		}
		p.sweep()
	}
}

// sweep makes one pass over /proc. It remembers every live process that
// carries our marker (so its zombie can be recognised later), SIGKILLs
// those that are children of this process but not workers we started
// (escaped descendants), and reaps them with wait4 on their own pid: the
// host may own other children, so wait4(-1) is never used. It returns how
// many marked processes are still in the process table.
func (p *Processes) sweep() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := []byte(protocol.EnvManagerMarker + "=" + p.marker)
	all, err := scanProc(nil, nil)
	if err != nil {
		p.log.Warn("reaper scan failed", "err", err)
	}
	present := make(map[int]bool, len(all))
	for _, info := range all {
		present[info.Pid] = true
		if p.procs[info.Pid] != nil || info.Pid == p.self {
			continue // a worker: its own goroutine reaps it
		}
		if !p.marked[info.Pid] && !info.Zombie() && hasEnv(info.Pid, want) {
			p.marked[info.Pid] = true
		}
		if !p.marked[info.Pid] || info.PPid != p.self {
			// Unknown zombies cannot be told from the host's own
			// children and are left alone; marked processes with
			// another parent reach us when that parent dies.
			continue
		}
		if !info.Zombie() {
			p.log.Info("killing escaped descendant", "pid", info.Pid, "comm", info.Comm)
			_ = syscall.Kill(info.Pid, syscall.SIGKILL)
		}
		var ws syscall.WaitStatus
		if got, _ := syscall.Wait4(info.Pid, &ws, syscall.WNOHANG, nil); got == info.Pid {
			delete(p.marked, info.Pid)
			delete(present, info.Pid)
		}
	}
	if err == nil {
		for pid := range p.marked {
			if !present[pid] {
				delete(p.marked, pid)
			}
		}
	}
	return len(p.marked)
}

// rememberGroup records the marked members of a worker's group before it is
// signalled: they may die and be reparented here in the same instant, and
// a zombie can no longer be recognised by its environment.
func (p *Processes) rememberGroup(pgid int) {
	if p.reaperDone == nil {
		return // not a subreaper: init reaps them
	}
	members, err := p.groups.groupMembers(pgid)
	if err != nil {
		return
	}
	want := []byte(protocol.EnvManagerMarker + "=" + p.marker)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range members {
		if m.Pid != pgid && !m.Zombie() && hasEnv(m.Pid, want) {
			p.marked[m.Pid] = true
		}
	}
}

// drainEscaped sweeps until no marked process is left in the process table
// or the deadline passes. Deaths of our children raise SIGCHLD; the ticker
// covers marked processes still waiting to be reparented here.
func (p *Processes) drainEscaped(deadline <-chan struct{}) []error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.sweep() > 0 {
		select {
		case <-p.sigchld:
		case <-tick.C:
		case <-deadline:
			p.mu.Lock()
			defer p.mu.Unlock()
			var errs []error
			for pid := range p.marked {
				errs = append(errs, fmt.Errorf("launch: descendant %d not reaped", pid))
			}
			return errs
		}
	}
	return nil
}
