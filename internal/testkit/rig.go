package testkit

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// Config is the manager configuration the rigs start from: a free port and
// timeouts short enough for tests. Tests change what they exercise.
func Config() manager.Config {
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

// ProcessLauncher returns a launcher of real worker processes that runs
// this test binary; the package's TestMain must be WorkerTestMain. The
// manager closes it on shutdown.
func ProcessLauncher(t testing.TB) *launch.Processes {
	t.Helper()
	l, err := launch.NewProcesses(launch.ProcessConfig{
		Command: []string{os.Args[0]},
		// Race-enabled workers would otherwise sleep a second on exit.
		Env:       []string{"GORACE=atexit_sleep_ms=0"},
		Subreaper: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Rig is a manager served on a loopback port.
type Rig struct {
	M       *manager.Manager
	Service *manager.Service // M and its server
	Client  *protocol.Client // to Addr, each call bounded like the rig's waits
	Events  *Recorder        // every event of M
	Addr    string           // host:port of the server
}

// An Option changes how StartManager builds the rig.
type Option interface{ apply(*settings) }

type optionFunc func(*settings)

func (f optionFunc) apply(s *settings) { f(s) }

type settings struct {
	wait        time.Duration
	middlewares []manager.Middleware
	options     []func(*manager.Options)
}

// WithWait bounds the rig's waits (events, client calls, shutdown) by d
// instead of Wait.
func WithWait(d time.Duration) Option { return optionFunc(func(s *settings) { s.wait = d }) }

// WithMiddleware adds middlewares to the server's chain, inside
// manager.Recover.
func WithMiddleware(mws ...manager.Middleware) Option {
	return optionFunc(func(s *settings) { s.middlewares = append(s.middlewares, mws...) })
}

// WithManagerOptions edits the manager's options after the rig has set
// Launcher and Hook (the recorder's); an edit that replaces Hook should
// chain it.
func WithManagerOptions(f func(*manager.Options)) Option {
	return optionFunc(func(s *settings) { s.options = append(s.options, f) })
}

// StartManager runs a manager over l and its server on a free loopback
// port, as one manager.Service. Cleanup shuts the service down within the
// rig's bound; an error from that shutdown fails the test.
func StartManager(t testing.TB, cfg manager.Config, l launch.Launcher, opts ...Option) *Rig {
	t.Helper()
	s := settings{wait: Wait}
	for _, o := range opts {
		o.apply(&s)
	}
	ev := NewRecorder(s.wait)
	mo := manager.Options{Launcher: l, Hook: ev.Hook}
	for _, f := range s.options {
		f(&mo)
	}
	cfg.Host, cfg.Port = "127.0.0.1", 0
	svc, err := manager.StartService(cfg, mo, s.middlewares...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.wait)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	addr := svc.Addr()
	return &Rig{M: svc.Manager(), Service: svc, Events: ev, Addr: addr, Client: &protocol.Client{Addr: addr, Timeout: s.wait}}
}

// Serve runs h on a free loopback port until the test ends and returns the
// address. Cleanup shuts the server down within bound (0 means Wait) and
// fails the test if it does not stop.
func Serve(t testing.TB, h manager.Handler, cfg manager.Config, bound time.Duration) string {
	t.Helper()
	_, addr := StartServer(t, h, cfg, bound)
	return addr
}

// StartServer is Serve that also returns the server, for tests of the
// server itself.
func StartServer(t testing.TB, h manager.Handler, cfg manager.Config, bound time.Duration) (*manager.Server, string) {
	t.Helper()
	if bound <= 0 {
		bound = Wait
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer(h, cfg, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		select {
		case <-served:
		case <-ctx.Done():
			t.Error("server did not stop")
		}
	})
	return srv, ln.Addr().String()
}

// Init starts a pipeline on a small synthetic video and returns its id.
func (r *Rig) Init(t testing.TB) string {
	t.Helper()
	id, err := r.Client.Init(t.Context(), protocol.InitConfig{
		VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=50"}})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return id
}

// Pid returns the worker pid of pipeline id, from the manager's snapshot.
func (r *Rig) Pid(t testing.TB, id string) int {
	t.Helper()
	for _, p := range r.M.Snapshot().Pipelines {
		if p.PipelineID == id {
			return p.Pid
		}
	}
	t.Fatalf("pipeline %s not in snapshot", id)
	return 0
}
