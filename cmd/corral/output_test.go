package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

const wait = 30 * time.Second

// TestServeSurvivesClosedOutput is issue 9's case 2 on the real program:
// `corral serve 2>&1 | tee log`, then tee dies. The manager's stdout and
// stderr (and its workers' stderr) are pipes whose reader has gone; every
// request logs at debug level, and the manager must keep answering and
// keeping its pipelines instead of dying of SIGPIPE, then shut down
// cleanly on SIGTERM.
func TestServeSurvivesClosedOutput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envArgs+"=serve\n--port\n0\n--log-level\ndebug\n--health-check-interval\n50ms",
		"GORACE=atexit_sleep_ms=0")
	cmd.Stdout, cmd.Stderr = w, w // 2>&1 | tee
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(wait):
			t.Error("serve not reaped")
		}
	}()

	lines := bufio.NewReader(r)
	addr := ""
	listening := regexp.MustCompile(`listening on (\S+)`)
	_ = r.SetReadDeadline(time.Now().Add(wait))
	for addr == "" {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("no listening line: %v", err)
		}
		if m := listening.FindStringSubmatch(line); m != nil {
			addr = m[1]
		}
	}
	r.Close() // tee dies

	c := &protocol.Client{Addr: addr, Timeout: wait}
	ctx := context.Background()
	var ids []string
	for range 2 {
		id, err := c.Init(ctx, protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=50"}})
		if err != nil {
			t.Fatalf("init after the log reader left: %v", err)
		}
		ids = append(ids, id)
	}
	for range 20 { // logged requests, and time for the probes to log too
		for _, id := range ids {
			if _, err := c.Status(ctx, id); err != nil {
				t.Fatalf("status %s after the log reader left: %v", id, err)
			}
		}
		time.Sleep(10 * time.Millisecond) // spacing, not synchronisation: let probes interleave
	}
	got, err := c.List(ctx)
	if err != nil || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("list = %v, %v; want %v", got, err, ids)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the deferred reap
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(wait):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
