package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/corral-dev/corral/manager/launch"
)

// ErrNotApplicable marks a fault that cannot be aimed at this target (its
// pipeline's worker is unknown or gone, or the pipeline was removed): the
// nemesis records it as not applicable, never as fired or failed.
var ErrNotApplicable = errors.New("not applicable")

// procKey names one process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

func keyOf(p launch.ProcInfo) procKey { return procKey{p.Pid, p.Start} }

// initWindow is one init as the census saw it: the worker processes that
// appeared between its invoke and its answer.
type initWindow struct {
	op         int    // the init's invoke index
	id         string // the id the answer named ("" if none)
	outcome    string // ok, fail or info
	candidates []launch.ProcInfo
	resolved   bool
}

// workerRecord is one pipeline's worker, found by the census.
type workerRecord struct {
	proc launch.ProcInfo
	how  string
}

// workerMap maps pipeline ids to worker processes for targets whose
// manager does not say which process runs which pipeline (no inspect):
// the worker of a pipeline is the process that appeared in the manager's
// tree between its init's invoke and its answer. Overlapping inits are
// told apart by elimination (a process already attributed to one init is
// no candidate of another); what stays ambiguous is never guessed. Safe
// for concurrent use.
type workerMap struct {
	mu        sync.Mutex
	byID      map[string]workerRecord
	claimed   map[procKey]string // process -> the id (or "init op N") it belongs to
	open      []*initWindow      // windows not yet resolved to one process
	ambiguous map[string]string  // id -> why its worker is unknown
}

func newWorkerMap() *workerMap {
	return &workerMap{byID: map[string]workerRecord{}, claimed: map[procKey]string{}, ambiguous: map[string]string{}}
}

// observeInit records one init: before and after are the worker census
// around it (taken just before the invoke and just after the answer).
// Processes already attributed are no candidates. Two new processes of
// which one spawned the other (a fork server and its worker, or a worker
// and its helper) stay ambiguous: the tree does not say which runs the
// pipeline.
func (m *workerMap) observeInit(op int, outcome, id string, before, after []launch.ProcInfo) {
	old := map[procKey]bool{}
	for _, p := range before {
		old[keyOf(p)] = true
	}
	var fresh []launch.ProcInfo
	for _, p := range after {
		if !old[keyOf(p)] && !p.Zombie() {
			fresh = append(fresh, p)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh = slices.DeleteFunc(fresh, func(p launch.ProcInfo) bool { _, ok := m.claimed[keyOf(p)]; return ok })
	m.open = append(m.open, &initWindow{op: op, id: id, outcome: outcome, candidates: fresh})
	m.resolve()
}

// resolve attributes every window with exactly one candidate, removes
// that process from the other windows, and repeats until nothing
// changes. Must hold mu.
func (m *workerMap) resolve() {
	for changed := true; changed; {
		changed = false
		for _, w := range m.open {
			if len(w.candidates) != 1 {
				continue
			}
			p := w.candidates[0]
			w.candidates, w.resolved, changed = nil, true, true
			owner := w.id
			if owner == "" {
				owner = fmt.Sprintf("init op %d (no id in its answer)", w.op)
			}
			m.claimed[keyOf(p)] = owner
			if w.id != "" {
				m.byID[w.id] = workerRecord{proc: p, how: fmt.Sprintf(
					"census: pid %d appeared in the manager's tree during init op %d (%s)", p.Pid, w.op, w.outcome)}
				delete(m.ambiguous, w.id)
			}
			for _, o := range m.open {
				o.candidates = slices.DeleteFunc(o.candidates, func(q launch.ProcInfo) bool { return keyOf(q) == keyOf(p) })
			}
		}
	}
	keep := m.open[:0]
	for _, w := range m.open {
		switch {
		case w.resolved:
		case len(w.candidates) == 0:
			if w.id != "" {
				m.ambiguous[w.id] = fmt.Sprintf("no new process appeared in the manager's tree during init op %d", w.op)
			}
		default:
			if w.id != "" {
				pids := make([]string, len(w.candidates))
				for i, p := range w.candidates {
					pids[i] = fmt.Sprint(p.Pid)
				}
				m.ambiguous[w.id] = fmt.Sprintf("%d processes appeared during init op %d (pids %s) and overlapping inits did not tell them apart",
					len(w.candidates), w.op, strings.Join(pids, ", "))
			}
			keep = append(keep, w)
		}
	}
	m.open = keep
}

// find returns id's worker, confirmed alive with the start time it had
// when it was attributed. Errors wrap ErrNotApplicable and say why.
func (m *workerMap) find(id string) (launch.ProcInfo, string, error) {
	m.mu.Lock()
	rec, ok := m.byID[id]
	why := m.ambiguous[id]
	m.mu.Unlock()
	if !ok {
		if why == "" {
			why = "no init of it was seen by the census"
		}
		return launch.ProcInfo{}, "", fmt.Errorf("%w: the worker of pipeline %s is unknown: %s", ErrNotApplicable, id, why)
	}
	now, err := launch.Stat(rec.proc.Pid)
	switch {
	case err != nil || now.Zombie():
		return launch.ProcInfo{}, "", fmt.Errorf("%w: the worker of pipeline %s (pid %d) has exited", ErrNotApplicable, id, rec.proc.Pid)
	case now.Start != rec.proc.Start:
		return launch.ProcInfo{}, "", fmt.Errorf("%w: pid %d of pipeline %s was reused by another process (start time %d, was %d)",
			ErrNotApplicable, rec.proc.Pid, id, now.Start, rec.proc.Start)
	}
	return now, rec.how + "; start time confirmed", nil
}

// pids returns the worker pid of every pipeline whose worker was found.
func (m *workerMap) pids() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.byID))
	for id, rec := range m.byID {
		out[id] = rec.proc.Pid
	}
	return out
}

// findWorker is chaos.Target.FindWorker over the map.
func (m *workerMap) findWorker(_ context.Context, id string) (int, int, string, error) {
	p, how, err := m.find(id)
	if err != nil {
		return 0, 0, "", err
	}
	return p.Pid, p.Pgid, how, nil
}

// workerCensus lists the processes that may be workers of the external
// manager: its live children, or with descendants every process below it.
func workerCensus(managerPid int, descendantsToo bool) []launch.ProcInfo {
	if managerPid <= 0 {
		return nil
	}
	all, _ := launch.Scan(nil)
	var out []launch.ProcInfo
	if descendantsToo {
		out = descendants(all, managerPid)
	} else {
		for _, p := range all {
			if p.PPid == managerPid {
				out = append(out, p)
			}
		}
	}
	return slices.DeleteFunc(out, func(p launch.ProcInfo) bool { return p.Zombie() })
}
