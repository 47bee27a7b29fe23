package property

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// The oracles' own proof: the virtual-time tier run against managers with a
// bug planted through the same seams as scenarios/planted_test.go (a
// Middleware around the Handler, a wrapped Launcher, a configuration). For
// each, the property must fail, and rapid must shrink the failure to a
// short action sequence. rapid.Check runs against a recorder standing in
// for *testing.T, so the failure is asserted, not reported: `make test`
// stays green while it shows the bug caught.

// plantedBug is one deliberately broken manager.
type plantedBug struct {
	name  string
	plant func(*tier)
}

// plantedBugs is the catalogue of scenarios/planted_test.go, on the
// in-memory launcher: the seams are re-declared here because test files of
// another package cannot be imported.
func plantedBugs() []plantedBug {
	return []plantedBug{
		{"no response timeout", func(tr *tier) {
			// Upstream waits forever between manager and worker.
			tr.configure = func(c *manager.Config) {
				c.QueueTimeout, c.CommandTimeoutFloor = time.Hour, time.Hour
				c.HealthCheckTimeout, c.ProbeTimeoutFloor = time.Hour, time.Hour
			}
		}},
		{"health probe holds the table lock", func(tr *tier) {
			tr.middleware = func() []manager.Middleware { return []manager.Middleware{tableLock()} }
		}},
		{"shutdown never kills", func(tr *tier) {
			tr.wrap = testkit.WrapProcesses(testkit.NeverKills)
		}},
		{"failed init leaves its process", func(tr *tier) {
			tr.wrap = testkit.WrapProcesses(testkit.KeepsFailedInit)
		}},
		{"health record outlives its pipeline", func(tr *tier) {
			tr.middleware = func() []manager.Middleware { return []manager.Middleware{testkit.KeepRemovedEntries()} }
		}},
		{"stale response to the next caller", func(tr *tier) {
			tr.middleware = func() []manager.Middleware { return []manager.Middleware{testkit.StaleAfterTimeout()} }
		}},
	}
}

// maxShrunkActions is the longest shrunk sequence accepted as "short";
// plantedAttempts is how many searches a bug gets to shrink that far.
const (
	maxShrunkActions = 12
	plantedAttempts  = 3
)

// TestPlantedVirtual runs the virtual-time tier against each planted bug:
// the check must fail, and its shrunk sequence must be short. The length
// and the actions are logged.
func TestPlantedVirtual(t *testing.T) {
	restore := setRapidFlags(t, map[string]string{
		"rapid.checks":     "5000", // a bug must show within this many cases
		"rapid.nofailfile": "true",
		"rapid.shrinktime": envOr("CORRAL_PLANTED_SHRINKTIME", "6s"),
	})
	defer restore()
	for _, bug := range plantedBugs() {
		t.Run(strings.ReplaceAll(bug.name, " ", "_"), func(t *testing.T) {
			tr := virtualTier()
			bug.plant(&tr)
			// A shrink is bounded in time (rapid.shrinktime): on a loaded
			// machine one may stop early, so a long result gets another
			// search from a fresh seed before it counts against the oracle.
			var actions []string
			for attempt := 1; attempt <= plantedAttempts; attempt++ {
				rec := &recordingTB{name: "planted/" + strings.ReplaceAll(bug.name, " ", "_")}
				lat := &latencies{}
				unknowns := 0
				start := time.Now()
				rapid.Check(rec, func(rt *rapid.T) {
					inBubble(t, func() { runMachine(rt, tr, lat, &unknowns) })
				})
				if !rec.Failed() {
					t.Fatalf("planted bug %q: the virtual-time property passed; it must fail\n%s", bug.name, rec.output())
				}
				if testing.Verbose() && envOr("CORRAL_PLANTED_DUMP", "") != "" {
					t.Log(rec.output())
				}
				actions = rec.actions()
				t.Logf("planted bug %q (search %d): caught in %s; shrunk to %d actions that ran before the failing step: [%s]; failure: %s",
					bug.name, attempt, time.Since(start).Round(time.Millisecond), len(actions), strings.Join(actions, ", "), rec.firstFailure())
				if len(actions) <= maxShrunkActions {
					return
				}
			}
			t.Errorf("planted bug %q: shrunk sequence has %d actions after %d searches, want at most %d",
				bug.name, len(actions), plantedAttempts, maxShrunkActions)
		})
	}
}

// setRapidFlags sets rapid's flags for one test and returns the restore.
func setRapidFlags(t *testing.T, set map[string]string) func() {
	t.Helper()
	old := map[string]string{}
	for name, v := range set {
		old[name] = flag.Lookup(name).Value.String()
		if err := flag.Set(name, v); err != nil {
			t.Fatalf("-%s=%s: %v", name, v, err)
		}
	}
	return func() {
		for name, v := range old {
			_ = flag.Set(name, v)
		}
	}
}

// recordingTB stands in for *testing.T under rapid.Check: it records
// output and failure instead of reporting them.
type recordingTB struct {
	name   string
	mu     sync.Mutex
	lines  []string
	failed bool
}

var _ rapid.TB = (*recordingTB)(nil)

func (r *recordingTB) Helper()      {}
func (r *recordingTB) Name() string { return r.name }
func (r *recordingTB) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Log(args ...any)                  { r.Logf("%s", fmt.Sprint(args...)) }
func (r *recordingTB) Skipf(format string, args ...any) { r.Logf("skip: "+format, args...) }
func (r *recordingTB) Skip(args ...any)                 { r.Log(args...) }
func (r *recordingTB) SkipNow()                         {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.Logf(format, args...)
	r.Fail()
}
func (r *recordingTB) Error(args ...any) { r.Log(args...); r.Fail() }
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
}
func (r *recordingTB) Fatal(args ...any) { r.Error(args...) }
func (r *recordingTB) FailNow()          { r.Fail() }
func (r *recordingTB) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}
func (r *recordingTB) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recordingTB) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// ranAction matches the machine's log of each action that ran (not
// skipped); the failing one is not logged, as it did not finish.
var ranAction = regexp.MustCompile(`^\[corral\] ran (.*)$`)

// actions returns the actions of the last replay (the shrunk case rapid
// prints after its failure report) that ran to the end.
func (r *recordingTB) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.HasPrefix(l, "[rapid] draw preloaded_processes") {
			out = out[:0] // a new run of the property begins
		}
		if m := ranAction.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return slices.Clone(out)
}

// firstFailure returns rapid's failure line.
func (r *recordingTB) firstFailure() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.HasPrefix(l, "[rapid] failed") || strings.HasPrefix(l, "[rapid] panic") || strings.HasPrefix(l, "[rapid] flaky") {
			first, _, _ := strings.Cut(l, "\nTo reproduce")
			return first
		}
	}
	return "(no rapid failure line)"
}

// --- the planted seams (as in scenarios/planted_test.go) -----------------

// tableLock serialises every request behind one lock, as upstream's
// health loop holds the table lock across blocking probes: one hung worker
// then freezes every client. The lock is a channel, not a sync.Mutex: a
// goroutine waiting on a mutex is not durably blocked, and the bubble's
// clock would never move on to end the holder's wait.
func tableLock() manager.Middleware {
	lock := make(chan struct{}, 1)
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			lock <- struct{}{}
			defer func() { <-lock }()
			return next.Handle(ctx, req)
		})
	}
}
