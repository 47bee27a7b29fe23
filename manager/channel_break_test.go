package manager_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// scriptedLauncher starts fake workers that live until killed (they ignore
// SIGTERM) and answer init with success and every later command with
// misbehave, which writes whatever it likes to the manager (or closes the
// channel) and reports whether to keep serving.
type scriptedLauncher struct {
	misbehave func(conn net.Conn) (keep bool)

	mu    sync.Mutex
	procs []*scriptedProc
	wg    sync.WaitGroup // the serving goroutines
}

type scriptedProc struct {
	manager, worker net.Conn
	done            chan struct{}
	once            sync.Once
}

func (l *scriptedLauncher) Launch(ctx context.Context, _ launch.Options) (launch.Process, error) {
	a, b := net.Pipe()
	p := &scriptedProc{manager: a, worker: b, done: make(chan struct{})}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.serve(p)
	}()
	return p, nil
}

func (l *scriptedLauncher) serve(p *scriptedProc) {
	initialised := false
	for {
		body, err := protocol.ReadFrame(p.worker, 0)
		if err != nil {
			return
		}
		var cmd protocol.WorkerCommand
		if err := json.Unmarshal(body, &cmd); err != nil {
			return
		}
		if initialised {
			if !l.misbehave(p.worker) {
				return
			}
			continue
		}
		initialised = true
		reply, _ := json.Marshal(protocol.WorkerReply{RequestID: cmd.RequestID, Response: protocol.Success(nil)})
		if protocol.WriteFrame(p.worker, reply) != nil {
			return
		}
	}
}

// Close kills every fake worker and waits for the serving goroutines.
func (l *scriptedLauncher) Close() error {
	l.mu.Lock()
	procs := append([]*scriptedProc(nil), l.procs...)
	l.mu.Unlock()
	for _, p := range procs {
		_ = p.Kill()
	}
	l.wg.Wait()
	return nil
}

func (p *scriptedProc) Conn() launch.Conn     { return p.manager }
func (p *scriptedProc) Pid() int              { return 0 }
func (p *scriptedProc) Pgid() int             { return 0 }
func (p *scriptedProc) Terminate() error      { return nil } // it ignores SIGTERM
func (p *scriptedProc) Done() <-chan struct{} { return p.done }
func (p *scriptedProc) Exit() launch.Exit     { return launch.Exit{Code: -1, Signal: "killed"} }
func (p *scriptedProc) Kill() error {
	p.once.Do(func() {
		_ = p.worker.Close()
		_ = p.manager.Close()
		close(p.done)
	})
	return nil
}

// Issue 9, item 3: a broken worker channel used to answer every command
// "its worker exited" while the worker lived, stop the health loop, and
// leave the pipeline listed as running forever. Each way the reply stream
// can break, found by a client command or by a probe, must fail the
// pipeline: the client hears the channel broke (never "exited"), health
// counts it, and the worker is killed, reaped and unlisted.
func TestBrokenWorkerChannelFailsPipeline(t *testing.T) {
	breaks := map[string]func(net.Conn) bool{
		"oversized header": func(c net.Conn) bool { _, _ = c.Write([]byte{0xff, 0xff, 0xff, 0xff}); return true },
		"empty frame":      func(c net.Conn) bool { _, _ = c.Write([]byte{0, 0, 0, 0}); return true },
		"truncated frame": func(c net.Conn) bool {
			_, _ = c.Write([]byte{0, 0, 0, 100, '{'})
			_ = c.Close() // output ends mid-frame while the worker lives
			return false
		},
		"output closed": func(c net.Conn) bool { _ = c.Close(); return false },
	}
	for name, misbehave := range breaks {
		for _, by := range []string{"client", "probe"} {
			t.Run(name+" found by "+by, func(t *testing.T) {
				cfg := testConfig()
				cfg.TerminationGracePeriod = 100 * time.Millisecond
				cfg.HealthCheckInterval = time.Hour
				if by == "probe" {
					cfg.HealthCheckInterval = 20 * time.Millisecond
				}
				// What inspect shows when the break is reported.
				var (
					mu      sync.Mutex
					atBreak []protocol.PipelineInfo
				)
				var m *manager.Manager
				r := testkit.StartManager(t, cfg, &scriptedLauncher{misbehave: misbehave}, testkit.WithManagerOptions(func(o *manager.Options) {
					record := o.Hook
					o.Hook = func(e manager.Event) {
						if _, ok := e.(manager.PipelineError); ok {
							mu.Lock()
							atBreak = m.Snapshot().Pipelines
							mu.Unlock()
						}
						record(e)
					}
				}))
				mu.Lock()
				m = r.M
				mu.Unlock()
				id := r.Init(t)
				if by == "client" {
					_, err := r.Client.Status(t.Context(), id)
					if !isType(err, protocol.ErrTypeOperation) || !strings.Contains(err.Error(), "channel to its worker broke during status") ||
						strings.Contains(err.Error(), "exited") {
						t.Fatalf("status = %v, want operation_error saying the channel broke", err)
					}
				}
				broke := r.Events.WaitFor(t, "channel break", func(e manager.Event) bool {
					pe, ok := e.(manager.PipelineError)
					return ok && pe.PipelineID == id
				}).(manager.PipelineError)
				if !strings.Contains(broke.Err.Error(), "channel broken") {
					t.Fatalf("pipeline error = %v, want the channel break", broke.Err)
				}
				mu.Lock()
				if len(atBreak) != 1 || !atBreak[0].MarkedForRemoval || atBreak[0].Health.ConsecutiveFailures < 1 ||
					!strings.Contains(atBreak[0].Health.LastError, "channel broken") {
					t.Errorf("inspect at the break = %+v, want it marked, with the failure counted and named", atBreak)
				}
				mu.Unlock()
				exit := r.Events.WaitFor(t, "reap", func(e manager.Event) bool {
					x, ok := e.(manager.WorkerExited)
					return ok && x.PipelineID == id
				}).(manager.WorkerExited)
				if exit.Reason != manager.ExitUnhealthy || !exit.Killed {
					t.Fatalf("exit = %+v, want unhealthy, killed", exit)
				}
				if ids, err := r.Client.List(t.Context()); err != nil || len(ids) != 0 {
					t.Fatalf("list = %v, %v; want the failed pipeline gone", ids, err)
				}
			})
		}
	}
}

// A worker reply larger than the request cap (STREAM_MANAGER_MAX_FRAME_BYTES)
// is within the worker cap and breaks nothing: status reports over 1 KiB
// keep coming, to clients and to probes, and health stays clean.
func TestWorkerReplyOverRequestCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameBytes = 1024
	cfg.HealthCheckInterval = 20 * time.Millisecond
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	ctx := t.Context()
	id := r.Init(t)
	for range 4 {
		if err := r.Client.Pause(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := r.Client.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := r.Client.Status(ctx, id)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	body, _ := json.Marshal(resp)
	if len(body) <= cfg.MaxFrameBytes {
		t.Fatalf("status reply of %d bytes, want one over the %d-byte request cap for this test to mean anything", len(body), cfg.MaxFrameBytes)
	}
	// Probes over the same large reports succeed, several in a row.
	ok := 0
	r.Events.WaitFor(t, "three good probes", func(e manager.Event) bool {
		if pr, is := e.(manager.ProbeResult); is && pr.PipelineID == id {
			if pr.Err != nil {
				t.Fatalf("probe failed: %v", pr.Err)
			}
			ok++
		}
		return ok >= 3
	})
	if _, err := r.Client.Status(ctx, id); err != nil {
		t.Fatalf("status after the probes: %v", err)
	}
	for _, p := range r.M.Snapshot().Pipelines {
		if p.PipelineID == id && (p.State != protocol.StateRunning || p.MarkedForRemoval || p.Health.ConsecutiveFailures != 0) {
			t.Fatalf("pipeline %+v, want running with clean health", p)
		}
	}
}

// A reply over STREAM_MANAGER_MAX_WORKER_FRAME_BYTES from a real worker
// fails its pipeline: the status that drew it is told why, and the worker
// process is killed and reaped.
func TestWorkerReplyOverWorkerCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxWorkerFrameBytes = 1024
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(t, cfg, testkit.ProcessLauncher(t))
	id := r.Init(t)
	pid := r.Pid(t, id)
	_, err := r.Client.Status(t.Context(), id)
	if !isType(err, protocol.ErrTypeOperation) || !strings.Contains(err.Error(), "STREAM_MANAGER_MAX_WORKER_FRAME_BYTES=1024") {
		t.Fatalf("status = %v, want operation_error naming the worker frame cap", err)
	}
	exit := r.Events.WaitFor(t, "reap", func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	}).(manager.WorkerExited)
	if exit.Reason != manager.ExitUnhealthy {
		t.Fatalf("exit = %+v, want unhealthy", exit)
	}
	gone(t, pid)
}
