package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/scenarios"
)

// Options tune one run.
type Options struct {
	// Command returns the command that runs the corral program with args:
	// the floor, echo and `corral serve` children are this binary.
	Command func(args ...string) *exec.Cmd
	// Cell is how long each load cell runs.
	Cell time.Duration
	// Quick shortens everything else too (fewer samples, shorter
	// windows): a smoke run of every measurement, not a measurement.
	Quick bool
	// Progress, if set, is told what runs now.
	Progress func(string)
}

// The manager's health settings in the main run: short, so the hang
// detection is measured in seconds; probe_cpu_pct is measured with them.
const (
	healthInterval = time.Second
	healthTimeout  = time.Second
	healthFailures = 2
)

// Machine describes where a result was measured.
type Machine struct {
	Cores   int     `json:"cores"`
	Go      string  `json:"go"`
	OSArch  string  `json:"os_arch"`
	Load1   float64 `json:"load1_start"` // 1-minute load average when the run began
	Load1At float64 `json:"load1_end"`
}

// Floor is the physical floor measured in the same run.
type Floor struct {
	// Cells is the no-work server at 1, 8, 64 clients, measured beside
	// 1 then 16 running pipelines, each right before the manager's cells.
	Cells     []Cell  `json:"cells"`
	PipeRTTus float64 `json:"pipe_rtt_us"` // median raw pipe round trip to a child
}

// Result is one run of `corral bench`; every key is always present.
type Result struct {
	Machine        Machine `json:"machine"`
	Commit         string  `json:"commit"`
	CellSeconds    float64 `json:"cell_s"`
	Floor          Floor   `json:"floor"`
	List           []Cell  `json:"list"`   // 1, 8, 64 clients over 1 then 16 pipelines
	Status         []Cell  `json:"status"` // same cells; client i asks pipeline i mod n
	StatusFanRatio float64 `json:"status_64_over_1_ratio"`

	OtelOverheadRatio     float64 `json:"otel_overhead_ratio"`
	OtelNoopOverheadRatio float64 `json:"otel_noop_overhead_ratio"`

	ShutdownS        map[string]float64 `json:"shutdown_s"` // pipelines -> seconds, workers ignoring SIGTERM, grace 1 s, join 1 s
	CrashDetectMsP50 float64            `json:"crash_detect_ms_p50"`
	HangDetectS      float64            `json:"hang_detect_s"`
	HangBoundS       float64            `json:"hang_bound_s"`
	InitColdMsP50    float64            `json:"init_cold_ms_p50"`
	InitWarmMsP50    float64            `json:"init_warm_ms_p50"`
	ManagerRSSMB     float64            `json:"manager_rss_mb"`
	WorkerRSSMB      float64            `json:"worker_rss_mb"` // median over the 64 workers
	ProbeCPUPct      float64            `json:"probe_cpu_pct"`
	ProbeIntervalS   float64            `json:"probe_interval_s"`

	Targets []Target `json:"targets"`
}

// Run measures everything once. It returns the partial result with the
// first error that stopped it.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Cell <= 0 {
		o.Cell = 2 * time.Second
	}
	say := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	r := &Result{Machine: machine(), Commit: commit(), CellSeconds: o.Cell.Seconds(),
		ShutdownS: map[string]float64{}, HangBoundS: scenarios.HangBound(scenarios.Bounds{
			HealthInterval: healthInterval, HealthTimeout: healthTimeout, MaxHealthFailures: healthFailures}).Seconds(),
		ProbeIntervalS: healthInterval.Seconds()}
	samples := 5
	if o.Quick {
		samples = 3
	}
	clients := []int{1, 8, 64}

	say("floor")
	rtts := 2000
	if o.Quick {
		rtts = 200
	}
	rtt, err := pipeRoundTrip(ctx, o.Command, rtts)
	if err != nil {
		return r, fmt.Errorf("bench: pipe round trip: %w", err)
	}
	r.Floor.PipeRTTus = float64(rtt.Nanoseconds()) / 1e3

	say("floor, list and status")
	floor, floorAddr, err := startFloor(o.Command)
	if err != nil {
		return r, err
	}
	defer floor.stop(5 * time.Second)
	s, err := startServe(o.Command, "--health-check-interval", healthInterval.String(),
		"--health-check-timeout", healthTimeout.String(), "--max-health-failures", strconv.Itoa(healthFailures))
	if err != nil {
		return r, err
	}
	defer s.kill() // after a measured shutdown, a no-op
	list := [][]byte{request(protocol.TypeListPipelines, "")}
	var ids []string
	for _, np := range []int{1, 16} {
		more, err := s.initN(ctx, np-len(ids))
		if err != nil {
			return r, err
		}
		ids = append(ids, more...)
		status := make([][]byte, len(ids))
		for i, id := range ids {
			status[i] = request(protocol.TypeStatus, id)
		}
		// The floor's cell right before the manager's at the same client
		// count, beside the same running pipelines: a load spike from
		// elsewhere lands on both sides of a ratio, not on one.
		for _, n := range clients {
			f := load(ctx, floorAddr, list, n, o.Cell, 10*time.Second)
			f.Pipelines = np
			r.Floor.Cells = append(r.Floor.Cells, f)
			c := load(ctx, s.addr, list, n, o.Cell, 10*time.Second)
			c.Pipelines = np
			c.ratioTo(f)
			r.List = append(r.List, c)
			c = load(ctx, s.addr, status, n, o.Cell, 10*time.Second)
			c.Pipelines = np
			c.ratioTo(f)
			r.Status = append(r.Status, c)
		}
	}
	if r.Status[0].OpsPerSec > 0 {
		r.StatusFanRatio = r.Status[2].OpsPerSec / r.Status[0].OpsPerSec
	}

	say("otel overhead")
	otelFor := 5 * time.Second
	if o.Quick {
		otelFor = time.Second
	}
	if r.OtelOverheadRatio, r.OtelNoopOverheadRatio, err = otelRatios(ctx, otelFor); err != nil {
		return r, err
	}

	say("64 pipelines: memory and probe CPU")
	if err := s.topUp(ctx, 64); err != nil {
		return r, err
	}
	if err := sleep(ctx, 2*healthInterval); err != nil { // every worker probed and settled
		return r, err
	}
	if err := s.memory(ctx, r); err != nil {
		return r, err
	}
	window := 5 * time.Second
	if o.Quick {
		window = 2 * time.Second
	}
	if r.ProbeCPUPct, err = cpuPct(ctx, s.pid(), window); err != nil {
		return r, err
	}

	say("crash and hang detection")
	if r.CrashDetectMsP50, err = s.crashDetect(ctx, samples); err != nil {
		return r, err
	}
	if r.HangDetectS, err = s.hangDetect(ctx, time.Duration(3*r.HangBoundS*float64(time.Second))); err != nil {
		return r, err
	}

	say("shutdown with 64 pipelines ignoring SIGTERM")
	if err := s.topUp(ctx, 64); err != nil {
		return r, err
	}
	if r.ShutdownS["64"], err = s.stubbornShutdown(ctx); err != nil {
		return r, err
	}

	say("cold init, shutdown with 1 pipeline")
	cold, err := startServe(o.Command, "--preloaded-processes", "0")
	if err != nil {
		return r, err
	}
	defer cold.kill()
	if r.InitColdMsP50, err = cold.initLatency(ctx, samples, 0); err != nil {
		return r, err
	}
	if err := cold.trimTo(ctx, 1); err != nil {
		return r, err
	}
	if r.ShutdownS["1"], err = cold.stubbornShutdown(ctx); err != nil {
		return r, err
	}

	say("warm init, shutdown with 16 pipelines")
	warm, err := startServe(o.Command, "--preloaded-processes", "2")
	if err != nil {
		return r, err
	}
	defer warm.kill()
	if r.InitWarmMsP50, err = warm.initLatency(ctx, samples, 2); err != nil {
		return r, err
	}
	if err := warm.topUp(ctx, 16); err != nil {
		return r, err
	}
	if r.ShutdownS["16"], err = warm.stubbornShutdown(ctx); err != nil {
		return r, err
	}
	r.Machine.Load1At = load1()
	r.Targets = targets(r)
	return r, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// topUp starts pipelines until n are listed.
func (s *server) topUp(ctx context.Context, n int) error {
	pids, _, err := s.workerPids(ctx)
	if err != nil {
		return err
	}
	_, err = s.initN(ctx, n-len(pids))
	return err
}

// trimTo terminates pipelines until n are listed.
func (s *server) trimTo(ctx context.Context, n int) error {
	ids, err := s.client.List(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids[:max(len(ids)-n, 0)] {
		if err := s.client.Terminate(ctx, id); err != nil {
			return fmt.Errorf("bench: terminate: %w", err)
		}
	}
	return nil
}

// memory records the manager's resident set and the workers' median.
func (s *server) memory(ctx context.Context, r *Result) error {
	pids, _, err := s.workerPids(ctx)
	if err != nil {
		return err
	}
	if r.ManagerRSSMB, err = rssMB(s.pid()); err != nil {
		return err
	}
	var ws []float64
	for _, pid := range pids {
		if mb, err := rssMB(pid); err == nil {
			ws = append(ws, mb)
		}
	}
	if len(ws) == 0 {
		return errors.New("bench: no worker to measure")
	}
	slices.Sort(ws)
	r.WorkerRSSMB = ws[len(ws)/2]
	return nil
}

// cpuPct is the CPU pid used over window, in percent of one core.
func cpuPct(ctx context.Context, pid int, window time.Duration) (float64, error) {
	before, err := cpuSeconds(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := sleep(ctx, window); err != nil {
		return 0, err
	}
	after, err := cpuSeconds(pid)
	if err != nil {
		return 0, err
	}
	return 100 * (after - before) / time.Since(start).Seconds(), nil
}

// crashDetect SIGKILLs n workers one after another and returns the median
// time from the kill to the pipeline leaving list_pipelines, in ms.
func (s *server) crashDetect(ctx context.Context, n int) (float64, error) {
	var lat []time.Duration
	for range n {
		pids, _, err := s.workerPids(ctx)
		if err != nil {
			return 0, err
		}
		id, pid := anyPipeline(pids)
		if pid <= 0 {
			return 0, errors.New("bench: no worker to crash")
		}
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return 0, err
		}
		if err := waitFor(ctx, 10*time.Second, time.Millisecond, func() (bool, error) { return s.gone(ctx, id) }); err != nil {
			return 0, fmt.Errorf("bench: crashed pipeline still listed: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	return float64(median(lat).Microseconds()) / 1e3, nil
}

// hangDetect SIGSTOPs one worker and returns how long the pipeline stayed
// listed, in seconds.
func (s *server) hangDetect(ctx context.Context, bound time.Duration) (float64, error) {
	pids, _, err := s.workerPids(ctx)
	if err != nil {
		return 0, err
	}
	id, pid := anyPipeline(pids)
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return 0, err
	}
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }() // the manager kills it; never leave one stopped
	if err := waitFor(ctx, bound, 10*time.Millisecond, func() (bool, error) { return s.gone(ctx, id) }); err != nil {
		return 0, fmt.Errorf("bench: hung pipeline still listed: %w", err)
	}
	return time.Since(start).Seconds(), nil
}

func (s *server) gone(ctx context.Context, id string) (bool, error) {
	ids, err := s.client.List(ctx)
	if err != nil {
		return false, err
	}
	return !slices.Contains(ids, id), nil
}

// anyPipeline returns the first id in sorted order and its pid.
func anyPipeline(pids map[string]int) (string, int) {
	ids := make([]string, 0, len(pids))
	for id := range pids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return "", 0
	}
	return ids[0], pids[ids[0]]
}

// stubbornShutdown makes every listed worker ignore SIGTERM, then SIGTERMs
// the manager and returns how long it took to exit, in seconds.
func (s *server) stubbornShutdown(ctx context.Context) (float64, error) {
	ids, err := s.client.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := s.client.Chaos(ctx, id, protocol.ChaosIgnoreSigterm, nil); err != nil {
			return 0, fmt.Errorf("bench: chaos ignore_sigterm: %w", err)
		}
	}
	took, err := s.shutdown(30 * time.Second)
	return took.Seconds(), err
}

// initLatency times n inits, in ms (median). With pool > 0 it waits before
// each init until the warm pool holds pool idle workers.
func (s *server) initLatency(ctx context.Context, n, pool int) (float64, error) {
	var lat []time.Duration
	for range n {
		if pool > 0 {
			err := waitFor(ctx, 30*time.Second, 10*time.Millisecond, func() (bool, error) {
				_, idle, err := s.workerPids(ctx)
				return idle >= pool, err
			})
			if err != nil {
				return 0, fmt.Errorf("bench: warm pool not refilled: %w", err)
			}
			// Listed idle is not yet ready: the refill's process may
			// still be starting, on the same cores as the init.
			if err := sleep(ctx, 300*time.Millisecond); err != nil {
				return 0, err
			}
		}
		start := time.Now()
		if _, err := s.initN(ctx, 1); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(start))
	}
	return float64(median(lat).Microseconds()) / 1e3, nil
}

func machine() Machine {
	return Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH, Load1: load1()}
}

func load1() float64 {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return 0
	}
	return l.Load1
}

// commit is the VCS revision stamped into the binary ("+dirty" when the
// tree had changes); builds without VCS stamping (GOFLAGS=-buildvcs=false)
// ask git in the working directory; else "unknown".
func commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return gitCommit()
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return gitCommit()
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// decodeFields decodes a response's body fields into v.
func decodeFields(fields map[string]any, v any) error {
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func gitCommit() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "+dirty"
	}
	return rev
}
