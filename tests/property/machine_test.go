package property

import (
	"context"
	"os"
	"slices"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// realSlack is added to every bound the manager documents in the real-time
// tiers: scheduling noise under -race on 2 cores, not a tolerance for the
// manager's own waits. In virtual time the slack is one nanosecond: an
// answer at the very instant of its bound is within it, and nothing later.
const (
	realSlack    = time.Second
	virtualSlack = time.Nanosecond
)

// tier is one way of running the machine.
type tier struct {
	cfg       manager.Config
	maxLive   int  // init is skipped beyond this many pipelines
	processes bool // real worker processes instead of in-memory ones
	// strictHealth requires consecutive_failures >= MaxHealthFailures to
	// imply marked_for_removal at every instant, checked from inside the
	// event hook at the probe that reaches the maximum. Without it, such an
	// entry must be marked (or gone) within a bound.
	strictHealth bool
	// concurrentInits adds the init_concurrent action, and a hook that is
	// slow (as a logging or exporting hook can be) on the event of a newly
	// started worker, which widens the window of the race it finds.
	concurrentInits bool
	// virtual runs the machine inside a synctest bubble (virtual_test.go):
	// bounds are exact, a command to a steady pipeline answers at the
	// instant it is sent, and the extra actions of virtualActions run.
	virtual bool
	// Planted bugs (planted_test.go): configure changes the manager's
	// configuration only (the machine keeps checking the declared one),
	// middleware wraps its Handler (built per check: in the virtual tier
	// its channels must belong to the bubble), wrap wraps its launcher.
	configure  func(*manager.Config)
	middleware func() []manager.Middleware
	wrap       func(launch.Launcher) launch.Launcher
}

// pipe is the model of one pipeline a client created.
type pipe struct {
	muted bool
	// mutedUnsure: a mute or resume had an unknown outcome (it timed
	// out, and may still have taken effect), so muted is not known until
	// the next mute or resume answers.
	mutedUnsure bool
	// volatile says why the pipeline may leave the table by itself (a
	// fault, a SIGSTOP, an unknown outcome); "" means it must stay until
	// terminated.
	volatile string
	// slowProbe: a slow_probe fault below the probe deadline is armed, so
	// its status commands take that long (virtual tier).
	slowProbe bool
	// ignoreTerm: an ignore_sigterm fault is armed, so terminate takes the
	// grace period (virtual tier).
	ignoreTerm bool
}

// machine is one rapid check: a manager, its event recorder, and the model.
type machine struct {
	tier  tier
	cfg   manager.Config
	m     *manager.Manager
	h     manager.Handler
	ev    *recorder
	lat   *latencies
	procs *launch.Processes // real-process tier only
	mem   *launch.Memory    // in-memory tiers: closed at the end whatever the manager did
	slack time.Duration
	vt    *virtualState // virtual tier only
	null  *os.File      // workers' stderr, real-process tier only

	live map[string]*pipe
	gone map[string]string // id -> how it left the table; ids never come back
	rank map[string]int    // id -> order of first sight, for orderedKeys

	stopped                 map[int]bool // SIGSTOPped worker pids
	lastStale, lastTimeouts int64
	unknowns                *int // outcomes that were timeouts, across checks
}

// slowOnSpawn is an event hook that takes 5ms over the event of a newly
// started worker (a slow exporter or a blocked log writer would).
func slowOnSpawn(e manager.Event) {
	if e, ok := e.(manager.PipelineStateChanged); ok && e.From == "" && e.To == protocol.StateIdle {
		time.Sleep(5 * time.Millisecond) // the observer's own cost, not synchronisation
	}
}

// handleBound bounds every Handle call: the longest documented wait
// (terminate of a worker that ignores SIGTERM: grace, then SIGKILL and the
// join) plus a command's queue timeout and slack.
func (mc *machine) handleBound() time.Duration {
	return mc.cfg.QueueTimeout + mc.cfg.TerminationGracePeriod + mc.cfg.ProcessJoinTimeout + mc.slack
}

func (mc *machine) shutdownBound() time.Duration {
	return mc.cfg.TerminationGracePeriod + mc.cfg.ProcessJoinTimeout + mc.slack
}

// poolBound bounds the refill of the warm pool: one start per slot.
func (mc *machine) poolBound() time.Duration {
	return time.Duration(mc.cfg.PreloadedProcesses+1)*mc.cfg.QueueTimeout + mc.slack
}

func newMachine(t *rapid.T, tr tier, lat *latencies, unknowns *int) *machine {
	cfg := tr.cfg
	cfg.PreloadedProcesses = rapid.IntRange(0, 2).Draw(t, "preloaded_processes")
	mc := &machine{
		tier: tr, cfg: cfg, ev: newRecorder(), lat: lat, unknowns: unknowns,
		live: map[string]*pipe{}, gone: map[string]string{}, stopped: map[int]bool{},
		rank:  map[string]int{},
		slack: realSlack,
	}
	if tr.virtual {
		mc.slack = virtualSlack
	}
	var l launch.Launcher
	if tr.processes {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			fatal(t, err)
		}
		mc.null = null
		procs, err := launch.NewProcesses(launch.ProcessConfig{
			Command: []string{os.Args[0]},
			// Race-enabled workers would otherwise sleep a second on exit.
			Env:       []string{"GORACE=atexit_sleep_ms=0"},
			Stderr:    null,
			Subreaper: true,
		})
		if err != nil {
			null.Close()
			fatal(t, err)
		}
		mc.procs, l = procs, procs
	} else {
		mc.mem = launch.NewMemory(launch.MemoryConfig{})
		l = mc.mem
	}
	if tr.virtual {
		mc.vt = newVirtualState()
		l = &countingLauncher{Launcher: l, vt: mc.vt}
	}
	if tr.wrap != nil {
		l = tr.wrap(l)
	}
	hook := mc.ev.hook
	if tr.concurrentInits {
		hook = manager.Hooks(slowOnSpawn, hook)
	}
	mcfg := cfg
	if tr.configure != nil {
		tr.configure(&mcfg)
	}
	m, err := manager.New(mcfg, manager.Options{Launcher: l, Hook: hook})
	if err != nil {
		_ = l.Close()
		mc.closeMemory()
		fatal(t, err)
	}
	var mws []manager.Middleware
	if tr.middleware != nil {
		mws = tr.middleware()
	}
	mc.m, mc.h = m, manager.Chain(m, append(mws, manager.Recover(nil))...)
	mc.ev.maxFailures = cfg.MaxHealthFailures
	if tr.strictHealth {
		mc.ev.mu.Lock()
		mc.ev.strict = m.Snapshot
		mc.ev.mu.Unlock()
	}
	return mc
}

// do sends one request and checks that it returned within its bound and
// that the response matches the request.
func (mc *machine) do(t *rapid.T, typ, id string, fields map[string]any) protocol.Response {
	t.Helper()
	req, err := request(typ, id, fields)
	if err != nil {
		fatalf(t, "build %s request: %v", typ, err)
	}
	steady := mc.steady(id)
	resp, took, err := call(mc.h, req, mc.handleBound(), mc.lat)
	if err != nil {
		fatal(t, err)
	}
	if err := shapeError(req, resp); err != nil {
		fatal(t, err)
	}
	if mc.vt != nil && protocol.ForwardedToWorker(typ) && typ != protocol.TypeTerminate && took > mc.cfg.QueueTimeout {
		// QueueTimeout is the ceiling of a forwarded command's deadline,
		// the wait for the worker's slot included (manager/channel.go).
		fatalf(t, "%s on %q answered after %s of virtual time, past the ceiling of its deadline %s (STREAM_MANAGER_QUEUE_TIMEOUT)%s",
			typ, id, took, mc.cfg.QueueTimeout, mc.ev.history(id))
	}
	if mc.vt != nil && steady && took != 0 {
		fatalf(t, "%s on steady pipeline %q answered after %s of virtual time; a steady worker answers at once and nothing else (a probe, another pipeline) may hold it%s",
			typ, id, took, mc.ev.history(id))
	}
	return resp
}

// volatile marks id as one that may leave the table by itself.
func (mc *machine) volatile(id, why string) {
	if p, ok := mc.live[id]; ok && p.volatile == "" {
		p.volatile = why
	}
}

// unknown records an outcome the client cannot know (a timeout): the
// command may or may not have happened, and the timeout counts against
// the pipeline's health.
func (mc *machine) unknown(t *rapid.T, id, what string) {
	*mc.unknowns++
	t.Logf("unknown outcome: %s on %s timed out", what, id)
	mc.volatile(id, what+" timed out")
}

// left moves id from the live set to the gone set.
func (mc *machine) left(id, how string) {
	delete(mc.live, id)
	if _, ok := mc.gone[id]; !ok {
		mc.gone[id] = how
	}
}

func (mc *machine) entry(id string) (protocol.PipelineInfo, bool) {
	for _, p := range mc.m.Snapshot().Pipelines {
		if p.PipelineID == id {
			return p, true
		}
	}
	return protocol.PipelineInfo{}, false
}

// mayLeave reports why the live pipeline id may have left the table by
// itself, or "" if it must not have.
func (mc *machine) mayLeave(id string) string {
	if p := mc.live[id]; p != nil && p.volatile != "" {
		return p.volatile
	}
	if why, ok := mc.ev.trouble(id); ok {
		return why
	}
	return ""
}

// answerLive checks the answer to a command (not init, not terminate) sent
// to a pipeline of the live set; it returns whether the command succeeded.
// A healthy pipeline must succeed; a timeout is an unknown outcome; a
// pipeline that had trouble may be being terminated or gone.
func (mc *machine) answerLive(t *rapid.T, typ, id string, r protocol.Response) bool {
	t.Helper()
	// Upstream's state rule (issue 10): mute only while running, resume
	// only while muted; otherwise StreamOperationNotAllowedError.
	// After an unknown outcome (a timed-out mute or resume may have
	// happened) the model does not know the state: the rule is not judged.
	if p := mc.live[id]; p != nil && p.volatile == "" && (typ == protocol.TypeMute || typ == protocol.TypeResume) {
		refused := typ == protocol.TypeMute && p.muted || typ == protocol.TypeResume && !p.muted
		switch {
		case isTimeout(r):
			p.mutedUnsure = true
		case r.ErrorClass == protocol.ClassNotAllowed:
			if !refused && !p.mutedUnsure {
				fatalf(t, "%s on %s (muted %v): %s, want success", typ, id, p.muted, describe(r))
			}
			// The refusal tells the state: mute is refused while
			// muted, resume while running.
			p.muted, p.mutedUnsure = typ == protocol.TypeMute, false
			return false
		case refused && r.OK() && !p.mutedUnsure:
			fatalf(t, "%s on %s (muted %v) succeeded; upstream's stream refuses it", typ, id, p.muted)
		case r.OK():
			p.mutedUnsure = false
		}
	}
	switch {
	case r.OK():
		return true
	case isTimeout(r):
		mc.unknown(t, id, typ)
	case isType(r, protocol.ErrTypeNotFound):
		if why := mc.mayLeave(id); why == "" {
			fatalf(t, "%s on healthy pipeline %s: not_found%s", typ, id, mc.ev.history(id))
		}
		if _, ok := mc.entry(id); ok {
			fatalf(t, "%s on %s answered not_found but it is in the table", typ, id)
		}
		mc.left(id, "left by itself")
	case isType(r, protocol.ErrTypeOperation):
		if why := mc.mayLeave(id); why == "" {
			fatalf(t, "%s on healthy pipeline %s: %s%s", typ, id, describe(r), mc.ev.history(id))
		}
	default:
		fatalf(t, "%s on %s: %s", typ, id, describe(r))
	}
	return false
}

// waitGone waits, bounded, for id to leave the table (after a crash or a
// kill, which the manager learns from the process exit at once).
func (mc *machine) waitGone(t *rapid.T, id, what string) {
	t.Helper()
	_, ok := mc.ev.waitFor(mc.cfg.TerminationGracePeriod+mc.cfg.ProcessJoinTimeout+mc.slack, func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	})
	if !ok {
		fatalf(t, "%s: no worker_exit for %s within its bound%s", what, id, mc.ev.history(id))
	}
	if p, ok := mc.entry(id); ok {
		fatalf(t, "%s: %s still in the table after its worker_exit: %+v", what, id, p)
	}
	mc.left(id, what)
}

// check is the invariant, run before the first action and after each one.
func (mc *machine) check(t *rapid.T) {
	t.Helper()
	if mc.vt != nil {
		mc.checkVirtual(t)
	}
	snap := mc.m.Snapshot()
	if snap.ShuttingDown {
		fatal(t, "snapshot says shutting down before Shutdown")
	}
	if v := mc.ev.strictViolation(); v != "" {
		fatal(t, v)
	}
	if snap.StaleResponses < mc.lastStale || snap.Timeouts < mc.lastTimeouts {
		fatalf(t, "counters went back: stale %d -> %d, timeouts %d -> %d",
			mc.lastStale, snap.StaleResponses, mc.lastTimeouts, snap.Timeouts)
	}
	mc.lastStale, mc.lastTimeouts = snap.StaleResponses, snap.Timeouts
	in := map[string]protocol.PipelineInfo{}
	idle := 0
	for _, p := range snap.Pipelines {
		in[p.PipelineID] = p
		mc.checkEntry(t, p)
		if p.Idle {
			idle++
		}
	}
	if idle > mc.cfg.PreloadedProcesses {
		fatalf(t, "%d idle workers, more than PreloadedProcesses=%d: %+v", idle, mc.cfg.PreloadedProcesses, snap.Pipelines)
	}
	for _, id := range orderedKeys(mc, mc.live) {
		p, model := in[id], mc.live[id]
		_, present := in[id]
		switch why := mc.mayLeave(id); {
		case !present && why == "":
			fatalf(t, "healthy pipeline %s left the table by itself%s", id, mc.ev.history(id))
		case !present:
			t.Logf("%s left the table by itself (%s)", id, why)
			mc.left(id, "left by itself: "+why)
		case p.Idle:
			fatalf(t, "pipeline %s went back to the idle pool: %+v", id, p)
		case why != "":
			mc.volatile(id, why)
		case p.MarkedForRemoval:
			fatalf(t, "healthy pipeline %s is marked for removal: %+v%s", id, p, mc.ev.history(id))
		case model.muted && p.State != protocol.StatePaused, !model.muted && p.State != protocol.StateRunning:
			fatalf(t, "pipeline %s: state %s, but muted=%v", id, p.State, model.muted)
		}
	}
	mc.waitPool(t)
}

// checkEntry checks one table entry on its own.
func (mc *machine) checkEntry(t *rapid.T, p protocol.PipelineInfo) {
	t.Helper()
	if how, ok := mc.gone[p.PipelineID]; ok {
		fatalf(t, "pipeline %s is in the table again after it left (%s): %+v", p.PipelineID, how, p)
	}
	if !p.Idle {
		if _, ok := mc.live[p.PipelineID]; !ok {
			fatalf(t, "pipeline %s in the table was never returned by init: %+v", p.PipelineID, p)
		}
	}
	if p.Idle && (p.State != protocol.StateIdle || p.MarkedForRemoval) {
		fatalf(t, "idle worker %s: state %s, marked %v", p.PipelineID, p.State, p.MarkedForRemoval)
	}
	h := p.Health
	if h.ProbeInterval <= 0 || h.ProbeTimeout <= 0 {
		fatalf(t, "pipeline %s has no health record: %+v", p.PipelineID, h)
	}
	if h.ConsecutiveFailures >= mc.cfg.MaxHealthFailures && !p.MarkedForRemoval {
		// The manager records the failure and marks the pipeline under
		// two separate locks (see the report of TestHealthRecordMatchesRemoval):
		// here, only require the mark to follow within a bound.
		mc.lat.count("seen: failures at max, not yet marked")
		_, ok := mc.ev.waitFor(mc.handleBound(), func(e manager.Event) bool {
			switch e := e.(type) {
			case manager.PipelineStateChanged:
				return e.PipelineID == p.PipelineID && e.To == protocol.StateTerminating
			case manager.WorkerExited:
				return e.PipelineID == p.PipelineID
			}
			return false
		})
		if !ok {
			fatalf(t, "pipeline %s: %d consecutive failures (max %d) and not marked for removal within %s: %+v%s",
				p.PipelineID, h.ConsecutiveFailures, mc.cfg.MaxHealthFailures, mc.handleBound(), p, mc.ev.history(p.PipelineID))
		}
	}
	if mc.tier.processes && (p.Pid <= 0 || p.Pgid != p.Pid) {
		fatalf(t, "pipeline %s: pid %d, pgid %d: want its own process group", p.PipelineID, p.Pid, p.Pgid)
	}
}

// waitPool waits, bounded, until the warm pool holds PreloadedProcesses
// idle workers. No event says "refilled", so it re-reads the snapshot at
// each event.
func (mc *machine) waitPool(t *rapid.T) {
	t.Helper()
	deadline := time.NewTimer(mc.poolBound())
	defer deadline.Stop()
	for {
		changed := mc.ev.changed()
		n := 0
		for _, p := range mc.m.Snapshot().Pipelines {
			if p.Idle && !p.MarkedForRemoval {
				n++
			}
		}
		if n == mc.cfg.PreloadedProcesses {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			fatalf(t, "warm pool holds %d idle workers, not %d, after %s", n, mc.cfg.PreloadedProcesses, mc.poolBound())
		}
	}
}

// finish shuts the manager down and checks the end state: Shutdown within
// its bound and without error, an empty table, nothing answered after, and
// (real processes) no process left carrying the launcher's marker.
func (mc *machine) finish(t *rapid.T) {
	t.Helper()
	defer mc.closeNull()
	defer mc.closeMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 2*mc.shutdownBound())
	defer cancel()
	start := time.Now()
	err := mc.m.Shutdown(ctx)
	took := time.Since(start)
	mc.lat.record("shutdown", took)
	if err != nil {
		fatalf(t, "Shutdown: %v", err)
	}
	if took > mc.shutdownBound() {
		fatalf(t, "Shutdown took %s, bound %s", took, mc.shutdownBound())
	}
	snap := mc.m.Snapshot()
	if len(snap.Pipelines) != 0 || !snap.ShuttingDown {
		fatalf(t, "after Shutdown: shutting_down=%v, table %+v", snap.ShuttingDown, snap.Pipelines)
	}
	if r := mc.do(t, protocol.TypeInit, "", initFields(validRefs[0])); !isType(r, protocol.ErrTypeOperation) {
		fatalf(t, "init after Shutdown: %s", describe(r))
	}
	for _, id := range orderedKeys(mc, mc.live) {
		if r := mc.do(t, protocol.TypeStatus, id, nil); !isType(r, protocol.ErrTypeNotFound) {
			fatalf(t, "status of %s after Shutdown: %s", id, describe(r))
		}
	}
	if mc.procs != nil {
		mc.census(t)
	}
	if mc.vt != nil {
		mc.finishVirtual(t)
	}
}

// census polls, bounded, until no process carries the launcher's marker:
// there is no signal for the death of a process that is not our child.
func (mc *machine) census(t *rapid.T) {
	t.Helper()
	deadline := time.Now().Add(mc.shutdownBound())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := launch.Census(mc.procs.Marker())
		if err != nil {
			fatalf(t, "census: %v", err)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			fatalf(t, "processes left after Shutdown: %+v", left)
		}
		<-tick.C
	}
}

// abort shuts down after a failed check, best effort and bounded, so that
// the next check and goleak start clean.
func (mc *machine) abort() {
	defer mc.closeNull()
	defer mc.closeMemory()
	ctx, cancel := context.WithTimeout(context.Background(), mc.shutdownBound())
	defer cancel()
	_ = mc.m.Shutdown(ctx) // the check has already failed; its own message says why
}

// closeMemory closes the in-memory launcher: the manager's Shutdown does,
// but a planted manager may not reach it, and no worker loop may outlive
// the check (or the synctest bubble).
func (mc *machine) closeMemory() {
	if mc.mem != nil {
		_ = mc.mem.Close()
	}
}

func (mc *machine) closeNull() {
	if mc.null != nil {
		_ = mc.null.Close()
		mc.null = nil
	}
}

// orderedKeys returns m's pipeline ids in the order the machine first saw
// them (init's answers), not sorted: ids are random UUIDs, and a draw
// from a sorted list would pick a different pipeline each time a case is
// replayed, which defeats shrinking.
func orderedKeys[V any](mc *machine, m map[string]V) []string {
	ids := sortedKeys(m)
	for _, id := range ids {
		if _, ok := mc.rank[id]; !ok {
			mc.rank[id] = len(mc.rank)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return mc.rank[a] - mc.rank[b] })
	return ids
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
