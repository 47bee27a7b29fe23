package chaos

import (
	"context"
	"errors"
	"os"
	"syscall"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// workerProc is a pipeline's worker process as the faults found it.
type workerProc struct {
	pid, pgid int
	source    string // "inspect" or "proc"
}

// findWorker resolves Spec.PipelineID to its worker: through
// Target.FindWorker when set, else from inspect. A server without inspect
// and no FindWorker gives ErrPipelineNotFound: which of its processes runs
// the pipeline is unknown, and a guess would signal another pipeline's
// worker and blame the wrong one.
func findWorker(ctx context.Context, fault string, t Target, s Spec) (workerProc, error) {
	if t.FindWorker != nil {
		pid, pgid, source, err := t.FindWorker(ctx, s.PipelineID)
		if err != nil {
			return workerProc{}, errorf(fault, ErrPipelineNotFound, err, "find the worker of pipeline %s", s.PipelineID)
		}
		return workerProc{pid: pid, pgid: pgid, source: source}, nil
	}
	if t.Client == nil {
		return workerProc{}, errorf(fault, ErrNoClient, nil, "cannot find pipeline %s without a client or Target.FindWorker", s.PipelineID)
	}
	resp, err := t.Client.Inspect(ctx)
	if err != nil {
		if errors.Is(err, &protocol.Error{Type: protocol.ErrTypeInvalidPayload}) {
			return workerProc{}, errorf(fault, ErrPipelineNotFound, err,
				"the server has no inspect, so which process runs pipeline %s is unknown (set Target.FindWorker)", s.PipelineID)
		}
		return workerProc{}, errorf(fault, nil, err, "inspect")
	}
	pipelines, _ := resp.Fields["pipelines"].([]any)
	for _, raw := range pipelines {
		p, _ := raw.(map[string]any)
		if id, _ := p["pipeline_id"].(string); id != s.PipelineID {
			continue
		}
		pid, _ := p["pid"].(float64)
		pgid, _ := p["pgid"].(float64)
		if pid <= 0 {
			return workerProc{}, errorf(fault, ErrPipelineNotFound, nil, "pipeline %s has no process in inspect (an in-memory worker?)", s.PipelineID)
		}
		return workerProc{pid: int(pid), pgid: int(pgid), source: "inspect"}, nil
	}
	return workerProc{}, errorf(fault, ErrPipelineNotFound, nil, "pipeline %s not found in inspect", s.PipelineID)
}

// signalWorker sends sig to the worker's process group, or to its pid alone when
// the group is shared with the manager or with this process (a foreign
// server's workers may share its group). It returns the scope used.
func signalWorker(fault string, w workerProc, t Target, sig syscall.Signal) (string, error) {
	if w.pid <= 1 || w.pid == os.Getpid() || w.pid == t.ManagerPid {
		return "", errorf(fault, ErrUnsafeSignal, nil, "pid %d is not a worker", w.pid)
	}
	shared := w.pgid <= 1 || w.pgid == syscall.Getpgrp()
	if t.ManagerPid > 0 {
		if st, err := launch.Stat(t.ManagerPid); err == nil && st.Pgid == w.pgid {
			shared = true
		}
	}
	if shared {
		return "process", syscall.Kill(w.pid, sig)
	}
	return "group", syscall.Kill(-w.pgid, sig)
}

func injectCrash(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	w, err := findWorker(ctx, f.name, t, s)
	if err != nil {
		return nil, err
	}
	scope, err := signalWorker(f.name, w, t, syscall.SIGKILL)
	if err != nil {
		return nil, errorf(f.name, nil, err, "kill pipeline %s (pid %d, pgid %d)", s.PipelineID, w.pid, w.pgid)
	}
	return newInjection(f.name, procObserved(s, w, "SIGKILL", scope)), nil
}

func injectHangProcess(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	w, err := findWorker(ctx, f.name, t, s)
	if err != nil {
		return nil, err
	}
	scope, err := signalWorker(f.name, w, t, syscall.SIGSTOP)
	if err != nil {
		return nil, errorf(f.name, nil, err, "stop pipeline %s (pid %d, pgid %d)", s.PipelineID, w.pid, w.pgid)
	}
	in := newInjection(f.name, procObserved(s, w, "SIGSTOP", scope))
	in.set("for_seconds", s.For.Seconds())
	in.heal = func(context.Context) error {
		target := w.pid
		if scope == "group" {
			target = -w.pgid
		}
		switch err := syscall.Kill(target, syscall.SIGCONT); {
		case errors.Is(err, syscall.ESRCH):
			in.set("heal", "process gone")
		case err != nil:
			return errorf(f.name, nil, err, "heal: continue pid %d", w.pid)
		default:
			in.set("heal", "SIGCONT")
		}
		return nil
	}
	return in, nil
}

func procObserved(s Spec, w workerProc, sig, scope string) map[string]any {
	return map[string]any{"pipeline_id": s.PipelineID, "pid": w.pid, "pgid": w.pgid,
		"signal": sig, "scope": scope, "source": w.source}
}
