package launch

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// newTestLauncher returns a launcher whose workers run the test binary in
// the given child mode; it is closed (and checked) when the test ends.
func newTestLauncher(t *testing.T, mode string, subreaper bool) *Processes {
	t.Helper()
	l, err := NewProcesses(ProcessConfig{
		Command:   []string{os.Args[0]},
		Env:       childEnvFor(mode),
		Subreaper: subreaper,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func launch(t *testing.T, l *Processes) Process {
	t.Helper()
	p, err := l.Launch(t.Context(), Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDone waits a bounded time for the worker to exit and be reaped.
func waitDone(t *testing.T, p Process) Exit {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(5 * time.Second):
		t.Fatalf("worker %d did not exit", p.Pid())
		return Exit{}
	}
}

func TestEchoRoundTrip(t *testing.T) {
	l := newTestLauncher(t, "echo", false)
	p := launch(t, l)
	if p.Pid() <= 0 || p.Pgid() != p.Pid() {
		t.Fatalf("pid %d, pgid %d: want a positive pid leading its own group", p.Pid(), p.Pgid())
	}
	info, err := Stat(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if info.Pgid != p.Pid() {
		t.Errorf("kernel pgid %d, want %d", info.Pgid, p.Pid())
	}
	c := p.Conn()
	for _, body := range []string{`{"a":1}`, `{"b":"two"}`} {
		if err := c.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := protocol.WriteFrame(c, []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := protocol.ReadFrame(c, 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != body {
			t.Errorf("echo: got %q, want %q", got, body)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if exit := waitDone(t, p); !exit.Clean() {
		t.Errorf("exit after the channel closed: %+v, want clean", exit)
	}
	// After exit both are no-ops.
	if err := p.Terminate(); err != nil {
		t.Errorf("Terminate after exit: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill after exit: %v", err)
	}
}

func TestWriteDeadline(t *testing.T) {
	l := newTestLauncher(t, "sleep", false)
	c := launch(t, l).Conn()
	if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// The sleeping child never reads: once the pipe buffer fills, the
	// write must fail by the deadline instead of hanging.
	buf := make([]byte, 1<<20)
	_, err := c.Write(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a stuck worker: %v, want deadline exceeded", err)
	}
}

func TestTerminate(t *testing.T) {
	l := newTestLauncher(t, "echo", false)
	p := launch(t, l)
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	exit := waitDone(t, p)
	if exit.Code != -1 || exit.Signal != "terminated" {
		t.Errorf("exit %+v, want code -1, signal terminated", exit)
	}
}

func TestTerminateIgnoredKillWorks(t *testing.T) {
	l := newTestLauncher(t, "ignore-term", false)
	p := launch(t, l)
	out := bufio.NewReader(p.Conn())
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("ready line: %q, %v", line, err)
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(); err != nil {
		t.Fatalf("second Terminate: %v", err)
	}
	// Still alive: it answers after the signal was delivered.
	if _, err := p.Conn().Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := out.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after SIGTERM: %q, %v; want the worker still echoing", line, err)
	}
	select {
	case <-p.Done():
		t.Fatalf("worker ended on an ignored SIGTERM: %+v", p.Exit())
	default:
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	exit := waitDone(t, p)
	if exit.Code != -1 || exit.Signal != "killed" || exit.Clean() {
		t.Errorf("exit %+v, want code -1, signal killed", exit)
	}
	if _, err := p.Conn().Write([]byte("x")); err == nil {
		t.Error("write after Kill succeeded; want the channel closed")
	}
}

func TestKillTakesTheWholeGroup(t *testing.T) {
	l := newTestLauncher(t, "group", false)
	p := launch(t, l)
	grandchild := readPid(t, bufio.NewReader(p.Conn()))
	members, err := GroupMembers(p.Pgid())
	if err != nil {
		t.Fatal(err)
	}
	pids := pidsOf(members)
	if !slices.Contains(pids, p.Pid()) || !slices.Contains(pids, grandchild) {
		t.Fatalf("group %d members %v, want worker %d and grandchild %d", p.Pgid(), pids, p.Pid(), grandchild)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	// The grandchild is init's (or a subreaper's) to reap; it must at
	// least be dead, and in practice it vanishes.
	eventually(t, 5*time.Second, "empty process group", func() bool {
		members, err := GroupMembers(p.Pgid())
		return err == nil && len(slices.DeleteFunc(members, ProcInfo.Zombie)) == 0
	})
}

func TestSubreaperReapsEscapedGrandchild(t *testing.T) {
	l := newTestLauncher(t, "escape", true)
	p := launch(t, l)
	grandchild := readPid(t, bufio.NewReader(p.Conn()))

	census, err := Census(l.Marker())
	if err != nil {
		t.Fatal(err)
	}
	var found *ProcInfo
	for i := range census {
		if census[i].Pid == grandchild {
			found = &census[i]
		}
	}
	if found == nil {
		t.Fatalf("census %v misses grandchild %d", census, grandchild)
	}
	if found.Sid != grandchild || found.Pgid == p.Pgid() {
		t.Fatalf("grandchild %+v did not escape the worker's session and group", *found)
	}

	// The worker exits, the grandchild is reparented here; the reaper
	// must kill it and reap it, leaving no zombie.
	if _, err := p.Conn().Write([]byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	if exit := waitDone(t, p); !exit.Clean() {
		t.Fatalf("worker exit %+v, want clean", exit)
	}
	eventually(t, 5*time.Second, "escaped grandchild reaped", func() bool { return procGone(grandchild) })
}

func TestCloseKillsEverything(t *testing.T) {
	l, err := NewProcesses(ProcessConfig{
		Command:   []string{os.Args[0]},
		Env:       childEnvFor("group"),
		Subreaper: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var procs []Process
	var grandchildren []int
	for range 3 {
		p := launch(t, l)
		procs = append(procs, p)
		grandchildren = append(grandchildren, readPid(t, bufio.NewReader(p.Conn())))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		default:
			t.Errorf("worker %d not reaped by Close", p.Pid())
		}
	}
	if census, err := Census(l.Marker()); err != nil || len(census) != 0 {
		t.Errorf("census after Close: %v, %v; want empty", census, err)
	}
	for _, gc := range grandchildren {
		// Same-group grandchildren were orphaned to this subreaper when
		// their worker died; Close must have reaped them too.
		if !procGone(gc) {
			info, _ := Stat(gc)
			t.Errorf("grandchild %d still in the process table: %+v", gc, info)
		}
	}
	if _, err := l.Launch(t.Context(), Options{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Launch after Close: %v, want ErrClosed", err)
	}
}

func TestLaunchCancelled(t *testing.T) {
	l := newTestLauncher(t, "echo", false)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Launch(ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Launch with a cancelled ctx: %v", err)
	}
}

func TestSIGKILLedManagerLeavesNoWorker(t *testing.T) {
	manager := exec.Command(os.Args[0])
	manager.Env = append(os.Environ(), childEnvFor("manager")...)
	manager.Stderr = os.Stderr
	stdout, err := manager.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := manager.Start(); err != nil {
		t.Fatal(err)
	}
	worker := readPid(t, bufio.NewReader(stdout))
	if procGone(worker) {
		t.Fatalf("worker %d not running before the manager died", worker)
	}
	if err := manager.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = manager.Wait()
	// Pdeathsig kills the worker; init (or this test process, if an
	// earlier test made it a subreaper) then reaps it.
	eventually(t, 2*time.Second, "worker gone after its manager was SIGKILLed", func() bool {
		info, err := Stat(worker)
		if err != nil {
			return procGone(worker)
		}
		if info.Zombie() && info.PPid == os.Getpid() {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(worker, &ws, syscall.WNOHANG, nil)
		}
		return info.Zombie()
	})
}

func pidsOf(infos []ProcInfo) []int {
	pids := make([]int, len(infos))
	for i, info := range infos {
		pids[i] = info.Pid
	}
	return pids
}
