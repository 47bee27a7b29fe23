package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// The planted-bug catalogue: deliberately broken managers, built only
// here through the runner's seams (middleware, a launcher wrapper, the
// configuration), each modelled on a documented upstream failure. The
// harness must mark each invalid with the named checker, and the real
// manager valid on the same scenario.

// plantedScenario: two pipelines under steady load, a queue hang on
// pipeline 1 shorter than the hang-detection bound (so detection is not
// required and the real manager answers it with timeouts) and a crash of
// pipeline 2; about 12 s in all.
//
// The probe deadline is pinned to the health-check timeout, which equals
// the queue timeout. Left adaptive, it falls to its 250 ms floor while the
// worker answers fast, and the manager may then count a client command in
// flight for 250 ms as a failed probe, three times 250 ms apart, and
// remove the hung pipeline before any command to it reaches its 1 s
// timeout: legitimate detection, but then the bugs that show only after a
// timeout (stale answer, requests queued behind the table lock) have
// nothing to act on, depending on the phase of the probe timer.
func plantedScenario() *Scenario {
	return &Scenario{
		Name: "planted", Seed: 5,
		Duration: Duration(6 * time.Second), WarmUp: Duration(2 * time.Second),
		Heal: Duration(time.Second), Quiesce: Duration(time.Second),
		Pipelines: 2, Clients: 2, Rate: 5,
		Mix: map[string]int{"status": 4, "consume_result": 3, "mute": 1, "resume": 1, "list_pipelines": 1},
		Schedule: []FaultAt{
			{At: Duration(time.Second), Fault: "hang_queue", Target: 1, For: Duration(3500 * time.Millisecond)},
			{At: Duration(2 * time.Second), Fault: "crash", Target: 2},
		},
		Manager: map[string]string{
			"STREAM_MANAGER_HEALTH_CHECK_INTERVAL":    "0.5",
			"STREAM_MANAGER_HEALTH_CHECK_TIMEOUT":     "1",
			"STREAM_MANAGER_QUEUE_TIMEOUT":            "1",
			"STREAM_MANAGER_TERMINATION_GRACE_PERIOD": "1",
			"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT":     "2",
			"STREAM_MANAGER_PROBE_TIMEOUT_FLOOR":      "1",
		},
	}
}

// badCameraScenario: every init fails (the reference is malformed), so
// each worker the manager starts must be stopped again; no faults. (A
// missing file would init fine and report ERROR, as upstream does.)
func badCameraScenario() *Scenario {
	sc := plantedScenario()
	sc.Name, sc.Video, sc.Schedule = "bad-camera", "synthetic://0x0", nil // malformed: upstream-like init refuses only these
	sc.Mix = map[string]int{"status": 2, "list_pipelines": 1}
	return sc
}

// modelScenario: plantedScenario without faults, with more mutes and
// consumes, for bugs in the answers themselves.
func modelScenario() *Scenario {
	sc := plantedScenario()
	sc.Name, sc.Schedule = "model", nil
	sc.Mix = map[string]int{"status": 4, "consume_result": 4, "mute": 2, "resume": 1, "list_pipelines": 1}
	return sc
}

// declaredBounds are the bounds of plantedScenario's configuration. The
// checkers are pinned to them, because a planted configuration (no
// timeout) must be judged against the contract, not against itself.
func declaredBounds() Bounds {
	return Bounds{Grace: time.Second, Join: 2 * time.Second, QueueTimeout: time.Second,
		HealthInterval: 500 * time.Millisecond, HealthTimeout: time.Second, MaxHealthFailures: 3, Epsilon: Epsilon}
}

// pinnedChecker judges a run against fixed bounds.
type pinnedChecker struct {
	Checker
	bounds Bounds
}

func (c pinnedChecker) Check(d *RunData) Result {
	pinned := *d
	pinned.Bounds = c.bounds
	return c.Checker.Check(&pinned)
}

func pinnedCheckers(sc *Scenario) []Checker {
	var out []Checker
	for _, c := range DefaultCheckers(sc) {
		out = append(out, pinnedChecker{c, declaredBounds()})
	}
	return out
}

// --- broken middleware ---------------------------------------------------

// tableLock serialises every request behind one mutex, as upstream's
// health loop holds the table lock across blocking probes: one hung worker
// then freezes every client.
func tableLock() manager.Middleware {
	var mu sync.Mutex
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			mu.Lock()
			defer mu.Unlock()
			return next.Handle(ctx, req)
		})
	}
}

// muteNotForwarded answers mute with success without telling the worker,
// so the pipeline keeps streaming and reports RUNNING.
func muteNotForwarded() manager.Middleware {
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if req.Type == protocol.TypeMute {
				return protocol.Success(nil)
			}
			return next.Handle(ctx, req)
		})
	}
}

// listsFailedInits keeps the id of every failed init in list_pipelines
// answers: upstream's phantom pipeline, whose process stays in the table
// after its init answered invalid_payload.
func listsFailedInits() manager.Middleware {
	var mu sync.Mutex
	var failed []string
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			resp := next.Handle(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case req.Type == protocol.TypeInit && !resp.OK() && resp.PipelineID != "":
				failed = append(failed, resp.PipelineID)
			case req.Type == protocol.TypeListPipelines && resp.OK():
				ids, _ := resp.Fields["pipelines"].([]string)
				resp.Fields = map[string]any{"pipelines": append(slices.Clone(ids), failed...)}
			}
			return resp
		})
	}
}

// forgetsPipelines answers every fifth status with not_found although the
// pipeline is still in the table and keeps answering.
func forgetsPipelines() manager.Middleware {
	var mu sync.Mutex
	n := 0
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if req.Type == protocol.TypeStatus {
				mu.Lock()
				n++
				forget := n%5 == 0
				mu.Unlock()
				if forget {
					return protocol.Failure(protocol.NotFound(req.PipelineID))
				}
			}
			return next.Handle(ctx, req)
		})
	}
}

// crossedResults answers every third consume_result with the last
// non-empty answer another pipeline got, as a shared result queue would.
func crossedResults() manager.Middleware {
	var mu sync.Mutex
	var lastID string
	var last protocol.Response
	n := 0
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if req.Type != protocol.TypeConsumeResult {
				return next.Handle(ctx, req)
			}
			mu.Lock()
			n++
			if n%3 == 0 && lastID != "" && lastID != req.PipelineID {
				defer mu.Unlock()
				return last
			}
			mu.Unlock()
			resp := next.Handle(ctx, req)
			if outs, _ := resp.Fields["outputs"].([]any); resp.OK() && len(outs) > 0 {
				mu.Lock()
				lastID, last = req.PipelineID, resp
				mu.Unlock()
			}
			return resp
		})
	}
}

// claimsWorkerExited answers every command to a pipeline after its first
// status with "its worker exited", while the worker lives and the
// pipeline stays in the table: the phantom the manager showed when a
// status reply over its frame limit stopped its reader (the worker
// channel then failed every command, and the health loop stopped).
func claimsWorkerExited() manager.Middleware {
	var mu sync.Mutex
	seen := map[string]bool{}
	commands := []string{protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume}
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if !slices.Contains(commands, req.Type) {
				return next.Handle(ctx, req)
			}
			mu.Lock()
			broken := seen[req.PipelineID]
			seen[req.PipelineID] = seen[req.PipelineID] || req.Type == protocol.TypeStatus
			mu.Unlock()
			if broken {
				return protocol.Failure(protocol.OperationError(fmt.Sprintf("Pipeline %s: its worker exited during %s.", req.PipelineID, req.Type)))
			}
			return next.Handle(ctx, req)
		})
	}
}

// --- broken launchers ----------------------------------------------------

// wrapLauncher plants a testkit process wrapper; the real launcher is
// closed in cleanup, since the broken one forgets its workers.
func wrapLauncher(t *testing.T, wrap func(launch.Process) launch.Process) func(launch.Launcher) launch.Launcher {
	return func(real launch.Launcher) launch.Launcher {
		t.Cleanup(func() { _ = real.Close() })
		return testkit.WrapProcesses(wrap)(real)
	}
}

// --- the catalogue -------------------------------------------------------

type plantedBug struct {
	name     string
	scenario func() *Scenario
	options  func(t *testing.T) Options
	// invalid are the checkers that must find the bug; nil means the run
	// must be valid (the real manager).
	invalid []string
}

func plantedBugs() []plantedBug {
	none := func(*testing.T) Options { return Options{} }
	return []plantedBug{
		{"real manager", plantedScenario, none, nil},
		{"real manager, failing inits", badCameraScenario, none, nil},
		{"no response timeout", plantedScenario, func(*testing.T) Options {
			// Upstream waits forever everywhere between manager and worker,
			// probes included; with probes still bounded, the health loop
			// would catch the hang and answer the stuck requests.
			return Options{Configure: func(c *manager.Config) {
				c.QueueTimeout, c.CommandTimeoutFloor = time.Hour, time.Hour
				c.HealthCheckTimeout, c.ProbeTimeoutFloor = time.Hour, time.Hour
			}}
		}, []string{CheckRequestsAnswered}},
		{"health probe holds the table lock", plantedScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{tableLock()}}
		}, []string{CheckRequestsAnswered}},
		{"shutdown never kills", plantedScenario, func(t *testing.T) Options {
			return Options{WrapLauncher: wrapLauncher(t, testkit.NeverKills)}
		}, []string{CheckNoLeakedProcesses, CheckBoundedShutdown}},
		{"failed init leaves its process", badCameraScenario, func(t *testing.T) Options {
			return Options{WrapLauncher: wrapLauncher(t, testkit.KeepsFailedInit)}
		}, []string{CheckNoLeakedProcesses}},
		{"health record outlives its pipeline", plantedScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{testkit.KeepRemovedEntries()}}
		}, []string{CheckConsistentHealth}},
		{"stale response to the next caller", plantedScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{testkit.StaleAfterTimeout()}}
		}, []string{CheckResponsesMatch}},
		{"real manager, model workload", modelScenario, none, nil},
		{"mute not forwarded", modelScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{muteNotForwarded()}}
		}, []string{CheckPipelineModel}},
		{"failed inits stay listed", badCameraScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{listsFailedInits()}}
		}, []string{CheckPipelineModel}},
		{"live pipelines answered not_found", modelScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{forgetsPipelines()}}
		}, []string{CheckPipelineModel}},
		{"results of another pipeline", modelScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{crossedResults()}}
		}, []string{CheckPipelineModel}},
		{"commands claim a live worker exited", modelScenario, func(*testing.T) Options {
			return Options{Middleware: []manager.Middleware{claimsWorkerExited()}}
		}, []string{CheckCensusTruth, CheckAvailability}},
	}
}

func TestPlantedBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real managers and workers for about 15 s each")
	}
	for _, bug := range plantedBugs() {
		t.Run(strings.ReplaceAll(bug.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			sc := bug.scenario()
			o := testWorkers(bug.options(t))
			o.Out = t.TempDir()
			o.Checkers = pinnedCheckers(sc)
			rep, err := Run(t.Context(), sc, o)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			verdicts := map[string]Result{}
			for _, r := range rep.Results {
				verdicts[r.Checker] = r
			}
			if bug.invalid == nil {
				if !rep.Valid {
					t.Errorf("the real manager is not valid:\n%s", FailureText(rep))
				}
				return
			}
			for _, name := range bug.invalid {
				r := verdicts[name]
				if r.Verdict != Invalid {
					t.Errorf("%s = %s (%s), want invalid\n%s", name, r.Verdict, r.Summary, FailureText(rep))
					continue
				}
				t.Logf("caught by %s: %s", name, r.Summary)
				for _, d := range r.Details[:min(3, len(r.Details))] {
					t.Logf("  %s", d)
				}
			}
		})
	}
}
