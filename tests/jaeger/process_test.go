package jaeger_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// process is a child started in its own process group, with stdout and
// stderr in files (no copying goroutines). Cleanup sends SIGTERM to the
// group, waits at most stopTimeout, then SIGKILLs the group; when the test
// failed it logs failLog(stderr file).
type process struct {
	pid        int
	logPath    string // stderr
	stdoutPath string
	done       chan struct{} // closed when Wait returned
	waitErr    error         // valid after done
}

func startProcess(t *testing.T, name, logPath string, failLog func(string) string, env []string, prog string, args ...string) *process {
	t.Helper()
	p := &process{logPath: logPath, stdoutPath: logPath + ".stdout", done: make(chan struct{})}
	stderr, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	stdout, err := os.Create(p.stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd := exec.Command(prog, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("%s stderr:\n%s", name, failLog(logPath))
			}
		}()
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killing it", name, p.pid, stopTimeout)
		}
		_ = syscall.Kill(-p.pid, syscall.SIGKILL) // stragglers in the group
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("%s (pid %d) not reaped within %v of SIGKILL", name, p.pid, stopTimeout)
		}
	})
	return p
}

// killTagged SIGKILLs every process whose environment carries tag (workers
// run in their own groups) and waits, bounded, until none is left.
func killTagged(t *testing.T, tag string) {
	deadline := time.Now().Add(stopTimeout)
	for {
		left := tagged(tag)
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: processes %v of this test survived SIGKILL for %v", left, stopTimeout)
			return
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: nothing signals a reap by another parent
	}
}

// tagged lists the live processes whose environment holds tagEnv=tag.
func tagged(tag string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte(tagEnv + "=" + tag + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// A zombie keeps its environ readable only briefly; skip it.
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// cleanEnv is this process's environment without settings a developer or
// CI may have exported (OTel, manager), so the test states its own.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OTEL_") || strings.HasPrefix(k, "STREAM_MANAGER_") ||
			strings.HasPrefix(k, "STREAM_API_") || strings.HasPrefix(k, "CORRAL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freePorts reserves n TCP and m UDP loopback ports, all distinct, by
// holding them open together; they are released on return. Another process
// may take one before Jaeger binds it: then Jaeger exits and the test says so.
func freePorts(t *testing.T, n, m int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for len(ports) < n+m {
		var port int
		if len(ports) < n {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, ln.Close)
			port = ln.Addr().(*net.TCPAddr).Port
		} else {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, pc.Close)
			port = pc.LocalAddr().(*net.UDPAddr).Port
		}
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	return ports
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}
