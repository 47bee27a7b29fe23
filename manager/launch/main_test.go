package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childEnv makes the test binary play a tiny child program instead of
// running tests, so the process tests do not need the worker package.
const childEnv = "CORRAL_LAUNCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	goleak.VerifyTestMain(m)
}

// runChild is the child side. Modes:
//
//	echo         copy stdin to stdout until EOF, exit 0
//	ignore-term  ignore SIGTERM, print "ready", then echo
//	sleep        sleep until killed
//	group        start a same-group "sleep" grandchild, print its pid, sleep
//	escape       start a setsid "sleep" grandchild, print its pid, exit after one stdin line
//	manager      run a Processes launcher with one "sleep" worker, print its pid, sleep
func runChild(mode string) int {
	switch mode {
	case "echo":
		return echo()
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		return echo()
	case "sleep":
		sleepForever()
	case "group", "escape":
		gc := exec.Command(os.Args[0])
		gc.Env = append(os.Environ(), childEnv+"=sleep")
		gc.Stderr = os.Stderr
		if mode == "escape" {
			gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		}
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start grandchild:", err)
			return 2
		}
		fmt.Println(gc.Process.Pid)
		if mode == "group" {
			sleepForever()
		}
		// Exit without waiting: the grandchild is orphaned.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	case "manager":
		l, err := NewProcesses(ProcessConfig{
			Command: []string{os.Args[0]},
			Env:     childEnvFor("sleep"),
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		w, err := l.Launch(context.Background(), Options{Name: "w"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println(w.Pid())
		sleepForever()
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 2
}

// childEnvFor is the extra environment of a child in mode. A race-enabled
// binary sleeps 1 s at exit to flush reports; children skip that.
func childEnvFor(mode string) []string {
	return []string{childEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}
}

func echo() int {
	if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
		return 1
	}
	return 0
}

func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// readPid reads one line holding a pid from r.
func readPid(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read pid: %v (got %q)", err, line)
	}
	pid, err := strconv.Atoi(line[:len(line)-1])
	if err != nil {
		t.Fatalf("parse pid %q: %v", line, err)
	}
	return pid
}

// eventually polls cond until it holds or within passes. Polling is the only
// way to observe a process we are not the parent of.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procGone reports whether pid no longer exists at all (reaped).
func procGone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, fs.ErrNotExist)
}
