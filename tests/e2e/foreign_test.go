package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/scenarios"
	"github.com/corral-dev/corral/tests/foreign"
)

// fixtureArgs configure the upstream-like fixture the same way in every
// run, defects on or off: a health pass every 0.5s, 1s to answer, 3 failed
// probes, a 1s grace, a 1s socket timeout (a serial server must not let a
// stalled client hold every other one for upstream's 5s).
var fixtureArgs = []string{"--health-interval", "0.5", "--queue-timeout", "1", "--max-health-failures", "3",
	"--grace", "1", "--socket-timeout", "1"}

// fixtureBounds are the bounds the harness judges the fixture by (it
// cannot read a foreign target's configuration): the settings above, with
// room to spare (a request may wait 2s, not 1s; epsilon 1s), so that a
// loaded machine does not make the fixed fixture late. The defects do not
// depend on them: a frozen server never answers, orphans never exit.
const fixtureBounds = "grace=1s,join=3s,queue_timeout=2s,health_interval=0.5s,health_timeout=1s,max_health_failures=3,crash_detection=3s,epsilon=1s"

// foreignReport is the part of report.json these tests read.
type foreignReport struct {
	Valid   bool   `json:"valid"`
	Verdict string `json:"verdict"`
	Target  struct {
		Profile struct {
			Name   string `json:"name"`
			Source string `json:"source"`
		} `json:"profile"`
	} `json:"target"`
	Results []struct {
		Checker, Verdict, Summary string
		Details                   []string
	} `json:"results"`
}

func readForeignReport(t *testing.T, dir string) foreignReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}
	var r foreignReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	return r
}

// result returns checker's verdict and its text (summary and details).
func (r foreignReport) result(checker string) (verdict, text string) {
	for _, c := range r.Results {
		if c.Checker == checker {
			return c.Verdict, strings.Join(append([]string{c.Summary}, c.Details...), "\n")
		}
	}
	return "", ""
}

func readRunHistory(t *testing.T, dir string) []scenarios.Op {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatalf("history.jsonl: %v", err)
	}
	defer f.Close()
	ops, err := scenarios.ReadHistory(f)
	if err != nil {
		t.Fatalf("history.jsonl: %v", err)
	}
	return ops
}

// checkPipelinesStarted asserts that client inits were answered ok with
// ids the fixture spawned a worker for.
func checkPipelinesStarted(t *testing.T, f *foreign.Fixture, ops []scenarios.Op) {
	t.Helper()
	workers, err := f.Workers()
	if err != nil {
		t.Fatal(err)
	}
	started := 0
	for _, o := range ops {
		if o.F == "init" && o.Type == scenarios.OpOK && strings.HasPrefix(o.Process, "client") {
			started++
			if workers[o.PipelineID] == 0 {
				t.Errorf("init ok (op %d) names %q, for which the fixture spawned no worker", o.Index, o.PipelineID)
			}
		}
	}
	if started == 0 {
		t.Errorf("no init was answered ok: no pipeline started")
	}
}

// checkRightWorker asserts that every process-level fault signalled the
// worker of the pipeline it names, by the fixture's own pid log, and that
// at least one did.
func checkRightWorker(t *testing.T, f *foreign.Fixture, ops []scenarios.Op) {
	t.Helper()
	events, err := f.Events()
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int]string{}
	for _, e := range events {
		if e.Event == "spawn" {
			owner[e.Pid] = e.PipelineID
		}
	}
	hit := 0
	for _, o := range ops {
		if o.Process != scenarios.Nemesis || o.Type != scenarios.OpOK || (o.F != "crash" && o.F != "hang_process") {
			continue
		}
		v, _ := o.Value.(map[string]any)
		pid, _ := v["pid"].(float64)
		if pid <= 0 {
			continue // not applicable: the harness did not guess
		}
		hit++
		if got := owner[int(pid)]; got == "" || got != o.PipelineID {
			t.Errorf("%s (op %d) signalled pid %d for pipeline %s; the fixture says that pid serves %q",
				o.F, o.Index, int(pid), o.PipelineID, got)
		}
		if how, _ := v["source"].(string); how == "" {
			t.Errorf("%s (op %d) does not record how pid %d was found: %v", o.F, o.Index, int(pid), v)
		}
	}
	if hit == 0 {
		t.Errorf("no crash or hang_process fault signalled a worker")
	}
}

// foreignRunArgs runs foreign-smoke against the fixture with the upstream
// profile.
func foreignRunArgs(f *foreign.Fixture) []string {
	return []string{"foreign-smoke", "--target", f.Addr, "--target-pid", strconv.Itoa(f.Pid),
		"--profile", "upstream", "--bounds", fixtureBounds}
}

// The harness, pointed at the upstream-like fixture, names each of its
// defects with the right checker, and passes it once they are fixed. The
// fixture runs with the same settings each time; only --fix changes.
func TestForeignSmokeJudgesTheUpstreamLikeFixture(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, fix []string) (*foreign.Fixture, foreignReport, []scenarios.Op, int, string) {
		t.Helper()
		f := foreign.Start(t, foreign.Options{Fix: fix, Args: fixtureArgs})
		dir := filepath.Join(t.TempDir(), "run")
		code, out, _ := corralRun(t, dir, foreignRunArgs(f)...)
		rep, ops := readForeignReport(t, dir), readRunHistory(t, dir)
		if rep.Target.Profile.Name != "upstream" {
			t.Errorf("profile %+v, want upstream", rep.Target.Profile)
		}
		checkPipelinesStarted(t, f, ops)
		checkRightWorker(t, f, ops)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("corral run output:\n%s", out)
			}
		})
		return f, rep, ops, code, out
	}
	// want asserts checker's verdict, and that its text names each of names.
	want := func(t *testing.T, rep foreignReport, checker, verdict string, names ...string) {
		t.Helper()
		got, text := rep.result(checker)
		if got != verdict {
			t.Errorf("%s: %s, want %s:\n%s", checker, got, verdict, text)
		}
		for _, n := range names {
			if !strings.Contains(text, n) {
				t.Errorf("%s does not name %q:\n%s", checker, n, text)
			}
		}
	}

	// Every defect: the first crashed worker freezes the serial server
	// (no timeout on its answer), so requests go unanswered; the init
	// foreign-smoke sends without video_configuration (init_invalid) is
	// refused but its worker stays listed, a phantom; the SIGTERM then
	// kills the manager with a TypeError and the worker foreign-smoke
	// never crashes outlives it.
	t.Run("defects", func(t *testing.T) {
		t.Parallel()
		f, rep, _, code, _ := run(t, nil)
		if code != 1 || rep.Valid {
			t.Errorf("exit %d, valid %v: want 1 and invalid", code, rep.Valid)
		}
		want(t, rep, "requests_answered", scenarios.Invalid, "without answer")
		want(t, rep, "pipeline_model", scenarios.Invalid, "phantom pipeline")
		_, text := rep.result("pipeline_model")
		if failed := failedInits(t, f); !slices.ContainsFunc(failed, func(id string) bool { return strings.Contains(text, "pipeline "+id+": phantom") }) {
			t.Errorf("pipeline_model names none of the inits the fixture refused (%s) as a phantom:\n%s", strings.Join(failed, ", "), text)
		}
		orphans := orphansOf(t, f)
		want(t, rep, "no_leaked_processes", scenarios.Invalid, orphans...)
		want(t, rep, "bounded_shutdown", scenarios.Invalid, orphans...)
	})
	// The timeout fixed, the broken SIGTERM shows: the manager dies of a
	// TypeError and its workers keep running.
	t.Run("sigterm", func(t *testing.T) {
		t.Parallel()
		f, rep, _, code, _ := run(t, []string{foreign.DefectTimeout, foreign.DefectPhantom})
		if code != 1 || rep.Valid {
			t.Errorf("exit %d, valid %v: want 1 and invalid", code, rep.Valid)
		}
		orphans := orphansOf(t, f)
		want(t, rep, "no_leaked_processes", scenarios.Invalid, orphans...)
		want(t, rep, "bounded_shutdown", scenarios.Invalid, orphans...)
		want(t, rep, "requests_answered", scenarios.Valid)
	})
	t.Run("fixed", func(t *testing.T) {
		t.Parallel()
		f, rep, _, code, _ := run(t, foreign.AllDefects)
		if code != 0 || !rep.Valid {
			t.Errorf("exit %d, valid %v: want 0 and VALID", code, rep.Valid)
		}
		failedInits(t, f) // the model had a failed init to judge
		// Only a checker that needs what the upstream profile lacks
		// (inspect) may be unknown, and it must say so.
		for _, r := range rep.Results {
			if r.Verdict != scenarios.Valid && (r.Verdict != scenarios.Unknown || !strings.Contains(r.Summary, "inspect")) {
				t.Errorf("%s: %s (%s)\n%s", r.Checker, r.Verdict, r.Summary, strings.Join(r.Details, "\n"))
			}
		}
		if exit, ok := f.WaitExit(reapTimeout); !ok || exit != 0 {
			t.Errorf("the fixed fixture after the harness's SIGTERM: exited %v, status %d; want 0", ok, exit)
		}
	})
}

// failedInits names the pipelines whose init the fixture refused (by its
// event log); it fails t when there are none, since then the run sent no
// init_invalid the fixture answered.
func failedInits(t *testing.T, f *foreign.Fixture) []string {
	t.Helper()
	events, err := f.Events()
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, e := range events {
		if e.Event == "init_failed" {
			failed = append(failed, e.PipelineID)
		}
	}
	if len(failed) == 0 {
		t.Fatalf("no init failed in the fixture: %+v", events)
	}
	return failed
}

// orphansOf waits for the fixture to die of its TypeError after the
// harness's SIGTERM and names ("pid N") the workers that outlived it.
func orphansOf(t *testing.T, f *foreign.Fixture) []string {
	t.Helper()
	if _, ok := f.WaitExit(reapTimeout); !ok || !strings.Contains(f.Stderr(), "TypeError") {
		t.Fatalf("the fixture did not die of its TypeError after the harness's SIGTERM:\n%s", f.Stderr())
	}
	var orphans []string
	for _, pid := range f.Members() {
		orphans = append(orphans, "pid "+strconv.Itoa(pid)+" (")
	}
	if len(orphans) == 0 {
		t.Fatal("no worker outlived the fixture: nothing for the checkers to find")
	}
	return orphans
}

// phantomScenario sends inits that upstream's model refuses (no
// processing_configuration), then lists: a failed init's id must not be
// listed.
const phantomScenario = `name: phantom
seed: 3
duration: 6s
warm_up: 2s
heal: 1s
quiesce: 1s
pipelines: 1
clients: 1
rate: 2
mix: {list_pipelines: 1}
init: {processing_configuration: null}
bounds: {grace: 1s, join: 3s, queue_timeout: 1s, health_interval: 0.5s, health_timeout: 1s, max_health_failures: 3, crash_detection: 2s}
`

// The phantom a failed init leaves is named by the model checker, and not
// once the fixture stops and forgets the failed init's worker.
func TestForeignPhantomIsNamed(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "phantom.yaml")
	if err := os.WriteFile(file, []byte(phantomScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, fixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "defect", true: "fixed"}[fixed], func(t *testing.T) {
			t.Parallel()
			var fix []string
			if fixed {
				fix = []string{foreign.DefectPhantom}
			}
			f := foreign.Start(t, foreign.Options{Fix: fix, Args: fixtureArgs})
			dir := filepath.Join(t.TempDir(), "run")
			_, out, _ := corralRun(t, dir, file, "--target", f.Addr, "--target-pid", strconv.Itoa(f.Pid), "--profile", "upstream")
			rep := readForeignReport(t, dir)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("corral run output:\n%s", out)
				}
			})
			failed := failedInits(t, f)
			verdict, text := rep.result("pipeline_model")
			switch {
			case !fixed && (verdict != scenarios.Invalid || !strings.Contains(text, "phantom pipeline") || !strings.Contains(text, failed[0])):
				t.Errorf("pipeline_model: %s, want invalid naming the phantom %s:\n%s", verdict, failed[0], text)
			case fixed && verdict != scenarios.Valid:
				t.Errorf("pipeline_model: %s, want valid (the failed init's worker was stopped):\n%s", verdict, text)
			}
		})
	}
}

// A --target-pid that does not own the target's port (here a shell with
// children of its own) makes corral run exit 2 before any fault: no
// history of faults, the shell's children untouched.
func TestForeignWrongTargetPidExitsBeforeAnyFault(t *testing.T) {
	t.Parallel()
	f := foreign.Start(t, foreign.Options{Args: fixtureArgs})
	decoy := exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait")
	decoy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = decoy.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-decoy.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(reapTimeout):
			t.Errorf("the decoy shell was not reaped within %v", reapTimeout)
		}
	})
	children := func() []int {
		procs, _ := launch.Scan(func(p launch.ProcInfo) bool { return p.PPid == decoy.Process.Pid && !p.Zombie() })
		var out []int
		for _, p := range procs {
			out = append(out, p.Pid)
		}
		return out
	}
	if ok, _ := pollUntil(startTimeout, func() bool { return len(children()) == 2 }); !ok {
		t.Fatalf("the decoy shell did not start its two children: %v", children())
	}
	before := children()

	dir := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(corralBin, append(append([]string{"run"}, foreignRunArgs(&foreign.Fixture{Addr: f.Addr, Pid: decoy.Process.Pid})...), "--out", dir)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("corral run with a wrong --target-pid: %v, want exit 2\n%s", err, out)
	}
	for _, want := range []string{"--target-pid " + strconv.Itoa(decoy.Process.Pid), "does not listen on port", "owned by pid " + strconv.Itoa(f.Pid)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "history.jsonl")); err == nil && strings.Contains(string(b), `"process":"nemesis"`) {
		t.Errorf("a fault was injected before the refusal:\n%s", b)
	}
	if after := children(); !slices.Equal(before, after) {
		t.Errorf("the decoy's children changed: before %v, after %v", before, after)
	}
	if members := f.Members(); !slices.Contains(members, f.Pid) {
		t.Errorf("the fixture is gone after a refused run: group %v", members)
	}
}

// `corral run smoke` against a separate `corral serve --chaos`: the corral
// profile is detected and the run is VALID.
func TestSmokeAgainstCorralServeTarget(t *testing.T) {
	t.Parallel()
	// The settings of smoke's manager: section, which judge the run.
	env := []string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=0.5", "STREAM_MANAGER_HEALTH_CHECK_TIMEOUT=1",
		"STREAM_MANAGER_QUEUE_TIMEOUT=2", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=1",
		"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT=3", "GORACE=atexit_sleep_ms=0"}
	srv := startServer(t, env, "--chaos")
	dir := filepath.Join(t.TempDir(), "run")
	code, out, _ := corralRun(t, dir, "smoke", "--target", srv.Addr, "--target-pid", strconv.Itoa(srv.Pid))
	rep := readForeignReport(t, dir)
	if code != 0 || !rep.Valid {
		t.Fatalf("exit %d, valid %v: want 0 and VALID\n%s", code, rep.Valid, out)
	}
	if rep.Target.Profile.Name != "corral" {
		t.Errorf("profile %+v, want corral (detected)", rep.Target.Profile)
	}
	if exit, ok := srv.waitExit(reapTimeout); !ok || exit != 0 {
		t.Errorf("corral serve after the harness's SIGTERM: exited %v, status %d; want 0", ok, exit)
	}
}
