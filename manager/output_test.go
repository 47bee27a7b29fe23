package manager_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/logsink"
)

// TestClosedLogOutputIsNotFatal is issue 9's case 2: the manager's log and
// its workers' stderr go to a pipe whose reader has gone. Every log line
// fails with EPIPE (the workers', on their fd 2, would be SIGPIPE without
// the worker's handling); the manager keeps answering and keeps its
// pipelines.
func TestClosedLogOutputIsNotFatal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader (tee) is gone
	defer w.Close()
	sink := logsink.New(w, 0)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := sink.Close(ctx); err != nil {
			t.Errorf("sink close: %v", err)
		}
		if st := sink.Stats(); st.Failed == 0 {
			t.Errorf("no log line failed: the test did not exercise a closed output (%+v)", st)
		} else {
			t.Logf("manager log lines lost to the closed pipe: %d (%v)", st.Lost(), st.LastError)
		}
	}()
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := launch.NewProcesses(launch.ProcessConfig{
		Command: []string{os.Args[0]}, Env: []string{"GORACE=atexit_sleep_ms=0"},
		Stderr: w, Subreaper: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Chaos = true
	cfg.HealthCheckInterval = 50 * time.Millisecond // probes (and their log lines) keep coming
	rig := testkit.StartManager(t, cfg, l, testkit.WithMiddleware(manager.LogRequests(log)),
		testkit.WithManagerOptions(func(o *manager.Options) {
			o.Log = log
			o.Hook = manager.Hooks(o.Hook, manager.LogEvents(log))
		}))
	ctx := t.Context()
	a, b := rig.Init(t), rig.Init(t)
	// chaos heal logs a warning in the worker, on its closed stderr.
	for _, id := range []string{a, b} {
		if err := rig.Client.Chaos(ctx, id, "heal", nil); err != nil {
			t.Fatalf("chaos heal %s: %v", id, err)
		}
	}
	// Enough round trips for the probes to run and log too.
	rig.Events.WaitFor(t, "probes of both pipelines", func() func(manager.Event) bool {
		seen := map[string]int{}
		return func(e manager.Event) bool {
			if p, ok := e.(manager.ProbeResult); ok && p.Err == nil {
				seen[p.PipelineID]++
			}
			return seen[a] >= 2 && seen[b] >= 2
		}
	}())
	for _, id := range []string{a, b} {
		if _, err := rig.Client.Status(ctx, id); err != nil {
			t.Fatalf("status %s with a closed log output: %v", id, err)
		}
	}
	ids, err := rig.Client.List(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("list = %v, %v; want both pipelines", ids, err)
	}
	for _, e := range rig.Events.All() {
		if x, ok := e.(manager.WorkerExited); ok {
			t.Fatalf("a worker exited with the log output closed: %+v", x)
		}
	}
}
