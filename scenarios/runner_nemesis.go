package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// healBound bounds one heal, and targetWait how long the nemesis waits
// for a lost target pipeline to be re-started before giving up on a fault.
const (
	healBound  = 10 * time.Second
	targetWait = 3 * time.Second
)

// active is an injected fault waiting for its heal.
type active struct {
	e      PlanEntry
	id     string
	inj    chaos.Injection
	healAt time.Duration // from the run's start
}

// runNemesis plays the plan's faults at their planned times, heals each
// after its duration, heals everything still active when the heal phase
// begins, and ends the run with the planned shutdown.
//
// A fault planned to last past the shutdown (at + for beyond it) is meant
// to meet it, e.g. ignore_sigterm in shutdown-under-load: it stays
// injected through the heal phase and the shutdown signal, and is healed
// once the shutdown is over. Healing every fault first would make such a
// scenario unable to show what its name says.
func (r *runner) runNemesis(ctx context.Context, entries []PlanEntry) {
	var act []*active
	healedAll := false
	shutdownAt := time.Duration(-1)
	for _, e := range entries {
		if endsManager(e.F) {
			shutdownAt = e.At.D()
			break
		}
	}
	meetsShutdown := func(a *active) bool {
		return shutdownAt >= 0 && a.e.For > 0 && a.e.At.D()+a.e.For.D() > shutdownAt
	}
	// healAll heals every active fault, but those planned to meet the
	// shutdown unless it is over.
	healAll := func(shutdownOver bool) {
		keep := act[:0]
		for _, a := range act {
			if !shutdownOver && meetsShutdown(a) {
				keep = append(keep, a)
				continue
			}
			r.heal(ctx, a)
		}
		act = keep
	}
	defer func() {
		// Nothing may stay injected past the run, whatever ended it.
		for _, a := range act {
			r.heal(context.Background(), a)
		}
	}()
	for len(entries) > 0 || len(act) > 0 {
		next := time.Duration(-1)
		if len(entries) > 0 {
			next = entries[0].At.D()
		}
		for _, a := range act {
			if next < 0 || a.healAt < next {
				next = a.healAt
			}
		}
		if !healedAll && (next < 0 || r.tl.Heal <= next) {
			next = r.tl.Heal
		}
		if !r.sleepUntil(ctx, next) {
			return
		}
		now := r.since()
		if !healedAll && now >= r.tl.Heal {
			healedAll = true
			healAll(false)
		}
		keep := act[:0]
		for _, a := range act {
			if a.healAt <= now {
				r.heal(ctx, a)
			} else {
				keep = append(keep, a)
			}
		}
		act = keep
		for len(entries) > 0 && entries[0].At.D() <= now {
			e := entries[0]
			entries = entries[1:]
			if endsManager(e.F) {
				healAll(false)
				r.shutdown(ctx, e)
				healAll(true)
				continue
			}
			if a := r.inject(ctx, e); a != nil {
				act = append(act, a)
			}
		}
	}
}

// endsManager reports whether fault name signals the manager (the run's
// planned shutdown).
func endsManager(name string) bool {
	f, ok := chaos.Lookup(name)
	return ok && f.EndsManager()
}

func (r *runner) chaosTarget() chaos.Target {
	return chaos.Target{Client: r.faultClient, ManagerPid: r.tgt.managerPid, Signal: r.tgt.signal}
}

// inject fires one planned fault; it returns the injection to heal later,
// or nil for instant and failed ones.
func (r *runner) inject(ctx context.Context, e PlanEntry) *active {
	f, known := chaos.Lookup(e.F)
	id := ""
	if known && f.NeedsPipeline() {
		id = r.waitTarget(ctx, e.Target)
	}
	inv := r.hist.Invoke(Nemesis, e.F, e.Target, id, faultValue(e))
	fs := r.tr.startFault(ctx, inv)
	fail := func(msg string) *active {
		fs.end(nil, errors.New(msg))
		r.hist.Complete(inv, OpFail, "", nil, msg, fs.traceID())
		return nil
	}
	switch {
	case !known:
		return fail(fmt.Sprintf("unknown fault %q", e.F))
	case f.NeedsPipeline() && id == "":
		return fail(fmt.Sprintf("%s has no live pipeline id (waited %s)", describeTarget(e.Target, ""), targetWait))
	}
	// Inject's context also owns background work (client faults), so it is
	// the run's, not a per-call one; each fault bounds its own steps. It
	// carries the fault's span: the commands the fault sends join its trace.
	inj, err := f.Inject(fs.ctx, r.chaosTarget(), chaos.Spec{Fault: e.F, PipelineID: id, Params: e.Params, For: e.For.D()})
	if err != nil {
		return fail(err.Error())
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

func faultValue(e PlanEntry) map[string]any {
	v := map[string]any{}
	if len(e.Params) > 0 {
		v["params"] = e.Params
	}
	if e.For > 0 {
		v["for_seconds"] = e.For.D().Seconds()
	}
	if len(v) == 0 {
		return nil
	}
	return v
}

// shutdown ends the manager as planned (SIGTERM or SIGKILL, through the
// chaos catalogue's manager-level faults) and waits, bounded, for it to
// exit.
func (r *runner) shutdown(ctx context.Context, e PlanEntry) {
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
			fail(err.Error())
			return
		}
	}
	bound := r.cfg.TerminationGracePeriod + r.cfg.ProcessJoinTimeout + r.bounds.Epsilon + 2*time.Second
	if !r.tgt.embedded {
		if waitPidExit(ctx, r.tgt.managerPid, bound) {
			r.tgt.markExited(0, "external manager: pid gone (its exit status is not visible to the harness)")
		}
	}
	select {
	case <-r.tgt.exited:
		at, code, note := r.tgt.exit()
		r.mu.Lock()
		r.shutdownRec.Exited = max(int64(at.Sub(r.start)), r.shutdownRec.Requested)
		r.shutdownRec.ExitCode = code
		r.mu.Unlock()
		obs["exit_code"] = code
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
