package manager_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// These tests run real worker processes (this test binary re-executed) and
// reproduce the upstream failures one by one.

// gone waits, bounded, until pid no longer exists (reaped, not a zombie).
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still exists after %s", pid, wait)
		}
		time.Sleep(20 * time.Millisecond) // no signal exists for another process's death
	}
}

func TestHungWorkerDoesNotDelayOthers(t *testing.T) {
	cfg := testConfig()
	cfg.QueueTimeout = 3 * time.Second
	cfg.HealthCheckInterval = time.Hour // this test is about client commands
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	ctx := t.Context()
	hung, healthy := r.Init(t), r.Init(t)
	pid := r.Pid(t, hung)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)

	hungAnswer := make(chan error, 1)
	go func() { _, err := r.Client.Status(ctx, hung); hungAnswer <- err }()
	for range 5 {
		if _, err := r.Client.Status(ctx, healthy); err != nil {
			t.Fatalf("status of the healthy pipeline: %v", err)
		}
		if ids, err := r.Client.List(ctx); err != nil || len(ids) != 2 {
			t.Fatalf("list = %v, %v", ids, err)
		}
	}
	select {
	case err := <-hungAnswer:
		t.Fatalf("the hung pipeline answered (%v) before the healthy one's commands finished", err)
	default:
	}
	select {
	case err := <-hungAnswer:
		if !isType(err, protocol.ErrTypeOperation) {
			t.Fatalf("status of the stopped worker = %v, want operation_error", err)
		}
	case <-time.After(wait):
		t.Fatal("status of the stopped worker never answered")
	}
}

func TestCrashDuringInFlightCommand(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.QueueTimeout = time.Minute // the answer must come from the exit, not a timeout
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	ctx := t.Context()
	id := r.Init(t)
	pid := r.Pid(t, id)
	if err := r.Client.Chaos(ctx, id, "hang_queue", nil); err != nil {
		t.Fatal(err)
	}
	answer := make(chan protocol.Response, 1)
	go func() { resp, _ := r.Client.Status(ctx, id); answer <- resp }()
	// Crash the worker while the status waits on it.
	time.Sleep(100 * time.Millisecond) // let the status reach the worker; an earlier crash is answered the same way
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-answer:
		if resp.ErrorType != protocol.ErrTypeOperation || !strings.Contains(resp.ErrorMessage, "exited") {
			t.Fatalf("answer = %+v, want operation_error saying the worker exited", resp)
		}
	case <-time.After(wait):
		t.Fatal("in-flight status not answered after the crash")
	}
	exit := r.Events.WaitFor(t, "crash", func(e manager.Event) bool { x, ok := e.(manager.WorkerExited); return ok && x.PipelineID == id }).(manager.WorkerExited)
	if exit.Reason != manager.ExitCrashed || exit.Signal == "" {
		t.Fatalf("exit = %+v, want crashed by a signal", exit)
	}
	if _, err := r.Client.Status(ctx, id); !isType(err, protocol.ErrTypeNotFound) {
		t.Fatalf("status after crash = %v, want not_found", err)
	}
}

func TestTerminateWorkerIgnoringSigterm(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.TerminationGracePeriod = 300 * time.Millisecond
	cfg.ProcessJoinTimeout = 5 * time.Second
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	ctx := t.Context()
	id := r.Init(t)
	pid := r.Pid(t, id)
	for _, f := range []string{"ignore_sigterm", "hang_queue"} {
		if err := r.Client.Chaos(ctx, id, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	begin := time.Now()
	if err := r.Client.Terminate(ctx, id); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	took := time.Since(begin)
	if bound := cfg.TerminationGracePeriod + cfg.ProcessJoinTimeout; took > bound {
		t.Fatalf("terminate took %s, more than grace + join = %s", took, bound)
	}
	exit := r.Events.WaitFor(t, "exit", func(e manager.Event) bool { x, ok := e.(manager.WorkerExited); return ok && x.PipelineID == id }).(manager.WorkerExited)
	if !exit.Killed || exit.Signal == "" {
		t.Fatalf("exit = %+v, want SIGKILLed after the grace period", exit)
	}
	gone(t, pid)
}

func TestFailedInitLeavesNoProcess(t *testing.T) {
	l := testkit.ProcessLauncher(t)
	r := testkit.StartManager(t, testConfig(), l)
	bad := protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://0x10"}}
	if _, err := r.Client.Init(t.Context(), bad); !isType(err, protocol.ErrTypeInvalidPayload) {
		t.Fatalf("init = %v, want invalid_payload", err)
	}
	exit := r.Events.WaitFor(t, "exit", func(e manager.Event) bool { _, ok := e.(manager.WorkerExited); return ok }).(manager.WorkerExited)
	gone(t, exit.Pid)
	if procs, err := launch.Census(l.Marker()); err != nil || len(procs) != 0 {
		t.Fatalf("census after failed init = %+v, %v", procs, err)
	}
}

func TestShutdownKillsEverythingInBound(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.TerminationGracePeriod = 500 * time.Millisecond
	cfg.ProcessJoinTimeout = 5 * time.Second
	l := testkit.ProcessLauncher(t)
	ev := testkit.NewRecorder(wait)
	m, err := manager.New(cfg, manager.Options{Launcher: l, Hook: ev.Hook})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var pids []int
	for i := range 5 {
		resp := m.Handle(ctx, initRequest(t))
		if !resp.OK() {
			t.Fatalf("init %d: %+v", i, resp)
		}
		id := resp.PipelineID
		fault := map[int]string{0: "ignore_sigterm", 1: "ignore_sigterm", 2: "spawn_grandchild"}[i]
		if fault != "" {
			if r := m.Handle(ctx, chaosRequest(t, id, fault)); !r.OK() {
				t.Fatalf("chaos %s: %+v", fault, r)
			}
		}
	}
	for _, p := range m.Snapshot().Pipelines {
		pids = append(pids, p.Pid)
	}
	begin := time.Now()
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took, bound := time.Since(begin), cfg.TerminationGracePeriod+cfg.ProcessJoinTimeout; took > bound {
		t.Fatalf("shutdown took %s, more than grace + join = %s", took, bound)
	}
	var phases []int
	for _, e := range ev.All() {
		if p, ok := e.(manager.ShutdownPhase); ok && p.Done {
			phases = append(phases, p.Phase)
		}
	}
	if len(phases) != 3 || phases[0] != 1 || phases[1] != 2 || phases[2] != 3 {
		t.Fatalf("shutdown phases = %v, want 1,2,3", phases)
	}
	for _, pid := range pids {
		gone(t, pid)
	}
	if procs, err := launch.Census(l.Marker()); err != nil || len(procs) != 0 {
		t.Fatalf("census after shutdown = %+v, %v", procs, err)
	}
	if resp := m.Handle(ctx, initRequest(t)); resp.ErrorType != protocol.ErrTypeOperation {
		t.Fatalf("init after shutdown = %+v, want operation_error", resp)
	}
}
