package chaos_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func mustLookup(t *testing.T, name string) chaos.Fault {
	t.Helper()
	f, ok := chaos.Lookup(name)
	if !ok {
		t.Fatalf("fault %s not in the catalogue", name)
	}
	return f
}

func heal(t *testing.T, in chaos.Injection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for range 2 { // Heal is idempotent
		if err := in.Heal(ctx); err != nil {
			t.Fatalf("heal: %v", err)
		}
	}
}

func TestCrashKillsTheWorkerGroup(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	pid := r.Pid(t, id)
	in, err := mustLookup(t, protocol.FaultCrash).Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{Fault: protocol.FaultCrash, PipelineID: id})
	if err != nil {
		t.Fatal(err)
	}
	obs := in.Observed()
	if obs["pid"] != pid || obs["pgid"] != pid || obs["signal"] != "SIGKILL" || obs["scope"] != "group" || obs["source"] != "inspect" {
		t.Fatalf("observed = %v, want pid=pgid=%d SIGKILL to the group from inspect", obs, pid)
	}
	eventually(t, "worker gone after crash", func() bool { return procState(pid) == "" })
	heal(t, in)
}

func TestHangProcessStopsAndHealResumes(t *testing.T) {
	r := start(t, testConfig())
	id := r.Init(t)
	pid := r.Pid(t, id)
	in, err := mustLookup(t, protocol.FaultHangProcess).Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Observed()["for_seconds"]; got != 3.0 {
		t.Errorf("for_seconds = %v, want the 3 s default", got)
	}
	eventually(t, "worker stopped", func() bool { return procState(pid) == "T" })
	heal(t, in)
	eventually(t, "worker resumed", func() bool { s := procState(pid); return s != "T" && s != "" })
	if _, err := r.Client.Status(t.Context(), id); err != nil {
		t.Fatalf("status after heal: %v", err)
	}
}

func TestProcessFaultWithoutInspectNeverGuesses(t *testing.T) {
	// A foreign server without inspect: with no FindWorker the fault
	// cannot be aimed and says so; it never picks one of the children.
	r := start(t, testConfig(), rejectInspect)
	id := r.Init(t)
	target := chaos.Target{Client: r.Client, ManagerPid: os.Getpid()}
	_, err := mustLookup(t, protocol.FaultCrash).Inject(t.Context(), target, chaos.Spec{PipelineID: id})
	if !isErr(err, chaos.ErrPipelineNotFound) || !strings.Contains(err.Error(), "no inspect") {
		t.Fatalf("err = %v, want ErrPipelineNotFound naming the missing inspect", err)
	}
}

func TestProcessFaultUsesFindWorker(t *testing.T) {
	// The harness's census mapping names the pid: the fault signals it
	// and records how it was found.
	r := start(t, testConfig(), rejectInspect)
	id := r.Init(t)
	pid := r.Pid(t, id)
	target := chaos.Target{Client: r.Client, ManagerPid: os.Getpid(),
		FindWorker: func(_ context.Context, got string) (int, int, string, error) {
			if got != id {
				return 0, 0, "", errors.New("unknown pipeline")
			}
			return pid, pid, "census: test", nil
		}}
	in, err := mustLookup(t, protocol.FaultHangProcess).Inject(t.Context(), target, chaos.Spec{PipelineID: id})
	if err != nil {
		t.Fatal(err)
	}
	defer heal(t, in)
	if obs := in.Observed(); obs["source"] != "census: test" || obs["pid"] != pid {
		t.Fatalf("observed = %v, want pid %d from FindWorker", obs, pid)
	}
	eventually(t, "worker stopped", func() bool { return procState(pid) == "T" })
	_, err = mustLookup(t, protocol.FaultCrash).Inject(t.Context(), target, chaos.Spec{PipelineID: "other"})
	if !isErr(err, chaos.ErrPipelineNotFound) {
		t.Fatalf("unmapped pipeline: err = %v, want ErrPipelineNotFound", err)
	}
}

func TestSharedGroupSignalsThePidOnly(t *testing.T) {
	// A child in this process's own group stands for a foreign server's
	// worker sharing the manager's group: signalling the group would kill
	// the harness.
	cmd := exec.CommandContext(t.Context(), "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	target := chaos.Target{ManagerPid: os.Getpid(), FindWorker: func(context.Context, string) (int, int, string, error) {
		return pid, syscall.Getpgrp(), "census: test", nil
	}}
	in, err := mustLookup(t, protocol.FaultCrash).Inject(t.Context(), target, chaos.Spec{PipelineID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if obs := in.Observed(); obs["pid"] != pid || obs["scope"] != "process" || obs["source"] != "census: test" {
		t.Fatalf("observed = %v, want pid %d signalled alone", obs, pid)
	}
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("sleep ended with %v, want killed", err)
		}
	case <-time.After(wait):
		t.Fatal("sleep not killed")
	}
}

func TestProcessFaultErrors(t *testing.T) {
	r := start(t, testConfig())
	crash := mustLookup(t, protocol.FaultCrash)
	_, err := crash.Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{PipelineID: "nope"})
	if !isErr(err, chaos.ErrPipelineNotFound) || !strings.Contains(err.Error(), "chaos: crash: pipeline nope not found in inspect") {
		t.Errorf("unknown pipeline: err = %v", err)
	}
	if _, err := crash.Inject(t.Context(), chaos.Target{Client: r.Client}, chaos.Spec{}); !isErr(err, chaos.ErrNoPipeline) {
		t.Errorf("no pipeline: err = %v, want ErrNoPipeline", err)
	}
	if _, err := crash.Inject(t.Context(), chaos.Target{ManagerPid: os.Getpid()}, chaos.Spec{PipelineID: "p"}); !isErr(err, chaos.ErrNoClient) {
		t.Errorf("no client: err = %v, want ErrNoClient", err)
	}
}
