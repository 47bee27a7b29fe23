// Package foreign starts upstream_like.py, a small stdlib-only Python
// stream manager that behaves like the upstream inference one (serial
// server, multiprocessing workers in its process group that carry no
// pipeline id, no timeout on a worker's answer, the phantom after a failed
// init, a SIGTERM handler that raises), each defect switchable off. Tests
// point Corral's harness at it as a foreign target; see upstream_like.py
// for the behaviour and its flags.
//
// It is for tests only. Every wait is bounded; Start registers a cleanup
// that SIGKILLs the fixture's process group (its workers stay in it even
// when orphaned, which they are by design after the broken SIGTERM).
package foreign

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
)

// Defect names accepted by Options.Fix (and upstream_like.py --fix).
const (
	DefectPhantom = "phantom" // a failed init leaves its worker listed
	DefectTimeout = "timeout" // no bound on a worker's answer; no crash detection
	DefectSigterm = "sigterm" // SIGTERM raises TypeError and orphans the workers
)

// AllDefects are every defect the fixture has.
var AllDefects = []string{DefectPhantom, DefectTimeout, DefectSigterm}

// Bounds on the fixture's own waits: generous, so a loaded machine does
// not fail a test, bounded, so a broken fixture cannot hang one.
const (
	startTimeout = 30 * time.Second
	reapTimeout  = 10 * time.Second
)

// Options configure one fixture.
type Options struct {
	// Fix lists the defects to fix (Defect* names); nil fixes none.
	Fix []string
	// Args are extra flags for upstream_like.py, e.g.
	// {"--health-interval", "0.3"}.
	Args []string
}

// Fixture is one running upstream_like.py.
type Fixture struct {
	// Addr is the 127.0.0.1:port it listens on.
	Addr string
	// Pid is the manager's pid; it leads its own process group, so its
	// workers' pgid is Pid too.
	Pid int
	// PidLog is the file of worker events the fixture writes.
	PidLog string

	t          testing.TB
	cmd        *exec.Cmd
	stderrPath string
	stdout     *os.File // read end of the fixture's stdout
	readerDone chan struct{}
	done       chan struct{} // closed when Wait returned
}

// Event is one line of the pid log: which pid serves which pipeline.
type Event struct {
	Event      string  `json:"event"` // spawn, init_failed, exit
	PipelineID string  `json:"pipeline_id"`
	Pid        int     `json:"pid"`
	Time       float64 `json:"time"` // Unix seconds
	ExitCode   *int    `json:"exitcode"`
	FoundBy    string  `json:"found_by"`
}

// Python returns the path of the Python 3 interpreter itself (not a
// version-manager shim, so a started process's pid is the interpreter's).
// Without python3 the test is skipped, or fails when CI=true.
func Python(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI: %v", err)
		}
		t.Skipf("python3 not found (%v): the foreign fixture tests need it (CI fails instead of skipping)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-c", "import sys; print(sys.executable)").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("%s -c 'print(sys.executable)': %v (%q)", path, err, out)
	}
	return string(bytes.TrimSpace(out))
}

// Script is the path of upstream_like.py.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "upstream_like.py")
}

var listenRE = regexp.MustCompile(`upstream_like: listening on (127\.0\.0\.1:\d+) \(pid (\d+)\)`)

// Start runs upstream_like.py on a free loopback port with its pid log in
// a temporary folder and waits (bounded) until it listens.
func Start(t testing.TB, opts Options) *Fixture {
	t.Helper()
	python := Python(t)
	dir := t.TempDir()
	f := &Fixture{t: t, PidLog: filepath.Join(dir, "pids.jsonl"), stderrPath: filepath.Join(dir, "stderr.log"),
		readerDone: make(chan struct{}), done: make(chan struct{})}
	args := []string{Script(), "--host", "127.0.0.1", "--port", "0", "--pid-log", f.PidLog,
		"--fix", strings.Join(opts.Fix, ",")}
	f.cmd = exec.Command(python, append(args, opts.Args...)...)
	f.cmd.Env = append(cleanEnv(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Files, not pipes copied by os/exec: orphaned workers keep them open
	// after the manager died, and Wait must not wait for them.
	stderr, err := os.Create(f.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f.stdout = r
	f.cmd.Stdout, f.cmd.Stderr = w, stderr
	if err := f.cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		t.Fatalf("start %s: %v", Script(), err)
	}
	_ = w.Close()
	f.Pid = f.cmd.Process.Pid
	go func() {
		_ = f.cmd.Wait()
		close(f.done)
	}()
	ready := make(chan string, 1)
	go func() {
		defer close(f.readerDone)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if listenRE.MatchString(sc.Text()) {
				select {
				case ready <- sc.Text():
				default:
				}
			}
		}
	}()
	t.Cleanup(f.cleanup)
	select {
	case line := <-ready:
		m := listenRE.FindStringSubmatch(line)
		f.Addr = m[1]
		if pid, _ := strconv.Atoi(m[2]); pid != f.Pid {
			t.Fatalf("upstream_like.py says pid %d, started pid %d", pid, f.Pid)
		}
	case <-f.done:
		t.Fatalf("upstream_like.py exited before listening (exit %d)\nstderr:\n%s", f.cmd.ProcessState.ExitCode(), f.Stderr())
	case <-time.After(startTimeout):
		t.Fatalf("upstream_like.py did not listen within %v\nstderr:\n%s", startTimeout, f.Stderr())
	}
	return f
}

// cleanEnv is this process's environment without settings that would
// change the fixture (the manager's address, its defect switches).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "STREAM_MANAGER_") || k == "UPSTREAM_LIKE_FIX" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Stderr is the fixture's log so far.
func (f *Fixture) Stderr() string {
	b, _ := os.ReadFile(f.stderrPath)
	return string(b)
}

// Events reads the pid log.
func (f *Fixture) Events() ([]Event, error) {
	b, err := os.ReadFile(f.PidLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("pid log line %q: %w", line, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Workers maps each pipeline id the fixture spawned a worker for to
// that worker's pid.
func (f *Fixture) Workers() (map[string]int, error) {
	events, err := f.Events()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, e := range events {
		if e.Event == "spawn" {
			out[e.PipelineID] = e.Pid
		}
	}
	return out, nil
}

// Members lists the live (not zombie) processes of the fixture's process
// group: the manager while it runs and every worker, orphaned or not.
func (f *Fixture) Members() []int {
	procs, err := launch.GroupMembers(f.Pid)
	if err != nil {
		f.t.Errorf("census of group %d: %v", f.Pid, err)
		return nil
	}
	var out []int
	for _, p := range procs {
		if !p.Zombie() {
			out = append(out, p.Pid)
		}
	}
	return out
}

// Signal sends sig to the manager process.
func (f *Fixture) Signal(sig syscall.Signal) error {
	return syscall.Kill(f.Pid, sig)
}

// WaitExit waits at most d for the manager to exit and returns its exit
// code (-1 when a signal ended it) and whether it exited in time.
func (f *Fixture) WaitExit(d time.Duration) (code int, ok bool) {
	select {
	case <-f.done:
		return f.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// cleanup SIGKILLs the group (manager and workers, orphans included),
// waits (bounded) for it to be gone, and stops the stdout reader.
func (f *Fixture) cleanup() {
	t := f.t
	_ = syscall.Kill(-f.Pid, syscall.SIGKILL)
	select {
	case <-f.done:
	case <-time.After(reapTimeout):
		t.Errorf("cleanup: upstream_like.py (pid %d) not reaped within %v", f.Pid, reapTimeout)
	}
	deadline := time.Now().Add(reapTimeout)
	for {
		left := f.Members()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: processes %v of the fixture's group survived SIGKILL for %v", left, reapTimeout)
			break
		}
		_ = syscall.Kill(-f.Pid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond) // polling /proc: no event says another parent reaped them
	}
	_ = f.stdout.Close() // ends the reader even if a stray process kept the pipe
	select {
	case <-f.readerDone:
	case <-time.After(reapTimeout):
		t.Errorf("cleanup: the stdout reader did not stop within %v", reapTimeout)
	}
	if t.Failed() {
		t.Logf("upstream_like.py stderr:\n%s", f.Stderr())
	}
}
