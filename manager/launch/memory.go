package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/corral-dev/corral/manager/worker"
)

// MemoryConfig configures a Memory launcher.
type MemoryConfig struct {
	// Log is handed to every worker, labelled with its name; nil discards.
	Log *slog.Logger
	// Tracer is handed to every worker (worker.Config.Tracer); nil traces
	// nothing.
	Tracer worker.Tracer
}

// Memory runs each worker's loop (worker.Run) in a goroutine, talking over
// a net.Pipe, which supports write deadlines like a real pipe. There is no
// OS process: Pid and Pgid are 0, a crash fault makes Run return an exit
// status, and spawn_grandchild fails.
type Memory struct {
	log    *slog.Logger
	tracer worker.Tracer

	mu     sync.Mutex
	closed bool
	procs  map[*memProcess]struct{} // running until their Run returns
}

var _ Launcher = (*Memory)(nil)

// NewMemory returns an in-memory launcher.
func NewMemory(cfg MemoryConfig) *Memory {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Memory{log: log, tracer: cfg.Tracer, procs: make(map[*memProcess]struct{})}
}

// Launch starts one worker loop. It does not block.
func (m *Memory) Launch(ctx context.Context, opts Options) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	managerEnd, workerEnd := net.Pipe()
	// The loop's life is its own, not the launch ctx's: Kill ends it.
	runCtx, cancel := context.WithCancel(context.Background())
	p := &memProcess{
		conn:      managerEnd,
		workerEnd: workerEnd,
		cancel:    cancel,
		terminate: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		cancel()
		managerEnd.Close()
		workerEnd.Close()
		return nil, ErrClosed
	}
	m.procs[p] = struct{}{}
	cfg := worker.Config{
		In:        workerEnd,
		Out:       workerEnd,
		Log:       m.log.With("worker", opts.Name),
		Chaos:     opts.Chaos,
		Terminate: p.terminate,
		Tracer:    m.tracer,
		// Exit and SpawnGrandchild stay nil: a crash returns an
		// *ExitError, and there is no process to escape from.
	}
	go m.run(runCtx, p, cfg) // owned: Close waits for p.done
	return p, nil
}

func (m *Memory) run(ctx context.Context, p *memProcess, cfg worker.Config) {
	err := worker.Run(ctx, cfg)
	if err != nil {
		cfg.Log.Debug("worker loop ended", "err", err)
	}
	// Like a process exit closing stdout: the manager reads EOF.
	p.workerEnd.Close()
	p.cancel()
	p.finish(err)
	m.mu.Lock()
	delete(m.procs, p)
	m.mu.Unlock()
	close(p.done)
}

// Close kills every running worker and waits (at most 2 s) for their loops
// to return. Safe to call twice.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	procs := make([]*memProcess, 0, len(m.procs))
	for p := range m.procs {
		procs = append(procs, p)
	}
	m.mu.Unlock()
	for _, p := range procs {
		_ = p.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("launch: in-memory worker did not stop within %v", closeTimeout))
		}
	}
	return errors.Join(errs...)
}

// memProcess is one in-memory worker.
type memProcess struct {
	conn      net.Conn // the manager's end
	workerEnd net.Conn
	cancel    context.CancelFunc
	terminate chan struct{}
	done      chan struct{}

	mu     sync.Mutex
	killed bool
	exit   Exit
}

var _ Process = (*memProcess)(nil)

func (p *memProcess) Conn() Conn            { return p.conn }
func (p *memProcess) Pid() int              { return 0 }
func (p *memProcess) Pgid() int             { return 0 }
func (p *memProcess) Done() <-chan struct{} { return p.done }

// Terminate is the in-memory SIGTERM: one pending request is enough, and a
// worker that ignores SIGTERM drops it.
func (p *memProcess) Terminate() error {
	select {
	case p.terminate <- struct{}{}:
	default:
	}
	return nil
}

// Kill ends the loop at once and closes both ends of the channel. Safe to
// call twice and after exit; the first Kill before exit decides Exit.
func (p *memProcess) Kill() error {
	p.mu.Lock()
	select {
	case <-p.done:
	default:
		p.killed = true
	}
	p.mu.Unlock()
	p.cancel()
	p.conn.Close()
	p.workerEnd.Close()
	return nil
}

// finish records how Run ended; a Kill that came first wins, as SIGKILL
// would.
func (p *memProcess) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var exitErr *worker.ExitError
	switch {
	case p.killed:
		p.exit = Exit{Code: -1, Signal: "killed"}
	case err == nil:
		p.exit = Exit{}
	case errors.As(err, &exitErr):
		p.exit = Exit{Code: exitErr.Code}
	default:
		// As a worker process would: log the error, exit 1.
		p.exit = Exit{Code: 1}
	}
}

// Exit is valid once Done is closed; before that it is the zero Exit.
func (p *memProcess) Exit() Exit {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exit
	default:
		return Exit{}
	}
}
