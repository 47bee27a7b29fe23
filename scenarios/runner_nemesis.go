package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// Deadlines of the nemesis. Each injection and each heal runs in its own
// goroutine with its own deadline, concurrently with the workload, so a
// frozen target (a serial server waiting forever on a stopped worker)
// cannot make the schedule drift: the next fault, and the shutdown, still
// leave at their planned times.
const (
	// faultDeadline bounds each request a fault sends (inspect, chaos).
	faultDeadline = 5 * time.Second
	// healBound bounds one heal.
	healBound = 5 * time.Second
	// targetWait is how long an injection waits for a lost target
	// pipeline to be re-started before the fault is not applicable.
	targetWait = 3 * time.Second
	// lateSlack: an injection that starts later than this after its slot
	// is recorded as late.
	lateSlack = time.Second
)

// active is an injected fault waiting for its heal.
type active struct {
	e      PlanEntry
	id     string
	inj    chaos.Injection
	healAt time.Duration // from the run's start
}

// runNemesis plays the plan's faults at their planned times, each in its
// own goroutine (inject, wait for its heal time or the heal phase, heal),
// and ends the run with the planned shutdown. Entries the target cannot
// take (PlanEntry.NotApplicable) are skipped; fault_coverage lists them.
//
// A fault planned to last past the shutdown (at + for beyond it) is meant
// to meet it, e.g. ignore_sigterm in shutdown-under-load: it stays
// injected through the heal phase and the shutdown signal, and is healed
// once the shutdown is over. Healing every fault first would make such a
// scenario unable to show what its name says. The other faults are healed
// before the shutdown, waiting at most healBound + faultDeadline for them.
func (r *runner) runNemesis(ctx context.Context, entries []PlanEntry) {
	shutdownAt := time.Duration(-1)
	for _, e := range entries {
		if endsManager(e.F) {
			shutdownAt = e.At.D()
			break
		}
	}
	healPhase, shutdownOver := make(chan struct{}), make(chan struct{})
	var closeHeal, closeOver sync.Once
	var all, beforeShutdown sync.WaitGroup
	defer func() {
		// Whatever ended the run, every fault heals now (heal falls back
		// to a fresh context), and no goroutine outlives the nemesis.
		closeHeal.Do(func() { close(healPhase) })
		closeOver.Do(func() { close(shutdownOver) })
		all.Wait()
	}()
	for _, e := range entries {
		if e.NotApplicable != "" {
			continue
		}
		if r.tl.Heal <= e.At.D() {
			if !r.sleepUntil(ctx, r.tl.Heal) {
				return
			}
			closeHeal.Do(func() { close(healPhase) })
		}
		if !r.sleepUntil(ctx, e.At.D()) {
			return
		}
		if endsManager(e.F) {
			closeHeal.Do(func() { close(healPhase) })
			pending := r.waitHeals(&beforeShutdown, healBound+faultDeadline)
			r.shutdown(ctx, e, pending)
			closeOver.Do(func() { close(shutdownOver) })
			continue
		}
		meets := shutdownAt >= 0 && e.For > 0 && e.At.D()+e.For.D() > shutdownAt
		healNow := (<-chan struct{})(healPhase)
		if meets {
			healNow = shutdownOver
		} else {
			beforeShutdown.Add(1)
		}
		all.Go(func() {
			if !meets {
				defer beforeShutdown.Done()
			}
			a := r.inject(ctx, e)
			if a == nil {
				return
			}
			t := time.NewTimer(time.Until(r.start.Add(a.healAt)))
			defer t.Stop()
			select {
			case <-t.C:
			case <-healNow:
			case <-ctx.Done():
			}
			r.heal(ctx, a)
		})
	}
	if r.sleepUntil(ctx, r.tl.Heal) {
		closeHeal.Do(func() { close(healPhase) })
	}
}

// waitHeals waits up to bound for the faults in wg to be healed; it
// returns false if some were still pending (a frozen target).
func (r *runner) waitHeals(wg *sync.WaitGroup, bound time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends with the faults' own bounded steps
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// endsManager reports whether fault name signals the manager (the run's
// planned shutdown).
func endsManager(name string) bool {
	f, ok := chaos.Lookup(name)
	return ok && f.EndsManager()
}

func (r *runner) chaosTarget() chaos.Target {
	t := chaos.Target{Client: r.faultClient, ManagerPid: r.tgt.managerPid, Signal: r.tgt.signal}
	if r.profile.Workers == WorkersCensus {
		t.FindWorker = r.workers.findWorker
	}
	return t
}

// inject fires one planned fault; it returns the injection to heal later,
// or nil for instant, failed and not applicable ones. A fault whose
// pipeline the manager has already removed (its id left the table and
// was not re-started in time, or the injection was refused and the id is
// no longer listed), or whose worker cannot be told apart, is recorded as
// not applicable: a fail op whose value holds "not_applicable".
func (r *runner) inject(ctx context.Context, e PlanEntry) *active {
	late := r.since() - e.At.D()
	f, known := chaos.Lookup(e.F)
	id, lastID := "", ""
	if known && f.NeedsPipeline() {
		id = r.waitTarget(ctx, e.Target)
		if id == "" {
			lastID = r.ids.lastID(e.Target)
		}
	}
	value := faultValue(e)
	if late > lateSlack {
		value["late_seconds"] = late.Seconds() // a missed slot, recorded
	}
	inv := r.hist.Invoke(Nemesis, e.F, e.Target, id, value)
	fs := r.tr.startFault(ctx, inv)
	complete := func(typ, msg string, v any) *active {
		fs.end(nil, errors.New(msg))
		r.hist.Complete(inv, typ, "", v, msg, fs.traceID())
		return nil
	}
	notApplicable := func(why string) *active {
		return complete(OpFail, "not applicable: "+why, map[string]any{NotApplicableKey: why})
	}
	switch {
	case !known:
		return complete(OpFail, fmt.Sprintf("unknown fault %q", e.F), nil)
	case f.NeedsPipeline() && id == "" && lastID != "":
		return notApplicable(fmt.Sprintf("pipeline #%d's id %s had left the manager's table and was not re-started within %s",
			e.Target, lastID, targetWait))
	case f.NeedsPipeline() && id == "":
		return complete(OpFail, fmt.Sprintf("%s has no live pipeline id (waited %s)", describeTarget(e.Target, ""), targetWait), nil)
	}
	if f.Level() == chaos.LevelProcess && r.profile.Workers == WorkersCensus {
		if _, _, err := r.workers.find(id); err != nil {
			return notApplicable(strings.TrimPrefix(err.Error(), ErrNotApplicable.Error()+": "))
		}
	}
	// Inject's context also owns background work (client faults), so it is
	// the run's, not a per-call one; each fault bounds its own steps (its
	// requests time out after faultDeadline). It carries the fault's span:
	// the commands the fault sends join its trace.
	inj, err := f.Inject(fs.ctx, r.chaosTarget(), chaos.Spec{Fault: e.F, PipelineID: id, Params: e.Params, For: e.For.D()})
	if err != nil {
		if errors.Is(err, ErrNotApplicable) {
			return notApplicable(err.Error())
		}
		if f.InWorker() {
			if by := r.heldBy(id, inv.Index); by != "" {
				return notApplicable(fmt.Sprintf("pipeline %s's worker could not take a command: %s (%v)", id, by, err))
			}
		}
		if id != "" && r.removedByManager(ctx, id) {
			r.ids.markLost(e.Target, id)
			return notApplicable(fmt.Sprintf("pipeline %s was no longer listed by the manager when the fault was injected (%v)", id, err))
		}
		if isTimeout(err) {
			return complete(OpInfo, fmt.Sprintf("missed: the injection was not answered within %s: %v", faultDeadline, err), nil)
		}
		return complete(OpFail, err.Error(), nil)
	}
	obs := inj.Observed()
	fs.end(obs, nil)
	r.hist.Complete(inv, OpOK, "", obs, "", fs.traceID())
	r.faultsFired.Add(1)
	a := &active{e: e, id: id, inj: inj, healAt: r.since() + e.For.D()}
	if e.For > 0 {
		return a
	}
	// Instant: nothing to undo, but the injection may own resources. A
	// client-level fault works in the background and its Observed is only
	// complete after Heal (what the server answered, whether it dropped
	// the connection), so its final observation is recorded as a heal op.
	if f.Level() == chaos.LevelClient {
		r.heal(ctx, a)
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, healBound)
	_ = inj.Heal(hctx)
	cancel()
	return nil
}

// NotApplicableKey marks, in a nemesis op's value, a fault the target
// could not take; its value says why.
const NotApplicableKey = "not_applicable"

// removedByManager asks list_pipelines (bounded) whether id is gone.
func (r *runner) removedByManager(ctx context.Context, id string) bool {
	ids, err := r.faultClient.List(ctx)
	return err == nil && !slices.Contains(ids, id)
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// lastID is logical pipeline k's last id, live or lost ("" if none).
func (p *pipelines) lastID(k int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[k]
}

// heal undoes one fault, recorded as its own operation heal:<fault>.
func (r *runner) heal(ctx context.Context, a *active) {
	if ctx.Err() != nil {
		ctx = context.Background() // a cancelled run still heals
	}
	hctx, cancel := context.WithTimeout(ctx, healBound)
	defer cancel()
	inv := r.hist.Invoke(Nemesis, healPrefix+a.e.F, a.e.Target, a.id, nil)
	fs := r.tr.startFault(hctx, inv)
	err := a.inj.Heal(fs.ctx)
	obs := a.inj.Observed()
	if err != nil && r.managerExited() {
		// A fault that met the shutdown: its worker went with the manager,
		// and the heal could only fail to reach it.
		obs["heal"] = "nothing left to heal: the manager has exited (" + err.Error() + ")"
		err = nil
	}
	if err != nil {
		fs.end(nil, err)
		r.hist.Complete(inv, OpFail, "", nil, err.Error(), fs.traceID())
		return
	}
	fs.end(obs, nil)
	r.hist.Complete(inv, OpOK, "", obs, "", fs.traceID())
}

// managerExited reports whether the manager under test has exited.
func (r *runner) managerExited() bool {
	select {
	case <-r.tgt.exited:
		return true
	default:
		return false
	}
}

// waitTarget returns logical pipeline k's live id, waiting a little for
// the keeper to re-start it if it was lost.
func (r *runner) waitTarget(ctx context.Context, k int) string {
	deadline := time.Now().Add(targetWait)
	for {
		if id, ok := r.ids.get(k); ok {
			return id
		}
		if time.Now().After(deadline) {
			return ""
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// faultValue is a fault invoke's value: its params, duration and the slot
// it was planned at (fault_coverage pairs plan and history by it).
func faultValue(e PlanEntry) map[string]any {
	v := map[string]any{PlannedAtKey: e.At.D().String()}
	if len(e.Params) > 0 {
		v["params"] = e.Params
	}
	if e.For > 0 {
		v["for_seconds"] = e.For.D().Seconds()
	}
	return v
}

// PlannedAtKey holds, in a fault invoke's value, its planned time.
const PlannedAtKey = "planned_at"

// shutdown ends the manager as planned (SIGTERM or SIGKILL, through the
// chaos catalogue's manager-level faults) and waits, bounded, for it to
// exit. pending says some faults were still being healed when it began
// (a frozen target): the shutdown keeps to its slot anyway. A signal that
// could not be delivered is recorded (ShutdownRecord.NotDelivered) so the
// shutdown checkers say unknown instead of "never exited"; an external
// manager's exit status is not visible and is recorded as unknown.
func (r *runner) shutdown(ctx context.Context, e PlanEntry, pending bool) {
	r.setPhase(PhaseShutdown)
	sig := "SIGTERM"
	if e.F == protocol.FaultManagerSigkill {
		sig = "SIGKILL"
	}
	inv := r.hist.Invoke(Nemesis, e.F, 0, "", faultValue(e))
	// The fault's span covers the signal and the wait for the exit.
	fs := r.tr.startFault(ctx, inv)
	fail := func(msg string) {
		fs.end(nil, errors.New(msg))
		r.hist.Complete(inv, OpFail, "", nil, msg, fs.traceID())
	}
	if r.tgt.signal == nil && r.tgt.managerPid <= 0 {
		fail("the manager's pid is unknown (pass --target-pid): it was not shut down")
		return
	}
	requested := time.Now()
	r.mu.Lock()
	r.shutdownRec = ShutdownRecord{Signal: sig, Requested: int64(requested.Sub(r.start))}
	r.mu.Unlock()
	var obs map[string]any
	if f, ok := chaos.Lookup(e.F); ok {
		inj, err := f.Inject(fs.ctx, r.chaosTarget(), chaos.Spec{Fault: e.F, Params: e.Params})
		if err != nil {
			r.mu.Lock()
			r.shutdownRec.NotDelivered = err.Error()
			r.mu.Unlock()
			fail(err.Error())
			return
		}
		obs = inj.Observed()
	} else {
		obs = map[string]any{"signal": sig}
		var err error
		if r.tgt.signal != nil {
			err = r.tgt.signal(sig)
		} else {
			err = signalExternal(r.tgt.managerPid, sig)
		}
		if err != nil {
			r.mu.Lock()
			r.shutdownRec.NotDelivered = err.Error()
			r.mu.Unlock()
			fail(err.Error())
			return
		}
	}
	if pending {
		obs["heals_pending"] = fmt.Sprintf("some faults were still being healed %s after the heal phase began; the shutdown kept to its slot",
			healBound+faultDeadline)
	}
	bound := r.bounds.Grace + r.bounds.Join + r.bounds.Epsilon + 2*time.Second
	if !r.tgt.embedded {
		if waitPidExit(ctx, r.tgt.managerPid, bound) {
			r.tgt.markExited(-1, "external manager: pid gone (its exit status is not visible to the harness: not its child)")
		}
	}
	select {
	case <-r.tgt.exited:
		at, code, note := r.tgt.exit()
		r.mu.Lock()
		r.shutdownRec.Exited = max(int64(at.Sub(r.start)), r.shutdownRec.Requested)
		r.shutdownRec.ExitCode = code
		r.shutdownRec.ExitUnknown = !r.tgt.embedded
		r.mu.Unlock()
		if r.tgt.embedded {
			obs["exit_code"] = code
		} else {
			obs["exit_code"] = "unknown"
		}
		obs["exited_after_seconds"] = at.Sub(requested).Seconds()
		obs["note"] = note
	case <-time.After(time.Until(requested.Add(bound))):
		obs["note"] = fmt.Sprintf("the manager had not exited %s after %s", bound, sig)
	case <-ctx.Done():
		obs["note"] = "the run was cancelled before the manager exited"
	}
	fs.end(obs, nil)
	r.hist.Complete(inv, OpOK, "", obs, "", fs.traceID())
}

// heldBy names an earlier fault that keeps pipeline id's worker from
// taking an in-worker fault's command: one that hangs it and was not yet
// healed, or one that killed or ended it. "" if none. Swarm and weighted
// schedules draw faults independently, so such overlaps are legitimate
// and the later fault is not applicable, not "never fired".
func (r *runner) heldBy(id string, before int) string {
	ops := r.hist.Ops()
	for i := range ops {
		o := &ops[i]
		if o.Index >= before || o.Process != Nemesis || o.Type != OpOK || o.PipelineID != id {
			continue
		}
		f, ok := chaos.Lookup(o.F)
		if !ok || !(f.Hangs() || f.Kills() || f.Exits()) {
			continue
		}
		healed := false
		for j := i + 1; j < len(ops) && ops[j].Index < before; j++ {
			h := &ops[j]
			if h.Process == Nemesis && h.F == healPrefix+o.F && h.PipelineID == id && h.Type == OpOK {
				healed = true
				break
			}
		}
		if !healed || f.Kills() || f.Exits() {
			return fmt.Sprintf("%s (op %d) held it", o.F, o.Index)
		}
	}
	return ""
}
