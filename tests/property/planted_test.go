package property

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
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
			tr.wrap = wrapProcesses(neverKills)
		}},
		{"failed init leaves its process", func(tr *tier) {
			tr.wrap = wrapProcesses(keepsFailedInit)
		}},
		{"health record outlives its pipeline", func(tr *tier) {
			tr.middleware = func() []manager.Middleware { return []manager.Middleware{keepRemovedEntries()} }
		}},
		{"stale response to the next caller", func(tr *tier) {
			tr.middleware = func() []manager.Middleware { return []manager.Middleware{staleAfterTimeout()} }
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

// keepRemovedEntries rewrites inspect answers so a pipeline that left the
// table keeps its entry and health record.
func keepRemovedEntries() manager.Middleware {
	var mu sync.Mutex
	seen := map[string]protocol.PipelineInfo{}
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			resp := next.Handle(ctx, req)
			infos, ok := resp.Fields["pipelines"].([]protocol.PipelineInfo)
			if req.Type != protocol.TypeInspect || !ok {
				return resp
			}
			mu.Lock()
			defer mu.Unlock()
			present := map[string]bool{}
			for _, p := range infos {
				present[p.PipelineID] = true
				seen[p.PipelineID] = p
			}
			out := slices.Clone(infos)
			for id, p := range seen {
				if !present[id] {
					out = append(out, p)
				}
			}
			fields := map[string]any{}
			for k, v := range resp.Fields {
				fields[k] = v
			}
			fields["pipelines"] = out
			resp.Fields = fields
			return resp
		})
	}
}

// staleAfterTimeout: after a command to a pipeline timed out, the next
// command of another kind to that pipeline gets the previous answer, as
// when a late reply stays in the channel and the next caller reads it.
func staleAfterTimeout() manager.Middleware {
	var mu sync.Mutex
	type answer struct {
		command string
		resp    protocol.Response
	}
	last := map[string]answer{}
	armed := map[string]bool{}
	commands := []string{protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume}
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if !slices.Contains(commands, req.Type) {
				return next.Handle(ctx, req)
			}
			id := req.PipelineID
			mu.Lock()
			if a, ok := last[id]; ok && armed[id] && a.command != req.Type {
				armed[id] = false
				mu.Unlock()
				return a.resp
			}
			mu.Unlock()
			resp := next.Handle(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case resp.OK() && (req.Type == protocol.TypeStatus || req.Type == protocol.TypeConsumeResult):
				last[id] = answer{req.Type, resp}
			case isTimeout(resp):
				armed[id] = true
			}
			return resp
		})
	}
}

// brokenLauncher wraps every process the real launcher starts. Its Close
// does not reach the real launcher (the broken manager forgets its
// workers); the machine closes the in-memory launcher itself at the end of
// each check, so nothing outlives the bubble.
type brokenLauncher struct {
	real launch.Launcher
	wrap func(launch.Process) launch.Process
}

func (l *brokenLauncher) Launch(ctx context.Context, opts launch.Options) (launch.Process, error) {
	p, err := l.real.Launch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return l.wrap(p), nil
}

func (l *brokenLauncher) Close() error { return nil }

func wrapProcesses(wrap func(launch.Process) launch.Process) func(launch.Launcher) launch.Launcher {
	return func(real launch.Launcher) launch.Launcher { return &brokenLauncher{real: real, wrap: wrap} }
}

// deafProcess ignores Terminate and Kill unless obeys says otherwise.
type deafProcess struct {
	launch.Process
	conn  launch.Conn
	obeys func() bool
}

func (p *deafProcess) Conn() launch.Conn { return p.conn }

func (p *deafProcess) Terminate() error {
	if p.obeys() {
		return p.Process.Terminate()
	}
	return nil
}

func (p *deafProcess) Kill() error {
	if p.obeys() {
		return p.Process.Kill()
	}
	return nil
}

// dropTerminate is a channel that never delivers the terminate command.
type dropTerminate struct{ launch.Conn }

func (c dropTerminate) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(`"type":"terminate"`)) {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// neverKills: the stop sequence reaches no worker (no terminate, no
// SIGTERM, no SIGKILL), as when upstream's signal handler crashes and
// orphans its workers.
func neverKills(p launch.Process) launch.Process {
	return &deafProcess{Process: p, conn: dropTerminate{p.Conn()}, obeys: func() bool { return false }}
}

// watchSuccess marks its flag once the worker has answered with success.
type watchSuccess struct {
	launch.Conn
	ok *atomic.Bool
}

func (c watchSuccess) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if bytes.Contains(b[:n], []byte(`"status":"success"`)) {
		c.ok.Store(true)
	}
	return n, err
}

// keepsFailedInit: a worker that never answered with success (its init
// failed) is neither terminated nor killed, and never gets the terminate
// command, as upstream leaves a phantom process after a failed init.
func keepsFailedInit(p launch.Process) launch.Process {
	ok := new(atomic.Bool)
	return &deafProcess{Process: p, conn: dropTerminateUnless{watchSuccess{p.Conn(), ok}, ok}, obeys: ok.Load}
}

// dropTerminateUnless drops the terminate command until ok is set.
type dropTerminateUnless struct {
	watchSuccess
	ok *atomic.Bool
}

func (c dropTerminateUnless) Write(b []byte) (int, error) {
	if !c.ok.Load() && bytes.Contains(b, []byte(`"type":"terminate"`)) {
		return len(b), nil
	}
	return c.watchSuccess.Write(b)
}
