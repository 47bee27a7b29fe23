package manager_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
)

func TestMain(m *testing.M) {
	// Real-process tests start this test binary as their worker.
	if os.Getenv(worker.EnvMode) != "" {
		os.Exit(worker.Main())
	}
	goleak.VerifyTestMain(m)
}

// wait bounds every wait in these tests.
const wait = 15 * time.Second

func testConfig() manager.Config {
	cfg := manager.DefaultConfig()
	cfg.Port = 0
	cfg.QueueTimeout = 5 * time.Second
	cfg.HealthCheckTimeout = 2 * time.Second
	cfg.HealthCheckInterval = time.Second
	cfg.TerminationGracePeriod = 500 * time.Millisecond
	cfg.ProcessJoinTimeout = 5 * time.Second
	cfg.SocketTimeout = 2 * time.Second
	return cfg
}

// recorder keeps every event and wakes waiters on each new one.
type recorder struct {
	mu     sync.Mutex
	events []manager.Event
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{})} }

func (r *recorder) hook(e manager.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// waitFor returns the first event matching pred, waiting up to `wait`.
func (r *recorder) waitFor(t testing.TB, what string, pred func(manager.Event) bool) manager.Event {
	t.Helper()
	deadline := time.After(wait)
	seen := 0
	for {
		r.mu.Lock()
		for ; seen < len(r.events); seen++ {
			if pred(r.events[seen]) {
				e := r.events[seen]
				r.mu.Unlock()
				return e
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no %s event within %s", what, wait)
		}
	}
}

func (r *recorder) all() []manager.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]manager.Event(nil), r.events...)
}

type rig struct {
	m   *manager.Manager
	c   *protocol.Client
	ev  *recorder
	srv *manager.Server
}

// start runs a manager and its server on a free loopback port; cleanup
// shuts both down.
func start(t testing.TB, cfg manager.Config, l launch.Launcher, opts ...func(*manager.Options)) *rig {
	t.Helper()
	ev := newRecorder()
	o := manager.Options{Launcher: l, Hook: ev.hook}
	for _, f := range opts {
		f(&o)
	}
	m, err := manager.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer(manager.Chain(m, manager.Recover(nil)), cfg, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &rig{m: m, ev: ev, srv: srv, c: &protocol.Client{Addr: ln.Addr().String(), Timeout: wait}}
}

func memory(t testing.TB) launch.Launcher { return launch.NewMemory(launch.MemoryConfig{}) }

func processes(t testing.TB) *launch.Processes {
	t.Helper()
	// Race-enabled workers would otherwise sleep a second on exit.
	l, err := launch.NewProcesses(launch.ProcessConfig{Command: []string{os.Args[0]}, Env: []string{"GORACE=atexit_sleep_ms=0"}, Subreaper: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func synthetic() protocol.InitConfig {
	return protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=50"}}
}

func mustInit(t testing.TB, r *rig) string {
	t.Helper()
	id, err := r.c.Init(t.Context(), synthetic())
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return id
}

func isType(err error, typ string) bool {
	return errors.Is(err, &protocol.Error{Type: typ})
}

func pidOf(t testing.TB, r *rig, id string) int {
	t.Helper()
	for _, p := range r.m.Snapshot().Pipelines {
		if p.PipelineID == id {
			return p.Pid
		}
	}
	t.Fatalf("pipeline %s not in snapshot", id)
	return 0
}
