package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// target is the manager under test: embedded in this process or reached
// at an address (with its pid, if known).
type target struct {
	addr     string
	embedded bool
	// managerPid is the external manager's pid (0: unknown or embedded).
	managerPid int
	// signal reaches the embedded manager's shutdown; nil for external
	// managers (chaos then signals managerPid).
	signal func(sig string) error
	// exited is closed once the manager has exited (embedded: its
	// shutdown returned; external: its pid is gone).
	exited chan struct{}
	// census lists the manager's workers and their descendants; pgids are
	// the worker groups seen in inspect so far.
	census func(pgids []int) []launch.ProcInfo
	// close stops whatever is still running, bounded; safe to call twice.
	close func()

	mu       sync.Mutex
	exitTime time.Time
	exitCode int
	note     string // how the shutdown was carried out, for the history
}

func (t *target) markExited(code int, note string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.exited:
		return
	default:
	}
	t.exitTime, t.exitCode, t.note = time.Now(), code, note
	close(t.exited)
}

func (t *target) exit() (time.Time, int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.exitTime, t.exitCode, t.note
}

// startEmbedded starts the reference manager in this process with real
// worker processes and serves it on a free loopback port.
// Its commands and events are traced through tr, and its workers append
// their spans to the same traces.json.
func startEmbedded(cfg manager.Config, o Options, dir string, log *slog.Logger, tr *runTracing) (*target, error) {
	stderr, err := os.Create(filepath.Join(dir, "workers.log"))
	if err != nil {
		return nil, err
	}
	env := append(tr.workerEnv(), o.WorkerEnv...)
	procs, err := launch.NewProcesses(launch.ProcessConfig{Command: o.WorkerCommand, Env: env,
		Stderr: stderr, Subreaper: true, Log: log})
	if err != nil {
		stderr.Close()
		return nil, err
	}
	var launcher launch.Launcher = procs
	if o.WrapLauncher != nil {
		launcher = o.WrapLauncher(procs)
	}
	svc, err := manager.StartService(cfg, manager.Options{Launcher: launcher, Log: log,
		Hook: manager.Hooks(manager.LogEvents(log), tr.hook())},
		append([]manager.Middleware{tr.middleware()}, o.Middleware...)...)
	if err != nil {
		stderr.Close()
		var ce *manager.ConfigError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidScenario, err)
		}
		return nil, err
	}

	t := &target{addr: svc.Addr(), embedded: true, exited: make(chan struct{})}
	var wg sync.WaitGroup
	var once sync.Once
	bound := svc.ShutdownBound() + cfg.SocketTimeout + 2*time.Second
	// stop runs the manager's end once: graceful is SIGTERM semantics
	// (bounded three-phase shutdown); otherwise SIGKILL is emulated, since
	// a process cannot SIGKILL itself and go on judging the run: every
	// worker group is killed through the launcher at once, and the service
	// is shut down in a hurry (no grace, requests in flight cancelled).
	stop := func(graceful bool) {
		once.Do(func() {
			wg.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if !graceful {
					_ = launcher.Close()
					t.markExited(-1, "embedded manager: SIGKILL emulated by killing every worker group through the launcher, without graceful phases")
					cancel()
				}
				// Shutdown is bounded by itself (ShutdownBound plus the
				// socket timeout).
				if err := svc.Shutdown(ctx); err != nil {
					t.markExited(1, fmt.Sprintf("embedded manager: shutdown: %v", err))
					return
				}
				t.markExited(0, "embedded manager: shutdown complete")
			})
		})
	}
	t.signal = func(sig string) error {
		switch strings.TrimPrefix(strings.ToUpper(sig), "SIG") {
		case "TERM", "INT":
			stop(true)
		case "KILL":
			stop(false)
		default:
			return fmt.Errorf("embedded manager: signal %q not supported", sig)
		}
		return nil
	}
	t.census = func(pgids []int) []launch.ProcInfo {
		procs, _ := launch.Census(procs.Marker())
		return mergeProcs(procs, groupMembers(pgids))
	}
	t.close = func() {
		stop(true)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(bound + 2*time.Second):
			log.Error("embedded manager: shutdown goroutine still running at close")
		}
		stderr.Close()
	}
	return t, nil
}

// connectExternal describes a manager started elsewhere. With pid, its
// shutdown signals go there and its census is its descendants plus every
// worker group seen in inspect (plus every process carrying its workers'
// marker, once a worker's environment has shown it).
func connectExternal(ctx context.Context, addr string, pid int) (*target, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --target %s: %w", ErrInvalidScenario, addr, err)
	}
	c.Close()
	t := &target{addr: addr, managerPid: pid, exited: make(chan struct{}), close: func() {}}
	if pid > 0 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return nil, fmt.Errorf("%w: --target-pid %d: no such process", ErrInvalidScenario, pid)
		}
		// Refuse before anything is signalled: a wrong pid would make the
		// faults hit an unrelated process and the census judge its
		// children.
		if err := checkPortOwner(pid, addr); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidScenario, err)
		}
	}
	var mu sync.Mutex
	marker := ""
	// Every process once seen below the manager stays in the census while
	// it lives: a worker orphaned by a crashed manager is re-parented away
	// from its tree, and must still count as leaked.
	seen := map[procKey]bool{}
	t.census = func(pgids []int) []launch.ProcInfo {
		all, _ := launch.Scan(nil)
		var out []launch.ProcInfo
		if pid > 0 {
			out = descendants(all, pid)
		}
		out = mergeProcs(out, groupMembers(pgids))
		mu.Lock()
		defer mu.Unlock()
		for _, p := range all {
			if seen[keyOf(p)] && !slices.ContainsFunc(out, func(q launch.ProcInfo) bool { return q.Pid == p.Pid }) {
				out = append(out, p)
			}
		}
		for _, p := range out {
			seen[keyOf(p)] = true
		}
		if marker == "" {
			for _, p := range out {
				if marker = environValue(p.Pid, protocol.EnvManagerMarker); marker != "" {
					break
				}
			}
		}
		if marker != "" {
			m, _ := launch.Census(marker)
			out = mergeProcs(out, m)
		}
		return out
	}
	return t, nil
}

// settleProfile decides the target's profile (embedded: corral; else
// --profile or the inspect probe), narrows it to what the target allows,
// marks the plan entries it cannot carry out, writes schedule.jsonl and
// builds the init request.
func (r *runner) settleProfile(ctx context.Context) error {
	var p Profile
	var err error
	chaosOn := true
	switch {
	case r.tgt.embedded:
		p, _ = ProfileByName(ProfileCorral)
		p.Source = "the embedded manager"
	case r.o.Profile == "":
		if p, chaosOn, err = DetectProfile(ctx, r.tgt.addr); err != nil {
			return err
		}
	default:
		if p, err = ProfileByName(r.o.Profile); err != nil {
			return err
		}
		p.Source = "--profile " + r.o.Profile
		chaosOn = p.Has(protocol.TypeChaos) && ProbeChaos(ctx, r.tgt.addr)
	}
	r.profile = p.forTarget(r.tgt.embedded, r.tgt.managerPid, chaosOn)
	if !r.tgt.embedded && r.profile.Has(protocol.TypeInspect) && r.profile.Limits == nil {
		r.profile.Limits = TargetLimits(ctx, r.tgt.addr)
	}
	if !r.tgt.embedded {
		if err := checkEmpty(ctx, r.tgt.addr); err != nil {
			return err
		}
	}
	r.bounds = resolveBounds(r.cfg, r.sc, r.o.Bounds, r.profile)
	r.initFields = r.profile.initFields(r.sc.Video, r.sc.Init)
	r.plan = markApplicability(r.plan, r.profile)
	var sched strings.Builder
	if err := WriteSchedule(&sched, r.plan); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.dir, "schedule.jsonl"), []byte(sched.String()), 0o644)
}

// waitPidExit polls until pid is gone (or a zombie) or bound passes.
func waitPidExit(ctx context.Context, pid int, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		info, err := launch.Stat(pid)
		if err != nil || info.Zombie() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func groupMembers(pgids []int) []launch.ProcInfo {
	// One scan of /proc for every group: a scan per group made each
	// census take seconds once a run had seen hundreds of pipelines.
	want := map[int]bool{}
	for _, g := range pgids {
		if g > 1 {
			want[g] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	out, _ := launch.Scan(func(p launch.ProcInfo) bool { return want[p.Pgid] })
	return out
}

// mergeProcs joins process lists, one row per pid, sorted by pid.
func mergeProcs(lists ...[]launch.ProcInfo) []launch.ProcInfo {
	seen := map[int]bool{}
	var out []launch.ProcInfo
	for _, l := range lists {
		for _, p := range l {
			if !seen[p.Pid] && p.Pid != os.Getpid() {
				seen[p.Pid] = true
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b launch.ProcInfo) int { return a.Pid - b.Pid })
	return out
}

// descendants returns every process below root in the parent tree.
func descendants(all []launch.ProcInfo, root int) []launch.ProcInfo {
	children := map[int][]launch.ProcInfo{}
	for _, p := range all {
		children[p.PPid] = append(children[p.PPid], p)
	}
	var out []launch.ProcInfo
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c.Pid)
		}
	}
	return out
}

// environValue reads one variable of another process's environment.
func environValue(pid int, key string) string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return ""
	}
	for entry := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(entry, []byte(key+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// signalExternal is used when no chaos fault carries the shutdown.
func signalExternal(pid int, sig string) error {
	s := syscall.SIGTERM
	if strings.Contains(strings.ToUpper(sig), "KILL") {
		s = syscall.SIGKILL
	}
	return syscall.Kill(pid, s)
}

// checkEmpty refuses an external target that already lists pipelines
// (left by an earlier run, or a user's): the checkers model every id
// from its init, so ids nobody here created would read as phantoms.
func checkEmpty(ctx context.Context, addr string) error {
	ids, err := probeClient(addr).List(ctx)
	if err != nil {
		return fmt.Errorf("%w: --target %s: list_pipelines: %w", ErrInvalidScenario, addr, err)
	}
	if len(ids) > 0 {
		shown := ids[:min(len(ids), 3)]
		return fmt.Errorf("%w: --target %s already has %d pipelines (%s): a run judges a manager that starts empty; terminate them or restart the target",
			ErrInvalidScenario, addr, len(ids), strings.Join(shown, ", "))
	}
	return nil
}
