package property

import (
	"maps"
	"slices"
	"syscall"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// Video references init must accept, and ones it must refuse with
// invalid_payload (leaving no table entry and no worker behind).
var (
	validRefs = []string{"synthetic://32x24?fps=10", "synthetic://16x16?fps=25", "synthetic://48x32"}
	// Upstream accepts any URL, path or device id and reports a source
	// it cannot open in status (issue 10), so only malformed references
	// are refused.
	invalidRefs = []any{"synthetic://0x0", "synthetic://axb",
		"synthetic://32x24?fps=-1", "", 42.5, []any{}, map[string]any{"camera": 1}}
)

// Chaos faults as the actions draw them; slow_probe comes above and below
// the probe deadline.
const (
	slowProbeAbove = "slow_probe_above"
	slowProbeBelow = "slow_probe_below"
)

var faults = []string{protocol.ChaosHangQueue, slowProbeAbove, slowProbeBelow, protocol.ChaosStaleResponses,
	protocol.ChaosGarbageOutput, protocol.ChaosCrash, protocol.ChaosIgnoreSigterm, protocol.ChaosHeal}

// actions is the state machine: "" is the invariant after every step.
func (mc *machine) actions() map[string]func(*rapid.T) {
	a := map[string]func(*rapid.T){
		"":                         mc.check,
		"init":                     mc.init,
		"init_invalid":             mc.initInvalid,
		protocol.TypeStatus:        mc.command(protocol.TypeStatus),
		protocol.TypeMute:          mc.command(protocol.TypeMute),
		protocol.TypeResume:        mc.command(protocol.TypeResume),
		protocol.TypeConsumeResult: mc.command(protocol.TypeConsumeResult),
		protocol.TypeTerminate:     mc.terminate,
		"terminate_racing":         mc.terminateRacing,
		protocol.TypeChaos:         mc.chaos,
		"crash_idle":               mc.crashIdle,
		protocol.TypeListPipelines: mc.list,
		protocol.TypeInspect:       mc.inspect,
		"wait_probe":               mc.waitProbe,
	}
	if mc.tier.concurrentInits {
		a["init_concurrent"] = mc.initConcurrent
	}
	if mc.tier.virtual {
		maps.Copy(a, mc.virtualActions())
	}
	if mc.tier.processes {
		a["sigstop"] = mc.signal(syscall.SIGSTOP)
		a["sigcont"] = mc.sigcont
		a["sigkill"] = mc.signal(syscall.SIGKILL)
	}
	for name, act := range a {
		if name != "" {
			a[name] = func(t *rapid.T) {
				act(t)
				// Not reached when the action skips or fails; the log
				// shows, in a failure's replay, the actions that ran.
				mc.lat.count(name)
				t.Logf("[corral] ran %s", name)
			}
		}
	}
	return a
}

// drawLive draws a pipeline of the live set.
func (mc *machine) drawLive(t *rapid.T) (string, *pipe) {
	ids := orderedKeys(mc, mc.live)
	if len(ids) == 0 {
		t.Skip("no live pipeline")
	}
	id := rapid.SampledFrom(ids).Draw(t, "live_id")
	return id, mc.live[id]
}

// drawTarget draws a live pipeline, one that left the table, or an id that
// never existed; the pipe is nil for the last two.
func (mc *machine) drawTarget(t *rapid.T) (string, *pipe) {
	switch rapid.SampledFrom([]string{"live", "live", "live", "gone", "unknown"}).Draw(t, "target_kind") {
	case "live":
		return mc.drawLive(t)
	case "gone":
		ids := orderedKeys(mc, mc.gone)
		if len(ids) == 0 {
			t.Skip("no pipeline has left yet")
		}
		return rapid.SampledFrom(ids).Draw(t, "gone_id"), nil
	}
	return rapid.StringMatching(`[0-9a-f]{8}(-[0-9a-z]{1,12}){0,3}`).Draw(t, "unknown_id"), nil
}

func (mc *machine) init(t *rapid.T) {
	if len(mc.live) >= mc.tier.maxLive {
		t.Skip("table full")
	}
	ref := rapid.SampledFrom(validRefs).Draw(t, "video_reference")
	mc.afterInit(t, mc.do(t, protocol.TypeInit, "", initFields(ref)))
}

// afterInit checks the answer to a valid init and adds the pipeline.
func (mc *machine) afterInit(t *rapid.T, r protocol.Response) {
	t.Helper()
	id := r.PipelineID
	if !r.OK() {
		if !isTimeout(r) {
			fatalf(t, "init of a valid reference: %s", describe(r))
		}
		*mc.unknowns++
		if p, ok := mc.entry(id); ok && !p.MarkedForRemoval {
			fatalf(t, "init of %s timed out but left a table entry: %+v", id, p)
		}
		mc.gone[id] = "init timed out"
		return
	}
	if how, ok := mc.gone[id]; ok {
		fatalf(t, "init returned %s, an id that already left the table (%s)", id, how)
	}
	if _, ok := mc.live[id]; ok {
		fatalf(t, "init returned %s, the id of a live pipeline", id)
	}
	mc.live[id] = &pipe{}
	if _, ok := mc.rank[id]; !ok {
		mc.rank[id] = len(mc.rank)
	}
	if p, ok := mc.entry(id); !ok || p.Idle {
		if why := mc.mayLeave(id); why == "" {
			fatalf(t, "init returned %s but the table has %+v (present %v)%s", id, p, ok, mc.ev.history(id))
		}
	}
}

func (mc *machine) initInvalid(t *rapid.T) {
	ref := rapid.SampledFrom(invalidRefs).Draw(t, "invalid_video_reference")
	r := mc.do(t, protocol.TypeInit, "", initFields(ref))
	if !isType(r, protocol.ErrTypeInvalidPayload) {
		fatalf(t, "init with video_reference %#v: %s, want invalid_payload", ref, describe(r))
	}
	if r.PipelineID == "" {
		return
	}
	if p, ok := mc.entry(r.PipelineID); ok {
		fatalf(t, "failed init left a table entry: %+v", p)
	}
	mc.gone[r.PipelineID] = "failed init"
}

// initConcurrent sends several inits close together, as concurrent
// clients do: each must get its own new pipeline.
func (mc *machine) initConcurrent(t *rapid.T) {
	k := rapid.IntRange(2, 3).Draw(t, "concurrent_inits")
	// Arrival spacing shapes the workload; nothing waits on it.
	spacing := time.Duration(rapid.IntRange(0, 3).Draw(t, "arrival_spacing_ms")) * time.Millisecond
	if len(mc.live)+k > mc.tier.maxLive {
		t.Skip("table full")
	}
	type answer struct {
		resp protocol.Response
		err  error
	}
	answers := make(chan answer, k)
	for i := range k {
		req, err := request(protocol.TypeInit, "", initFields(validRefs[i%len(validRefs)]))
		if err != nil {
			fatal(t, err)
		}
		delay := time.Duration(i) * spacing
		go func() {
			time.Sleep(delay)
			r, _, err := call(mc.h, req, mc.handleBound(), mc.lat)
			if err == nil {
				err = shapeError(req, r)
			}
			answers <- answer{r, err}
		}()
	}
	var ids []string
	var got []protocol.Response
	for range k {
		a := <-answers // each call is bounded
		if a.err != nil {
			fatal(t, a.err)
		}
		if a.resp.OK() {
			if slices.Contains(ids, a.resp.PipelineID) {
				fatalf(t, "%d concurrent inits: two answered with pipeline %s%s", k, a.resp.PipelineID, mc.ev.history(a.resp.PipelineID))
			}
			ids = append(ids, a.resp.PipelineID)
		}
		got = append(got, a.resp)
	}
	for _, r := range got {
		mc.afterInit(t, r)
	}
}

// command returns the action sending one pipeline command.
func (mc *machine) command(typ string) func(*rapid.T) {
	return func(t *rapid.T) {
		id, p := mc.drawTarget(t)
		var fields map[string]any
		if typ == protocol.TypeConsumeResult && rapid.Bool().Draw(t, "exclude_fields") {
			fields = map[string]any{"excluded_fields": []string{"image"}}
		}
		r := mc.do(t, typ, id, fields)
		if p == nil {
			if !isType(r, protocol.ErrTypeNotFound) {
				fatalf(t, "%s on unknown id %q: %s, want not_found", typ, id, describe(r))
			}
			return
		}
		if mc.answerLive(t, typ, id, r) {
			switch typ {
			case protocol.TypeMute:
				p.muted = true
			case protocol.TypeResume:
				p.muted = false
			}
		}
	}
}

func (mc *machine) terminate(t *rapid.T) {
	id, p := mc.drawTarget(t)
	r := mc.do(t, protocol.TypeTerminate, id, nil)
	if p == nil {
		// Upstream answers terminate of an unknown id with invalid_payload.
		if !isType(r, protocol.ErrTypeInvalidPayload) {
			fatalf(t, "terminate of unknown id %q: %s, want invalid_payload", id, describe(r))
		}
		return
	}
	mc.afterTerminate(t, id, r)
}

// afterTerminate checks the answer to terminate of a live pipeline.
func (mc *machine) afterTerminate(t *rapid.T, id string, r protocol.Response) {
	t.Helper()
	switch {
	case r.OK():
		// terminate answers once the worker is reaped and the entry gone.
		if e, ok := mc.entry(id); ok {
			fatalf(t, "terminate of %s succeeded but it is still in the table: %+v", id, e)
		}
		mc.left(id, "terminated")
	case mc.mayLeave(id) == "":
		fatalf(t, "terminate of healthy pipeline %s: %s%s", id, describe(r), mc.ev.history(id))
	case isType(r, protocol.ErrTypeInvalidPayload):
		if e, ok := mc.entry(id); ok {
			fatalf(t, "terminate of %s answered not found, but it is in the table: %+v", id, e)
		}
		mc.left(id, "left by itself")
	case isType(r, protocol.ErrTypeOperation):
		// Already being stopped (unhealthy, or a broken channel).
		mc.waitGone(t, id, "stopped by the manager")
	default:
		fatalf(t, "terminate of %s: %s", id, describe(r))
	}
}

// terminateRacing sends a command while the pipeline is being terminated:
// it must get operation_error (or not_found once the entry is gone).
func (mc *machine) terminateRacing(t *rapid.T) {
	id, _ := mc.drawLive(t)
	typ := rapid.SampledFrom([]string{protocol.TypeStatus, protocol.TypeMute, protocol.TypeResume,
		protocol.TypeConsumeResult, protocol.TypeChaos, protocol.TypeTerminate}).Draw(t, "command_while_terminating")
	// A worker that ignores SIGTERM stays in the table, marked, for the
	// whole grace period: the window this action aims at.
	if r := mc.do(t, protocol.TypeChaos, id, map[string]any{protocol.ChaosFieldFault: protocol.ChaosIgnoreSigterm}); !mc.answerLive(t, "chaos ignore_sigterm", id, r) {
		return
	}
	mc.live[id].ignoreTerm = true
	req, err := request(protocol.TypeTerminate, id, nil)
	if err != nil {
		fatal(t, err)
	}
	type answer struct {
		resp protocol.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		r, _, err := call(mc.h, req, mc.handleBound(), mc.lat)
		done <- answer{r, err}
	}()
	_, marked := mc.ev.waitFor(mc.handleBound(), func(e manager.Event) bool {
		switch e := e.(type) {
		case manager.PipelineStateChanged:
			return e.PipelineID == id && e.To == protocol.StateTerminating
		case manager.WorkerExited:
			return e.PipelineID == id
		}
		return false
	})
	var fields map[string]any
	if typ == protocol.TypeChaos {
		fields = map[string]any{protocol.ChaosFieldFault: protocol.ChaosHeal}
	}
	r := mc.do(t, typ, id, fields)
	a := <-done // bounded by call
	if a.err != nil {
		fatal(t, a.err)
	}
	if !marked {
		fatalf(t, "terminate of %s: no terminating state or exit within %s%s", id, mc.handleBound(), mc.ev.history(id))
	}
	notFound := protocol.ErrTypeNotFound
	if typ == protocol.TypeTerminate {
		notFound = protocol.ErrTypeInvalidPayload
	}
	switch {
	case isType(r, protocol.ErrTypeOperation):
	case isType(r, notFound):
		// The grace period ran out first; the entry must be gone by now.
		if e, ok := mc.entry(id); ok {
			fatalf(t, "%s on %s answered %s but it is in the table: %+v", typ, id, r.ErrorType, e)
		}
	default:
		fatalf(t, "%s on %s while it is being terminated: %s, want operation_error%s", typ, id, describe(r), mc.ev.history(id))
	}
	mc.afterTerminate(t, id, a.resp)
}

func (mc *machine) chaos(t *rapid.T) {
	fault := rapid.SampledFrom(faults).Draw(t, "fault")
	id, p := mc.drawTarget(t)
	fields := map[string]any{protocol.ChaosFieldFault: fault}
	switch fault {
	case protocol.ChaosHangQueue:
		hangs := []float64{0.05, 0.2, 0.5, 1}
		if mc.tier.virtual {
			hangs = append(hangs, 30) // longer than every deadline: only a timeout ends the wait
		}
		fields["duration_seconds"] = rapid.SampledFrom(hangs).Draw(t, "hang_seconds")
	case slowProbeAbove:
		fields["fault"] = protocol.ChaosSlowProbe
		factor := rapid.SampledFrom([]float64{1.5, 3}).Draw(t, "probe_delay_over_timeout")
		fields["delay_seconds"] = factor * mc.cfg.HealthCheckTimeout.Seconds()
	case slowProbeBelow:
		// Well under the probe and command floors: slow but healthy.
		fields["fault"] = protocol.ChaosSlowProbe
		fields["delay_seconds"] = mc.cfg.ProbeTimeoutFloor.Seconds() / 6
	case protocol.ChaosCrash:
		fields["exit_code"] = rapid.IntRange(0, 3).Draw(t, "exit_code")
	}
	r := mc.do(t, protocol.TypeChaos, id, fields)
	if p == nil {
		if !isType(r, protocol.ErrTypeNotFound) {
			fatalf(t, "chaos on unknown id %q: %s, want not_found", id, describe(r))
		}
		return
	}
	if fault != protocol.ChaosCrash {
		if mc.answerLive(t, "chaos "+fault, id, r) {
			switch fault {
			case slowProbeBelow:
				p.slowProbe = true
			case protocol.ChaosIgnoreSigterm:
				p.ignoreTerm = true
			case protocol.ChaosHeal:
				p.slowProbe, p.ignoreTerm = false, false
			}
		}
		switch fault {
		case protocol.ChaosHangQueue, slowProbeAbove:
			mc.volatile(id, fault)
		}
		return
	}
	healthy := mc.mayLeave(id) == ""
	mc.volatile(id, "crash")
	switch {
	case r.OK():
		fatalf(t, "chaos crash of %s answered success; a crashing worker sends no reply", id)
	case isTimeout(r), !healthy && isType(r, protocol.ErrTypeOperation):
		// A hung worker may not read the crash; its health will end it.
	case isType(r, protocol.ErrTypeOperation):
		mc.waitGone(t, id, "crashed")
	case isType(r, protocol.ErrTypeNotFound) && !healthy:
		mc.left(id, "left by itself")
	default:
		fatalf(t, "chaos crash of %s: %s", id, describe(r))
	}
}

// crashIdle crashes a warm-pool worker: it must leave the table and the
// pool must refill (the invariant waits for it).
func (mc *machine) crashIdle(t *rapid.T) {
	var idle []string
	for _, p := range mc.m.Snapshot().Pipelines {
		if p.Idle {
			idle = append(idle, p.PipelineID)
		}
	}
	if len(idle) == 0 {
		t.Skip("no idle worker")
	}
	id := rapid.SampledFrom(idle).Draw(t, "idle_id")
	r := mc.do(t, protocol.TypeChaos, id, map[string]any{protocol.ChaosFieldFault: protocol.ChaosCrash})
	if !isType(r, protocol.ErrTypeOperation) {
		fatalf(t, "chaos crash of idle worker %s: %s, want operation_error", id, describe(r))
	}
	mc.waitGone(t, id, "idle worker crashed")
}

// waitProbe lets a live pipeline's health loop run one probe: probes must
// keep coming while a pipeline is in the table (or it must leave).
func (mc *machine) waitProbe(t *rapid.T) {
	id, _ := mc.drawLive(t)
	bound := 2*mc.cfg.HealthCheckInterval + mc.cfg.HealthCheckTimeout + mc.shutdownBound()
	_, ok := mc.ev.waitFrom(mc.ev.index(), bound, func(e manager.Event) bool {
		switch e := e.(type) {
		case manager.ProbeResult:
			return e.PipelineID == id
		case manager.WorkerExited:
			return e.PipelineID == id
		}
		return false
	})
	if ok {
		return
	}
	if _, present := mc.entry(id); present {
		fatalf(t, "no probe of %s within %s%s", id, bound, mc.ev.history(id))
	}
	// It had left before the wait began; the invariant judges that.
}

// nonIdle lists the ids of a snapshot's client pipelines.
func nonIdle(s manager.Snapshot) []string {
	var ids []string
	for _, p := range s.Pipelines {
		if !p.Idle {
			ids = append(ids, p.PipelineID)
		}
	}
	return ids
}

// sandwich checks a listing taken between two snapshots: no duplicates,
// everything in the later snapshot, nothing not in the earlier one (no
// client pipeline can appear meanwhile: inits are sequential here).
func sandwich(t *rapid.T, what string, before, got, after []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			fatalf(t, "%s lists %s twice: %v", what, id, got)
		}
		seen[id] = true
		if !slices.Contains(before, id) {
			fatalf(t, "%s lists %s, not in the table: got %v, table %v", what, id, got, before)
		}
	}
	for _, id := range after {
		if !seen[id] {
			fatalf(t, "%s misses %s: got %v, table %v", what, id, got, after)
		}
	}
}

func (mc *machine) list(t *rapid.T) {
	before := nonIdle(mc.m.Snapshot())
	r := mc.do(t, protocol.TypeListPipelines, "", nil)
	after := nonIdle(mc.m.Snapshot())
	if !r.OK() {
		fatalf(t, "list_pipelines: %s", describe(r))
	}
	sandwich(t, "list_pipelines", before, r.Fields["pipelines"].([]string), after)
}

func (mc *machine) inspect(t *rapid.T) {
	before := nonIdle(mc.m.Snapshot())
	r := mc.do(t, protocol.TypeInspect, "", nil)
	after := nonIdle(mc.m.Snapshot())
	if !r.OK() {
		fatalf(t, "inspect: %s", describe(r))
	}
	if r.Fields["shutting_down"] != false {
		fatalf(t, "inspect: shutting_down = %v before Shutdown", r.Fields["shutting_down"])
	}
	infos := r.Fields["pipelines"].([]protocol.PipelineInfo)
	for _, p := range infos {
		mc.checkEntry(t, p)
	}
	sandwich(t, "inspect", before, nonIdle(manager.Snapshot{Pipelines: infos}), after)
}
