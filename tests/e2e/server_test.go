package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Bounds on every wait of the harness. They are generous: they exist so a
// broken product fails a test instead of hanging it.
const (
	startTimeout   = 10 * time.Second
	requestTimeout = 10 * time.Second
	reapTimeout    = 5 * time.Second
)

// tagEnv is set in every server this package starts. Workers inherit the
// server's environment, so the tag finds every process a test caused, even
// one that escaped its group and session, and cleanup can kill them all.
const tagEnv = "CORRAL_E2E_TAG"

// server is one `corral serve` subprocess.
type server struct {
	t      testing.TB
	cmd    *exec.Cmd
	Addr   string // 127.0.0.1:port
	Pid    int
	tag    string
	stderr *syncBuffer

	done    chan struct{} // closed when Wait returned
	waitErr error         // valid after done
}

// startServer starts `corral serve args...` with STREAM_MANAGER_HOST and
// STREAM_MANAGER_PORT set to a free loopback port, plus env. It waits (at
// most startTimeout) for the "listening on" line and registers a cleanup
// that kills the server's group and every process carrying its tag.
func startServer(t testing.TB, env []string, args ...string) *server {
	t.Helper()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	s := &server{t: t, tag: hex.EncodeToString(nonce[:]), stderr: &syncBuffer{}, done: make(chan struct{})}
	ready := make(chan string, 1)
	s.cmd = exec.Command(corralBin, append([]string{"serve"}, args...)...)
	s.cmd.Env = append(cleanEnv(), "STREAM_MANAGER_HOST=127.0.0.1", "STREAM_MANAGER_PORT=0", tagEnv+"="+s.tag)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout = &lineWatcher{ready: ready}
	s.cmd.Stderr = s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Workers inherit the stderr pipe; Wait must not stall on them.
	s.cmd.WaitDelay = 2 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start corral serve: %v", err)
	}
	s.Pid = s.cmd.Process.Pid
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	select {
	case line := <-ready:
		m := listenRE.FindStringSubmatch(line)
		s.Addr = m[1]
		if pid, _ := strconv.Atoi(m[2]); pid != s.Pid {
			t.Fatalf("server says pid %d, started pid %d", pid, s.Pid)
		}
	case <-s.done:
		t.Fatalf("corral serve exited before listening: %v\nstderr:\n%s", s.waitErr, s.stderr)
	case <-time.After(startTimeout):
		t.Fatalf("corral serve did not print its address within %v\nstderr:\n%s", startTimeout, s.stderr)
	}
	return s
}

var listenRE = regexp.MustCompile(`corral serve: listening on (127\.0\.0\.1:\d+) \(pid (\d+)\)`)

// cleanEnv is this process's environment without settings a developer or
// CI may have exported, so each test states its own.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "STREAM_MANAGER_") || strings.HasPrefix(k, "STREAM_API_") ||
			strings.HasPrefix(k, "CORRAL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// cleanup SIGKILLs the server's group and every tagged process, and waits
// (bounded) for the server to be reaped and the tagged processes to go.
func (s *server) cleanup() {
	t := s.t
	select {
	case <-s.done:
	default:
		_ = syscall.Kill(-s.Pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(reapTimeout)
	for {
		left := s.tagged()
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: processes %v of this test survived SIGKILL for %v", left, reapTimeout)
			break
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: no signal tells us another parent reaped them
	}
	select {
	case <-s.done:
	case <-time.After(reapTimeout):
		t.Errorf("cleanup: corral serve (pid %d) not reaped within %v", s.Pid, reapTimeout)
	}
	if t.Failed() {
		t.Logf("corral serve stderr:\n%s", s.stderr)
	}
}

// tagged lists live processes (zombies excluded: their environ is empty)
// carrying this server's tag, the server itself included.
func (s *server) tagged() []int {
	want := []byte(tagEnv + "=" + s.tag)
	var out []int
	for _, pid := range procPids() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if bytes.Equal(kv, want) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// signal sends sig to the server process.
func (s *server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(s.Pid, sig); err != nil {
		t.Fatalf("kill(%d, %v): %v", s.Pid, sig, err)
	}
}

// waitExit waits at most d for the server to exit and returns its exit
// code (-1 when killed by a signal) and whether it exited in time.
func (s *server) waitExit(d time.Duration) (code int, ok bool) {
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// alive reports whether the server has not exited.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// client returns a Go protocol client for this server.
func (s *server) client() *protocol.Client {
	return &protocol.Client{Addr: s.Addr, Timeout: requestTimeout}
}

// initPipeline starts a pipeline on a synthetic source and returns its id.
func (s *server) initPipeline(t testing.TB, video string) string {
	t.Helper()
	id, err := s.client().Init(context.Background(), protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: video}})
	if err != nil || id == "" {
		t.Fatalf("init %s: id %q, err %v", video, id, err)
	}
	return id
}

// workerInfo is one pipeline of the inspect answer.
type workerInfo struct {
	PipelineID string
	State      string
	Idle       bool
	Pid, Pgid  int
}

// workers returns the inspect view, by pipeline id.
func (s *server) workers(t testing.TB) map[string]workerInfo {
	t.Helper()
	resp, err := s.client().Inspect(context.Background())
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	list, _ := resp.Fields["pipelines"].([]any)
	out := map[string]workerInfo{}
	for _, e := range list {
		m, _ := e.(map[string]any)
		w := workerInfo{}
		w.PipelineID, _ = m["pipeline_id"].(string)
		w.State, _ = m["state"].(string)
		w.Idle, _ = m["idle"].(bool)
		pid, _ := m["pid"].(float64)
		pgid, _ := m["pgid"].(float64)
		w.Pid, w.Pgid = int(pid), int(pgid)
		if w.Pid <= 0 || w.Pgid <= 0 {
			t.Fatalf("inspect: pipeline %q without pid/pgid: %v", w.PipelineID, m)
		}
		out[w.PipelineID] = w
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the copying goroutine of os/exec
// and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lineWatcher receives the server's stdout and hands the first line that
// announces the address to ready; it keeps everything else.
type lineWatcher struct {
	mu    sync.Mutex
	buf   []byte
	ready chan<- string
	sent  bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for !w.sent {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if listenRE.MatchString(line) {
			w.ready <- line // buffered, sent once
			w.sent = true
		}
	}
	return len(p), nil
}

// procStat is the part of /proc/<pid>/stat the tests use.
type procStat struct {
	Pid, PPid, Pgid int
	State           string
}

// readProcStat parses /proc/<pid>/stat; comm may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return procStat{}, errors.New("short stat")
	}
	st := procStat{Pid: pid, State: f[0]}
	st.PPid, _ = strconv.Atoi(f[1])
	st.Pgid, _ = strconv.Atoi(f[2])
	return st, nil
}

// procPids lists the pids in /proc.
func procPids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// groupMembers lists every process (zombies included) whose group is in pgids.
func groupMembers(pgids map[int]bool) []procStat {
	var out []procStat
	for _, pid := range procPids() {
		st, err := readProcStat(pid)
		if err == nil && pgids[st.Pgid] {
			out = append(out, st)
		}
	}
	return out
}

// pollUntil calls cond every 10 ms until it returns true or d passes; it
// reports whether cond came true and how long it took. It is for facts
// only /proc can tell, where no event exists to wait on.
func pollUntil(d time.Duration, cond func() bool) (bool, time.Duration) {
	start := time.Now()
	for {
		if cond() {
			return true, time.Since(start)
		}
		if time.Since(start) > d {
			return false, time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
