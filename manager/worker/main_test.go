package worker

import (
	"encoding/json"
	"errors"
	"io"
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

// proc is this test binary re-executed as a worker process by Main.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *lockedBuffer
	code   int
	waited bool
}

func startProcess(t *testing.T, chaos bool) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	// The race detector sleeps a second before a process exits; these
	// workers exit on purpose, often.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), protocol.EnvWorkerMode+"="+ModeWorker, "GORACE="+gorace)
	if chaos {
		cmd.Env = append(cmd.Env, protocol.EnvWorkerChaos+"=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{t: t, cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		p.wait()
	})
	return p
}

// call sends one command and reads its reply, with a bounded wait.
func (p *proc) call(typ string, req map[string]any) protocol.Response {
	p.t.Helper()
	fields := map[string]json.RawMessage{}
	for k, v := range req {
		fields[k], _ = json.Marshal(v)
	}
	body, _ := json.Marshal(protocol.WorkerCommand{RequestID: "r-" + typ, Type: typ, Request: fields})
	if err := protocol.WriteFrame(p.stdin, body); err != nil {
		p.t.Fatalf("write %s: %v", typ, err)
	}
	got := make(chan frameOrErr, 1)
	go func() {
		body, err := protocol.ReadFrame(p.stdout, 0)
		got <- frameOrErr{body, err}
	}()
	select {
	case f := <-got:
		if f.err != nil {
			p.t.Fatalf("read reply to %s: %v; stderr:\n%s", typ, f.err, p.stderr)
		}
		var rep protocol.WorkerReply
		if err := json.Unmarshal(f.body, &rep); err != nil || rep.RequestID != "r-"+typ {
			p.t.Fatalf("bad reply to %s: %q (%v)", typ, f.body, err)
		}
		return rep.Response
	case <-time.After(waitLimit):
		_ = p.cmd.Process.Kill() // unblocks the reader goroutine
		<-got
		p.t.Fatalf("no reply to %s", typ)
		return protocol.Response{}
	}
}

// wait returns the exit status, failing after waitLimit.
func (p *proc) wait() int {
	p.t.Helper()
	if p.waited {
		return p.code
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		p.waited, p.code = true, p.cmd.ProcessState.ExitCode()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			p.t.Fatalf("wait: %v", err)
		}
		return p.code
	case <-time.After(waitLimit):
		_ = p.cmd.Process.Kill()
		<-done
		p.waited = true
		p.t.Fatalf("worker process did not exit; stderr:\n%s", p.stderr)
		return -1
	}
}

func TestProcessTerminates(t *testing.T) {
	p := startProcess(t, false)
	if resp := p.call(protocol.TypeInit, initRequest("synthetic://16x16?fps=50", nil, nil)); !resp.OK() {
		t.Fatal(resp.Err())
	}
	if resp := p.call(protocol.TypeStatus, nil); !resp.OK() {
		t.Fatal(resp.Err())
	}
	if resp := p.call(protocol.TypeTerminate, nil); !resp.OK() {
		t.Fatal(resp.Err())
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

func TestProcessSIGTERM(t *testing.T) {
	p := startProcess(t, false)
	p.call(protocol.TypeStatus, nil) // the signal handler is installed by now
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

func TestProcessCrash(t *testing.T) {
	p := startProcess(t, true)
	body, _ := json.Marshal(protocol.WorkerCommand{RequestID: "c", Type: protocol.TypeChaos,
		Request: map[string]json.RawMessage{"fault": json.RawMessage(`"crash"`), "exit_code": json.RawMessage(`7`)}})
	if err := protocol.WriteFrame(p.stdin, body); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 7 {
		t.Fatalf("exit status %d, want 7", code)
	}
}

// TestProcessGrandchildEscapesAndEnds checks the spawn_grandchild fault: the
// grandchild leaves the worker's process group, and still ends once the
// worker is killed, because its stdin then reaches EOF.
func TestProcessGrandchildEscapesAndEnds(t *testing.T) {
	p := startProcess(t, true)
	if resp := p.call(protocol.TypeChaos, map[string]any{"fault": protocol.ChaosSpawnGrandchild}); !resp.OK() {
		t.Fatal(resp.Err())
	}
	// The log line is written before the reply but copied from the
	// worker's stderr by exec's goroutine, so it may lag.
	var m []string
	deadline := time.Now().Add(waitLimit)
	for m == nil {
		m = regexp.MustCompile(`grandchild_pid=(\d+)`).FindStringSubmatch(p.stderr.String())
		if m == nil && time.Now().After(deadline) {
			t.Fatalf("no grandchild pid logged:\n%s", p.stderr)
		}
		time.Sleep(time.Millisecond)
	}
	pid, _ := strconv.Atoi(m[1])
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid == p.cmd.Process.Pid {
		t.Fatalf("grandchild pgid = %d (%v); want outside the worker's group %d", pgid, err, p.cmd.Process.Pid)
	}
	// SIGKILL to the group, as a manager would: the grandchild is not in it.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.wait()
	deadline = time.Now().Add(waitLimit)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still alive after the worker died", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie waiting for an adoptive parent
// to reap it counts as ended.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// lockedBuffer collects a process's stderr while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
