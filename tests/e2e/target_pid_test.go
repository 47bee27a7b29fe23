package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// A --target-pid that does not own the target's port (here an unrelated
// shell with two children) makes corral run refuse with exit 2 before any
// command or fault: the shell's children live on, the manager never sees
// an init, and the message names the pid that does own the port.
func TestWrongTargetPidRefused(t *testing.T) {
	srv := startServer(t, []string{"GORACE=atexit_sleep_ms=0"}, "--chaos")
	decoy := exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := decoy.Start(); err != nil {
		t.Skipf("no sh: %v", err)
	}
	waited := make(chan struct{})
	go func() { _ = decoy.Wait(); close(waited) }()
	defer func() {
		_ = syscall.Kill(-decoy.Process.Pid, syscall.SIGKILL) // its group: sh and both sleeps
		_ = decoy.Process.Kill()
		<-waited
	}()

	cmd := exec.Command(corralBin, "run", "smoke", "--target", srv.Addr, "--target-pid", strconv.Itoa(decoy.Process.Pid),
		"--out", t.TempDir())
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("corral run with a wrong --target-pid did not stop\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, out.String())
	}
	msg := out.String()
	for _, want := range []string{"--target-pid " + strconv.Itoa(decoy.Process.Pid), "does not listen on port", "owned by pid " + strconv.Itoa(srv.Pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	select {
	case <-waited:
		t.Fatal("the decoy process was ended by the refused run")
	default:
	}
	c := &protocol.Client{Addr: srv.Addr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ := resp.Fields["pipelines"].([]any); len(ps) != 0 {
		t.Fatalf("the refused run reached the manager: inspect shows %v", ps)
	}
}
