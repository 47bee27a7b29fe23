package property

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// The virtual-time tier: the manager and its in-memory workers run inside
// a testing/synctest bubble, so every timer, ticker, deadline and sleep of
// the manager, the worker loops and net.Pipe runs on the bubble's clock.
// Time moves only when every goroutine of the bubble is durably blocked, so
// a steady worker answers in exactly zero virtual time, a timeout fires at
// exactly its deadline, and a minute of probes costs microseconds. The
// manager is driven through its Handler (no TCP: real sockets would leave
// the bubble), its workers through the in-memory launcher (net.Pipe).

// virtualTier is the configuration of the virtual-time tier. Its values
// are those of a real deployment's order of magnitude; in virtual time they
// cost nothing to wait for.
func virtualTier() tier {
	cfg := manager.DefaultConfig()
	cfg.Port = 0
	cfg.Chaos = true
	cfg.QueueTimeout = 2 * time.Second
	cfg.CommandTimeoutFloor = 100 * time.Millisecond
	cfg.HealthCheckInterval = 500 * time.Millisecond
	cfg.HealthCheckTimeout = time.Second
	cfg.ProbeTimeoutFloor = 60 * time.Millisecond
	cfg.MaxHealthFailures = 3
	cfg.TerminationGracePeriod = time.Second
	cfg.ProcessJoinTimeout = 2 * time.Second
	return tier{cfg: cfg, maxLive: 5, virtual: true, concurrentInits: false}
}

// defaultVirtualChecks is the quick tier's count (make test); `make stress`
// sets CORRAL_VIRTUAL_CHECKS far higher.
const defaultVirtualChecks = 1000

// inBubble runs body inside a synctest bubble whose parent is t, for a
// rapid.T that is not backed by a *testing.T (the planted-bug harness
// checks with a recorder; rapid.SyncTest needs the *testing.T). A panic
// inside the bubble (a rapid failure, or rapid's "invalid data" when a
// replayed case draws past its end) is caught there, so the bubble ends
// normally, and raised again outside it, from a different function for
// each of the two: rapid tells them apart by their traceback, and a
// shrunk case must fail, not run out of data. body must leave no goroutine
// of the bubble blocked: the machine shuts the manager down and closes the
// launcher on every path.
func inBubble(t *testing.T, body func()) {
	var caught any
	synctest.Test(t, func(*testing.T) {
		defer func() { caught = recover() }()
		body()
	})
	switch {
	case caught == nil:
	case reflect.TypeOf(caught).Name() == "invalidData":
		raiseInvalid(caught)
	default:
		raiseFailure(caught)
	}
}

func raiseInvalid(v any) { panic(v) }
func raiseFailure(v any) { panic(v) }

// uuidPattern matches the manager's pipeline ids (random UUIDs).
var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// numberPattern matches numbers and durations ("3", "1.5s", "1m0.5s").
var numberPattern = regexp.MustCompile(`([0-9]+(\.[0-9]+)?(ns|µs|us|ms|s|m|h)?)+`)

// fatalf logs the whole message and fails the check with its kind, the
// format alone. rapid accepts a replayed or shrunk case only if it fails
// with the very same message, and messages carry random pipeline ids and
// durations: with the kind, a case that fails the same way is the same
// failure, and rapid can shrink it.
func fatalf(t *rapid.T, format string, args ...any) {
	t.Helper()
	t.Logf(format, args...)
	t.Fatal(strings.ReplaceAll(format, "\n", " "))
}

// fatal is fatalf for a message built elsewhere (an error): its kind is
// its first line up to any parenthesis or brace, with pipeline ids and
// numbers blanked.
func fatal(t *rapid.T, args ...any) {
	t.Helper()
	msg := fmt.Sprint(args...)
	t.Log(msg)
	msg, _, _ = strings.Cut(msg, "\n")
	msg = uuidPattern.ReplaceAllString(msg, "<id>")
	msg = numberPattern.ReplaceAllString(msg, "#")
	if i := strings.IndexAny(msg, "({"); i > 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	t.Fatal(msg)
}

// runMachine runs one check of tr: the actions, then the shutdown.
func runMachine(rt *rapid.T, tr tier, lat *latencies, unknowns *int) {
	mc := newMachine(rt, tr, lat, unknowns)
	finished := false
	defer func() {
		if !finished {
			mc.abort()
		}
	}()
	rt.Repeat(mc.actions())
	finished = true // finish shuts down itself, even when it fails
	mc.finish(rt)
}

// TestVirtualTime is the virtual-time tier: at least 1000 random command
// and fault sequences in `make test`, every bound exact.
func TestVirtualTime(t *testing.T) {
	checks := setChecks(t, "CORRAL_VIRTUAL_CHECKS", defaultVirtualChecks)
	lat := &latencies{}
	unknowns := 0
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		rapid.SyncTest(rt, func(rt *rapid.T) { runMachine(rt, virtualTier(), lat, &unknowns) })
	})
	t.Logf("virtual-time tier: %d checks passed in %s of real time; %d unknown outcomes (timeouts); %s",
		checks, time.Since(start).Round(time.Millisecond), unknowns, lat)
}

// virtualState is what the virtual tier tracks beyond the shared model.
type virtualState struct {
	mu       sync.Mutex
	launched []launch.Process

	seen   int                     // events already checked
	probes map[string]probeHistory // pipeline id -> its last probe
}

// probeHistory is one pipeline's last probe as the health loop reported it.
type probeHistory struct {
	at       time.Time // ProbeResult.At
	interval time.Duration
}

func newVirtualState() *virtualState {
	return &virtualState{probes: map[string]probeHistory{}}
}

// countingLauncher keeps every worker it starts, so the end of a check can
// require each to have exited (the in-memory census).
type countingLauncher struct {
	launch.Launcher
	vt *virtualState
}

func (l *countingLauncher) Launch(ctx context.Context, opts launch.Options) (launch.Process, error) {
	p, err := l.Launcher.Launch(ctx, opts)
	if err == nil {
		l.vt.mu.Lock()
		l.vt.launched = append(l.vt.launched, p)
		l.vt.mu.Unlock()
	}
	return p, err
}

// steady reports whether id is a live pipeline the model knows to be
// healthy with no fault armed that slows it (or, for id "", init): a
// command to it must answer at the instant it was sent.
func (mc *machine) steady(id string) bool {
	if mc.vt == nil {
		return false
	}
	if id == "" {
		return true
	}
	p := mc.live[id]
	if p == nil || p.volatile != "" || p.slowProbe || p.ignoreTerm {
		return false
	}
	_, trouble := mc.ev.trouble(id)
	return !trouble
}

// timeoutRange is the [floor, ceiling] of an adaptive deadline
// (manager/timeouts.go: the floor is clamped to the ceiling).
func (mc *machine) timeoutRange(command string) (floor, ceiling time.Duration) {
	if command == "probe" {
		return min(mc.cfg.ProbeTimeoutFloor, mc.cfg.HealthCheckTimeout), mc.cfg.HealthCheckTimeout
	}
	return min(mc.cfg.CommandTimeoutFloor, mc.cfg.QueueTimeout), mc.cfg.QueueTimeout
}

// checkVirtual is the virtual tier's part of the invariant. It first lets
// the bubble settle (every goroutine blocked on the clock or a channel), so
// the checks see a quiescent manager, then checks every event since the
// last step:
//   - every adaptive deadline stays within [floor, ceiling];
//   - a deadline changed right after a timeout of the same command is the
//     old one doubled, capped at the ceiling (the backoff);
//   - the health-interval policy (manager/health.go): after a successful
//     probe the next interval is min(1.5 x previous, 2 x base), after a
//     failed one max(base/2, 10ms); and the next probe starts a whole
//     number of intervals after the previous one ended (a round is skipped,
//     not shortened, while a client command is in flight), exactly.
func (mc *machine) checkVirtual(t *rapid.T) {
	t.Helper()
	synctest.Wait()
	vt := mc.vt
	mc.ev.mu.Lock()
	events := append([]manager.Event(nil), mc.ev.events[vt.seen:]...)
	before := append([]manager.Event(nil), mc.ev.events[:vt.seen]...)
	vt.seen += len(events)
	mc.ev.mu.Unlock()
	last := map[string]manager.Event{} // "pipeline command" -> its latest timeout event
	for _, e := range before[max(0, len(before)-64):] {
		mc.noteTimeoutEvent(last, e)
	}
	base := mc.cfg.HealthCheckInterval
	for _, e := range events {
		switch e := e.(type) {
		case manager.TimeoutChanged:
			floor, ceiling := mc.timeoutRange(e.Command)
			if e.Before < floor || e.Before > ceiling || e.After < floor || e.After > ceiling {
				fatalf(t, "%s deadline of %s moved %s -> %s, outside [%s, %s]", e.Command, e.PipelineID, e.Before, e.After, floor, ceiling)
			}
			if prev, ok := last[e.PipelineID+" "+e.Command].(manager.CommandTimedOut); ok && e.Before < ceiling {
				if want := min(2*e.Before, ceiling); e.After != want {
					fatalf(t, "%s deadline of %s after a timeout (%+v): %s -> %s, want the backoff %s", e.Command, e.PipelineID, prev, e.Before, e.After, want)
				}
			}
		case manager.ProbeResult:
			if e.Err == nil && e.ConsecutiveFailures != 0 {
				fatalf(t, "successful probe of %s left %d consecutive failures", e.PipelineID, e.ConsecutiveFailures)
			}
			if errors.Is(e.Err, manager.ErrChannelBroken) {
				delete(vt.probes, e.PipelineID) // its last probe: the loop ends
				break
			}
			prev, seen := vt.probes[e.PipelineID]
			prevInterval := base
			if seen {
				prevInterval = prev.interval
			}
			want := min(prevInterval*3/2, 2*base)
			if e.Err != nil {
				want = max(base/2, 10*time.Millisecond)
			}
			if e.NextInterval != want {
				fatalf(t, "probe of %s (err %v) after interval %s set the next to %s, want %s (health-interval policy)",
					e.PipelineID, e.Err, prevInterval, e.NextInterval, want)
			}
			if seen {
				gap := e.At.Time.Add(-e.Duration).Sub(prev.at)
				if gap <= 0 || gap%prev.interval != 0 {
					fatalf(t, "probe of %s started %s after the previous one ended, not a whole number of its interval %s%s",
						e.PipelineID, gap, prev.interval, mc.ev.history(e.PipelineID))
				}
			}
			vt.probes[e.PipelineID] = probeHistory{at: e.At.Time, interval: e.NextInterval}
		}
		mc.noteTimeoutEvent(last, e)
	}
	floor, ceiling := mc.timeoutRange("probe")
	snap := mc.m.Snapshot()
	for _, p := range snap.Pipelines {
		if d := time.Duration(p.Health.ProbeTimeout * float64(time.Second)); d < floor-time.Microsecond || d > ceiling+time.Microsecond {
			fatalf(t, "pipeline %s: probe timeout %s outside [%s, %s]", p.PipelineID, d, floor, ceiling)
		}
		// A success clears the failure count with the error; a failure
		// sets both (manager/health.go recordHealth, channelBroke).
		if (p.Health.ConsecutiveFailures == 0) != (p.Health.LastError == "") {
			fatalf(t, "pipeline %s: %d consecutive failures but last error %q", p.PipelineID, p.Health.ConsecutiveFailures, p.Health.LastError)
		}
	}
	// The in-memory census: once the bubble is quiet, every worker still
	// running is one the table holds (a worker whose pipeline left, or
	// whose init failed, has been stopped and reaped).
	vt.mu.Lock()
	alive := 0
	for _, p := range vt.launched {
		select {
		case <-p.Done():
		default:
			alive++
		}
	}
	vt.mu.Unlock()
	if alive != len(snap.Pipelines) {
		fatalf(t, "%d worker loops running, %d table entries: a worker outlived its entry (or an entry its worker)", alive, len(snap.Pipelines))
	}
}

// noteTimeoutEvent keeps, per pipeline and command, the latest event that
// moves or reports on its deadline.
func (mc *machine) noteTimeoutEvent(last map[string]manager.Event, e manager.Event) {
	switch e := e.(type) {
	case manager.CommandTimedOut:
		last[e.PipelineID+" "+e.Command] = e
	case manager.TimeoutChanged:
		last[e.PipelineID+" "+e.Command] = e
	}
}

// finishVirtual is the in-memory census: once Shutdown has returned and the
// bubble has settled, every worker loop the manager started has ended.
func (mc *machine) finishVirtual(t *rapid.T) {
	t.Helper()
	synctest.Wait()
	mc.vt.mu.Lock()
	defer mc.vt.mu.Unlock()
	for i, p := range mc.vt.launched {
		select {
		case <-p.Done():
		default:
			fatalf(t, "worker %d of %d is still running after Shutdown returned", i+1, len(mc.vt.launched))
		}
	}
}

// virtualActions are the actions only virtual time makes exact.
func (mc *machine) virtualActions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"advance":      mc.advance,
		"burst":        mc.burst,
		"crash_steady": mc.crashSteady,
	}
}

// advance lets virtual time pass: probes run, hangs end, grace periods
// expire.
func (mc *machine) advance(t *rapid.T) {
	d := rapid.SampledFrom([]time.Duration{time.Millisecond, 50 * time.Millisecond, 250 * time.Millisecond,
		time.Second, 3 * time.Second}).Draw(t, "advance")
	time.Sleep(d) // the bubble's clock: this is the action, not a synchronisation
}

// burst sends several commands at the same virtual instant, as concurrent
// clients would; each is judged as if sent alone, and one to a steady
// pipeline must still answer at once (no probe, no other pipeline's hang,
// no other client holds it). At most one mute or resume per pipeline, so
// the model knows the resulting state.
func (mc *machine) burst(t *rapid.T) {
	k := rapid.IntRange(2, 5).Draw(t, "burst_size")
	type sent struct {
		typ, id string
		p       *pipe
		steady  bool
		req     *protocol.Request
	}
	var reqs []sent
	toggled := map[string]bool{}
	for range k {
		typ := rapid.SampledFrom([]string{protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute,
			protocol.TypeResume, protocol.TypeListPipelines}).Draw(t, "burst_command")
		var id string
		var p *pipe
		if typ != protocol.TypeListPipelines {
			id, p = mc.drawTarget(t)
			if (typ == protocol.TypeMute || typ == protocol.TypeResume) && p != nil {
				if toggled[id] {
					typ = protocol.TypeStatus
				}
				toggled[id] = true
			}
		}
		req, err := request(typ, id, nil)
		if err != nil {
			fatal(t, err)
		}
		reqs = append(reqs, sent{typ, id, p, mc.steady(id), req})
	}
	type answer struct {
		resp protocol.Response
		took time.Duration
		err  error
	}
	answers := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, s := range reqs {
		wg.Go(func() {
			r, took, err := call(mc.h, s.req, mc.handleBound(), mc.lat)
			answers[i] = answer{r, took, err}
		})
		// All at the same virtual instant, but in the drawn order: each
		// request reaches the point where it waits before the next is
		// sent, so a replayed case sends them the same way.
		synctest.Wait()
	}
	wg.Wait() // each call is bounded
	for i, s := range reqs {
		a := answers[i]
		if a.err != nil {
			fatal(t, a.err)
		}
		if err := shapeError(s.req, a.resp); err != nil {
			fatal(t, err)
		}
		if s.steady && s.id != "" && a.took != 0 {
			fatalf(t, "burst: %s on steady pipeline %s answered after %s of virtual time%s", s.typ, s.id, a.took, mc.ev.history(s.id))
		}
		switch {
		case s.typ == protocol.TypeListPipelines:
			if !a.resp.OK() {
				fatalf(t, "burst: list_pipelines: %s", describe(a.resp))
			}
		case s.p == nil:
			if !isType(a.resp, protocol.ErrTypeNotFound) {
				fatalf(t, "burst: %s on unknown id %q: %s, want not_found", s.typ, s.id, describe(a.resp))
			}
		case mc.live[s.id] == nil:
			// An earlier answer of this burst showed it gone.
		case mc.answerLive(t, s.typ, s.id, a.resp):
			switch s.typ {
			case protocol.TypeMute:
				s.p.muted = true
			case protocol.TypeResume:
				s.p.muted = false
			}
		}
	}
}

// crashSteady crashes a steady pipeline's worker: the crash command is
// answered at once (the worker exited), and the manager learns of the exit
// at the very instant of the crash, not a probe later.
func (mc *machine) crashSteady(t *rapid.T) {
	var ids []string
	for _, id := range orderedKeys(mc, mc.live) {
		if mc.steady(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		t.Skip("no steady pipeline")
	}
	id := rapid.SampledFrom(ids).Draw(t, "steady_id")
	from := mc.ev.index()
	at := time.Now()
	r := mc.do(t, protocol.TypeChaos, id, map[string]any{protocol.ChaosFieldFault: protocol.ChaosCrash,
		protocol.ChaosFieldExitCode: rapid.IntRange(0, 3).Draw(t, "exit_code")})
	if !isType(r, protocol.ErrTypeOperation) {
		fatalf(t, "chaos crash of steady pipeline %s: %s, want operation_error (its worker exited)", id, describe(r))
	}
	e, ok := mc.ev.waitFrom(from, virtualSlack, func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	})
	if !ok {
		fatalf(t, "crash of %s: no worker_exit by the time the crash was answered%s", id, mc.ev.history(id))
	}
	if got := e.When(); !got.Equal(at) {
		fatalf(t, "crash of %s at %s: worker_exit at %s, %s later; want the same instant", id,
			at.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano), got.Sub(at))
	}
	if p, present := mc.entry(id); present {
		fatalf(t, "crash of %s: still in the table after its worker_exit: %+v", id, p)
	}
	mc.left(id, fmt.Sprintf("crashed at %s", at.Format(time.RFC3339Nano)))
}
