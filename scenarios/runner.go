package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	corralotel "github.com/corral-dev/corral/otel"
)

// Phases of a run, as census samples and progress lines name them; the
// census taken after the manager's shutdown is PhaseFinal.
const (
	PhaseStart    = "start"
	PhaseWarmUp   = "warm-up"
	PhaseChaos    = "chaos"
	PhaseHeal     = "heal"
	PhaseQuiesce  = "quiesce"
	PhaseChecks   = "checks"
	PhaseShutdown = "shutdown"
)

// Epsilon is the slack the checkers allow on every bound.
const Epsilon = 500 * time.Millisecond

// Options configure a run. The zero value runs the scenario as written
// against an embedded manager, writing under runs/.
type Options struct {
	// Seed overrides the scenario's seed; nil keeps it.
	Seed *int64
	// Duration overrides the length of the chaos phase; 0 keeps it.
	Duration time.Duration
	// Out is the run folder; "" means runs/<UTC time>-<scenario>-<seed>/.
	Out string
	// Source is how the user named the scenario (a built-in name or a
	// file), for the replay command; "" means the scenario's name.
	Source string
	// Target is host:port of a manager to test; "" starts an embedded one.
	Target string
	// TargetPid is the external manager's pid: with it the run can shut
	// the manager down and take a process census; 0 means unknown. It
	// must own a listening socket on Target's port, or Run refuses.
	TargetPid int
	// Profile names the target's profile (ProfileCorral, ProfileUpstream,
	// ProfileGeneric); "" detects it from the answer to one inspect probe.
	// Ignored for the embedded manager (always corral).
	Profile string
	// Bounds overrides the bounds the target is judged by (--bounds),
	// over the scenario's bounds: and manager: sections.
	Bounds BoundsSpec
	// WorkerCommand starts the embedded manager's workers; nil means
	// os.Executable() + "worker". A test binary passes []string{os.Args[0]}
	// and calls worker.Main from TestMain (see Require).
	WorkerCommand []string
	// WorkerEnv adds environment entries to every worker.
	WorkerEnv []string
	// Progress receives one line per phase, or a progress bar when it is a
	// terminal; nil prints nothing.
	Progress io.Writer
	// Log receives the embedded manager's diagnostics; nil writes them to
	// manager.log in the run folder.
	Log *slog.Logger

	// Seams for tests that plant bugs in the embedded manager.
	Middleware   []manager.Middleware                  // after Recover, outermost first
	WrapLauncher func(launch.Launcher) launch.Launcher // wraps the process launcher
	Configure    func(*manager.Config)                 // last word on the configuration
	Checkers     []Checker                             // nil means DefaultCheckers
}

// runner is one run in progress.
type runner struct {
	sc     *Scenario
	seed   int64
	o      Options
	cfg    manager.Config
	bounds Bounds
	dir    string
	plan   []PlanEntry
	tl     Timeline
	start  time.Time

	tgt         *target
	tr          *runTracing
	hist        *History
	client      *protocol.Client // workload commands
	faultClient *protocol.Client // chaos target
	ids         *pipelines
	initFields  map[string]any
	profile     Profile
	workers     *workerMap
	faultsFired atomic.Int64

	mu          sync.Mutex
	phase       string
	census      []CensusSample
	inspects    []InspectSample
	polls       []PollSample
	pgids       map[int]bool
	shutdownRec ShutdownRecord
	interrupted int64 // ns since start when the run was cut short; 0 if not

	progress *progress
}

// Run plays sc against a manager and judges it: it plans the run from the
// seed, starts (or connects to) the manager, runs the phases (warm-up,
// chaos, heal, quiesce, final checks, shutdown) while recording the
// history and sampling the manager's view and the process table, then
// evaluates the checkers and writes the reports into the run folder.
//
// Errors in the scenario or its configuration wrap ErrInvalidScenario and
// come before anything runs. A run that was cancelled still writes its
// report and returns it along with ctx's error.
func Run(ctx context.Context, sc *Scenario, o Options) (*Report, error) {
	r, err := prepare(sc, o)
	if err != nil {
		return nil, err
	}
	logFile, err := r.makeDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if logFile != nil {
			logFile.Close()
		}
	}()
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// Everything below is bounded by the plan plus every shutdown bound.
	ctx, cancel := context.WithTimeout(ctx, r.totalBound())
	defer cancel()

	r.setPhase(PhaseStart)
	if r.tr, err = startTracing(ctx, r.dir, o.Target == "", log); err != nil {
		return nil, err
	}
	// Deferred before the target's close, so that a run that fails early
	// flushes after the manager has stopped; normally the flush below
	// comes first and this one does nothing.
	defer r.tr.flush()
	if o.Target == "" {
		eo := o
		eo.WrapLauncher = r.watchSweep(o.WrapLauncher)
		// Worker settings of the manager: section reach the workers
		// through their environment (they have no manager flag).
		eo.WorkerEnv = slices.Clone(o.WorkerEnv)
		for _, k := range protocol.WorkerSettings {
			if v, ok := r.sc.Manager[k]; ok {
				eo.WorkerEnv = append(eo.WorkerEnv, k+"="+v)
			}
		}
		r.tgt, err = startEmbedded(r.cfg, eo, r.dir, log, r.tr)
	} else {
		r.tgt, err = connectExternal(ctx, o.Target, o.TargetPid)
	}
	if err != nil {
		return nil, err
	}
	defer r.tgt.close()
	if err := r.settleProfile(ctx); err != nil {
		return nil, err
	}
	opBound := r.bounds.QueueTimeout + r.bounds.Grace + r.bounds.Join + 2*time.Second
	// Both clients send the traceparent of the span in their ctx: the
	// harness's CLIENT and fault spans (see runner_traces.go).
	r.client = &protocol.Client{Addr: r.tgt.addr, Timeout: opBound, Traceparent: corralotel.Traceparent()}
	r.faultClient = &protocol.Client{Addr: r.tgt.addr, Timeout: faultDeadline, Traceparent: corralotel.Traceparent()}

	histFile, err := os.Create(filepath.Join(r.dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer histFile.Close()
	r.start = time.Now()
	r.hist = NewHistory(r.start, histFile)
	r.progress.begin(r)
	runErr := r.play(ctx)
	r.progress.end()
	// Every span of the run is in traces.json before the report reads it
	// (workers flushed theirs when they exited).
	if err := r.tr.flush(); err != nil {
		log.Warn("traces.json may be incomplete", "err", err)
	}
	if err := r.hist.Err(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("scenarios: writing history.jsonl: %w", err))
	}

	d := r.data()
	if err := writeSamples(d); err != nil {
		runErr = errors.Join(runErr, err)
	}
	checkers := o.Checkers
	if checkers == nil {
		checkers = DefaultCheckers(r.sc)
	}
	rep := Evaluate(d, checkers)
	if rep.Dir == "" {
		rep.Dir = r.dir
	}
	if rep.Replay == "" {
		rep.Replay = d.Replay
	}
	if err := WriteReports(rep); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("scenarios: writing reports: %w", err))
	}
	return rep, runErr
}

// prepare applies the options to the scenario, validates it and plans.
func prepare(sc *Scenario, o Options) (*runner, error) {
	if sc == nil {
		return nil, fmt.Errorf("%w: no scenario", ErrInvalidScenario)
	}
	s := sc.withDefaults()
	if o.Seed != nil {
		s.Seed = *o.Seed
	}
	if o.Duration != 0 {
		s.Duration = Duration(o.Duration)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Duration < 0 {
		return nil, fmt.Errorf("%w: --duration %s must be positive", ErrInvalidScenario, o.Duration)
	}
	if o.TargetPid != 0 && o.Target == "" {
		return nil, fmt.Errorf("%w: --target-pid needs --target", ErrInvalidScenario)
	}
	cfg, err := s.managerConfig()
	if err != nil {
		return nil, fmt.Errorf("%w %s: manager: %w", ErrInvalidScenario, s.Name, err)
	}
	if o.Configure != nil {
		o.Configure(&cfg)
		cfg.Port, cfg.Chaos = 0, true
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%w: Options.Configure: %w", ErrInvalidScenario, err)
		}
	}
	if errs := o.Bounds.validate("--bounds "); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidScenario, errors.Join(errs...))
	}
	r := &runner{sc: s, seed: s.Seed, o: o, cfg: cfg, plan: PlanRun(s, s.Seed), tl: TimelineOf(s),
		ids: newPipelines(), pgids: map[int]bool{}, workers: newWorkerMap()}
	r.bounds = resolveBounds(cfg, s, o.Bounds, Profile{}) // settled again with the target's profile
	r.progress = newProgress(o.Progress, s.Name, s.Seed, r.tl)
	return r, nil
}

// makeDir creates the run folder and writes what replays the run:
// scenario.yaml (the effective scenario, seed included) and seed
// (schedule.jsonl follows once the target's profile is known, see
// settleProfile). It returns manager.log, opened for the manager's log.
func (r *runner) makeDir() (*os.File, error) {
	r.dir = r.o.Out
	if r.dir == "" {
		r.dir = filepath.Join("runs", fmt.Sprintf("%s-%s-%d", time.Now().UTC().Format("20060102T150405Z"), r.sc.Name, r.seed))
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	y, err := yaml.Marshal(r.sc)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{
		"scenario.yaml": y,
		"seed":          []byte(strconv.FormatInt(r.seed, 10) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(r.dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	return os.Create(filepath.Join(r.dir, "manager.log"))
}

// totalBound is the longest a run may take: the plan, a command's bound
// after it, the shutdown and the wait for processes to go, plus margin.
func (r *runner) totalBound() time.Duration {
	b := r.bounds
	return r.tl.Shutdown + underLoadTail + b.QueueTimeout + 2*(b.Grace+b.Join) + 30*time.Second
}

// play runs the phases: clients, the keeper, the nemesis and the sampler
// run until the plan is done and the manager has shut down; then the last
// census is taken.
func (r *runner) play(ctx context.Context) error {
	byProcess := map[string][]PlanEntry{}
	var faults []PlanEntry
	for _, e := range r.plan {
		if e.Process == Nemesis {
			faults = append(faults, e)
		} else {
			byProcess[e.Process] = append(byProcess[e.Process], e)
		}
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var sampler, workers sync.WaitGroup
	sampler.Go(func() { r.sample(sampleCtx) })
	for _, entries := range byProcess {
		workers.Go(func() { r.runClient(ctx, entries) })
	}
	workers.Go(func() { r.keep(ctx) })
	workers.Go(func() { r.runChurn(ctx) })
	nemesisDone := make(chan struct{})
	workers.Go(func() { defer close(nemesisDone); r.runNemesis(ctx, faults) })

	r.setPhase(PhaseWarmUp)
	for _, p := range []struct {
		at    time.Duration
		phase string
	}{{r.tl.Chaos, PhaseChaos}, {r.tl.Heal, PhaseHeal}, {r.tl.Quiesce, PhaseQuiesce}, {r.tl.Final, PhaseChecks}} {
		if !r.sleepUntil(ctx, p.at) {
			break
		}
		r.setPhase(p.phase)
	}
	select {
	case <-nemesisDone:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		// Cut short (SIGINT, the run's own bound): what was planned after
		// this was never reached, which is not the manager's doing.
		r.mu.Lock()
		r.interrupted = int64(r.since())
		r.mu.Unlock()
	}
	workers.Wait()

	// The final census: after the shutdown, once the processes have had
	// the join timeout (plus a second) to go. While any remains it is
	// taken no earlier than the shutdown's bound, so bounded_shutdown
	// sees the workers that outlived a manager which exited at once.
	r.mu.Lock()
	signalled, requested := r.shutdownRec.Signal != "", time.Duration(r.shutdownRec.Requested)
	r.mu.Unlock()
	if signalled {
		deadline := time.Now().Add(r.bounds.Join + time.Second)
		if bound := r.start.Add(requested + r.bounds.Grace + r.bounds.Join + r.bounds.Epsilon + 100*time.Millisecond); bound.After(deadline) {
			deadline = bound
		}
		for len(r.takeCensus()) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		start := r.since()
		r.recordCensus(start, PhaseFinal, r.takeCensus())
	}
	stopSampling()
	sampler.Wait()
	return ctx.Err()
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
	r.progress.phase(p)
}

func (r *runner) currentPhase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// data gathers what the run observed for the checkers.
func (r *runner) data() *RunData {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &RunData{
		Scenario: r.sc, Seed: r.seed, Start: r.start, Dir: r.dir, Embedded: r.tgt.embedded,
		Plan: r.plan, Ops: r.hist.Ops(), Census: r.census, Inspects: r.inspects, Polls: r.polls, Profile: r.profile,
		WorkerPids: r.workers.pids(),
		TargetAddr: r.o.Target, TargetPid: r.o.TargetPid,
		Bounds: r.bounds, Shutdown: r.shutdownRec, Replay: r.replay(), Interrupted: r.interrupted,
		TracesFile: r.tr.file, TraceURL: r.tr.url,
	}
}

// replay is the command line that replays this run.
func (r *runner) replay() string {
	src := r.o.Source
	if src == "" {
		src = r.sc.Name
	}
	parts := []string{"corral", "run", shellQuote(src), "--seed", strconv.FormatInt(r.seed, 10)}
	if r.o.Duration != 0 {
		parts = append(parts, "--duration", r.o.Duration.String())
	}
	if r.o.Target != "" {
		parts = append(parts, "--target", shellQuote(r.o.Target))
		if r.o.TargetPid != 0 {
			parts = append(parts, "--target-pid", strconv.Itoa(r.o.TargetPid))
		}
		if r.o.Profile != "" {
			parts = append(parts, "--profile", r.o.Profile)
		}
	}
	if b := r.o.Bounds.String(); b != "" {
		parts = append(parts, "--bounds", b)
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeSamples saves the manager's view and the census next to the
// history (inspect.jsonl, census.jsonl), for debugging a verdict.
func writeSamples(d *RunData) error {
	write := func(name string, n int, line func(i int) any) error {
		f, err := os.Create(filepath.Join(d.Dir, name))
		if err != nil {
			return err
		}
		enc := json.NewEncoder(f)
		for i := range n {
			if err := enc.Encode(line(i)); err != nil {
				f.Close()
				return err
			}
		}
		return f.Close()
	}
	return errors.Join(
		write("inspect.jsonl", len(d.Inspects), func(i int) any { return d.Inspects[i] }),
		write("polls.jsonl", len(d.Polls), func(i int) any { return d.Polls[i] }),
		write("census.jsonl", len(d.Census), func(i int) any { return d.Census[i] }))
}
