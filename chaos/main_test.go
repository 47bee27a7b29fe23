package chaos_test

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
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
	cfg.Chaos = true
	cfg.QueueTimeout = 5 * time.Second
	cfg.HealthCheckTimeout = 2 * time.Second
	cfg.HealthCheckInterval = time.Hour // faults here must not be healed by the manager
	cfg.TerminationGracePeriod = 500 * time.Millisecond
	cfg.ProcessJoinTimeout = 5 * time.Second
	cfg.SocketTimeout = 2 * time.Second
	return cfg
}

type rig struct {
	m *manager.Manager
	c *protocol.Client
}

// start runs a manager with real worker processes and its server on a free
// loopback port; cleanup shuts both down.
func start(t *testing.T, cfg manager.Config, mws ...manager.Middleware) *rig {
	t.Helper()
	l, err := launch.NewProcesses(launch.ProcessConfig{Command: []string{os.Args[0]},
		Env: []string{"GORACE=atexit_sleep_ms=0"}, Subreaper: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(cfg, manager.Options{Launcher: l})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer(manager.Chain(m, append([]manager.Middleware{manager.Recover(nil)}, mws...)...), cfg, nil)
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
	return &rig{m: m, c: &protocol.Client{Addr: ln.Addr().String(), Timeout: wait}}
}

func (r *rig) init(t *testing.T) string {
	t.Helper()
	id, err := r.c.Init(t.Context(), protocol.InitConfig{
		VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=50"}})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return id
}

func (r *rig) pid(t *testing.T, id string) int {
	t.Helper()
	for _, p := range r.m.Snapshot().Pipelines {
		if p.PipelineID == id {
			return p.Pid
		}
	}
	t.Fatalf("pipeline %s not in snapshot", id)
	return 0
}

// procState returns the state letter of pid, or "" once it is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0]
}

// eventually polls cond, bounded by wait: no signal exists for another
// process's state changes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rejectInspect plays a foreign server that does not know inspect.
func rejectInspect(next manager.Handler) manager.Handler {
	return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
		if req.Type == protocol.TypeInspect {
			return protocol.Failure(protocol.InvalidPayload(`unknown request type "inspect"`))
		}
		return next.Handle(ctx, req)
	})
}

// childIndex returns pid's position among this process's live children
// sorted by pid, as the /proc fallback orders them.
func childIndex(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" {
			kids = append(kids, p)
		}
	}
	slices.Sort(kids)
	i := slices.Index(kids, pid)
	if i < 0 {
		t.Fatalf("pid %d is not a live child (children: %v)", pid, kids)
	}
	return i
}

func isErr(err, target error) bool { return errors.Is(err, target) }
