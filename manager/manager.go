package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// ErrShuttingDown is returned for work refused because Shutdown has begun.
var ErrShuttingDown = errors.New("manager: shutting down")

// Options wire a Manager to its launcher and observers.
type Options struct {
	// Launcher starts workers; required. The manager owns it from New on
	// and closes it at the end of Shutdown.
	Launcher launch.Launcher
	// Hook receives every Event; nil discards them.
	Hook EventHook
	// Log receives the manager's own diagnostics; nil discards them.
	Log *slog.Logger
	// MemoryUsage returns the resident bytes of one process (the manager's
	// own pid or a worker's; 0 for one already gone), for
	// STREAM_MANAGER_MAX_RAM_MB; nil reads /proc/<pid>/statm.
	MemoryUsage func(pid int) (uint64, error)
}

// Manager is the pipeline table plus everything that supervises it. It is
// the innermost Handler of the chain.
type Manager struct {
	cfg  Config
	opts Options
	hook EventHook
	log  *slog.Logger

	ctx    context.Context // cancelled when Shutdown finishes
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the manager starts, through goOwned

	mu      sync.Mutex
	table   map[string]*pipeline
	order   map[string]uint64 // insertion order for list_pipelines
	closing bool
	joining bool // Shutdown waits on wg: goOwned refuses from now on
	ram     ramBook

	poolKick chan struct{}
	seq      atomic.Uint64
	stale    atomic.Int64
	timeouts atomic.Int64

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error
}

// New validates cfg and starts the manager's warm pool. Stop it with
// Shutdown.
func New(cfg Config, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Launcher == nil {
		return nil, errors.New("manager: Options.Launcher is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MemoryUsage == nil {
		opts.MemoryUsage = residentBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, opts: opts, hook: opts.Hook, log: opts.Log,
		ctx: ctx, cancel: cancel,
		table:        map[string]*pipeline{},
		order:        map[string]uint64{},
		ram:          ramBook{learned: map[string]uint64{}},
		poolKick:     make(chan struct{}, 1),
		shutdownDone: make(chan struct{}),
	}
	if cfg.PreloadedProcesses > 0 {
		m.goOwned(m.poolLoop)
		m.kickPool()
	}
	return m, nil
}

// goOwned runs f in a goroutine that Shutdown waits for. It is the only
// place the manager starts goroutines: the Add happens under m.mu and is
// refused (false, f not run) once Shutdown has begun its final Wait, so
// Add never races Wait (sync.WaitGroup's rule).
func (m *Manager) goOwned(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joining {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// Config returns the configuration the manager runs with.
func (m *Manager) Config() Config { return m.cfg }

func (m *Manager) emit(e Event) {
	if m.hook != nil {
		m.hook(e)
	}
}

func (m *Manager) nextRequestID() string {
	return "c" + strconv.FormatUint(m.seq.Add(1), 10)
}

// Handle dispatches one request to the table. It implements Handler.
func (m *Manager) Handle(ctx context.Context, req *protocol.Request) protocol.Response {
	var resp protocol.Response
	switch req.Type {
	case protocol.TypeListPipelines:
		return m.list()
	case protocol.TypeInspect:
		return m.inspect()
	case protocol.TypeInit:
		return m.init(ctx, req)
	case protocol.TypeWebRTC:
		return protocol.Failure(protocol.OperationError(
			"WebRTC is not supported by this stream manager (corral); use init and consume_result."))
	case protocol.TypeTerminate:
		resp = m.terminate(ctx, req.PipelineID)
	case protocol.TypeChaos:
		if !m.cfg.Chaos {
			resp = protocol.Failure(protocol.InvalidPayload(
				"chaos is not enabled in this manager (start it with --chaos or STREAM_MANAGER_CHAOS=true)"))
			break
		}
		resp = m.command(ctx, req)
	case protocol.TypeMute, protocol.TypeResume, protocol.TypeStatus, protocol.TypeConsumeResult:
		resp = m.command(ctx, req)
	default:
		resp = protocol.Failure(protocol.InvalidPayload(fmt.Sprintf("unknown request type %q", req.Type)))
	}
	resp.PipelineID = req.PipelineID
	return resp
}

func (m *Manager) list() protocol.Response {
	m.mu.Lock()
	ids := make([]string, 0, len(m.table))
	for id, p := range m.table {
		if !p.idle {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return int(m.order[a]) - int(m.order[b]) })
	m.mu.Unlock()
	return protocol.Success(map[string]any{"pipelines": ids})
}

func (m *Manager) inspect() protocol.Response {
	snap := m.Snapshot()
	return protocol.Success(protocol.Inspect{
		Pipelines: snap.Pipelines, ShuttingDown: snap.ShuttingDown,
		StaleResponses: snap.StaleResponses, Timeouts: snap.Timeouts,
		Limits: &protocol.Limits{
			TerminationGracePeriod: m.cfg.TerminationGracePeriod.Seconds(),
			ProcessJoinTimeout:     m.cfg.ProcessJoinTimeout.Seconds(),
			QueueTimeout:           m.cfg.QueueTimeout.Seconds(),
			HealthCheckInterval:    m.cfg.HealthCheckInterval.Seconds(),
			HealthCheckTimeout:     m.cfg.HealthCheckTimeout.Seconds(),
			MaxHealthFailures:      m.cfg.MaxHealthFailures,
			ProbeTimeoutFloor:      m.cfg.ProbeTimeoutFloor.Seconds(),
			MaxRAMMB:               m.cfg.MaxRAMMB,
			WorkerRAMMB:            m.cfg.WorkerRAMMB,
			MaxConnections:         m.cfg.MaxConnections,
		},
	}.Fields())
}

// Snapshot returns a consistent copy of the table, sorted by pipeline id.
func (m *Manager) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{ShuttingDown: m.closing, StaleResponses: m.stale.Load(), Timeouts: m.timeouts.Load()}
	for _, p := range m.table {
		var last *time.Time
		if !p.health.LastProbe.IsZero() {
			t := p.health.LastProbe
			last = &t
		}
		s.Pipelines = append(s.Pipelines, protocol.PipelineInfo{
			PipelineID: p.id, State: p.state, Idle: p.idle, MarkedForRemoval: p.removal,
			Pid: p.proc.Pid(), Pgid: p.proc.Pgid(),
			Health: protocol.HealthInfo{
				ConsecutiveFailures: p.health.ConsecutiveFailures,
				LastProbe:           last,
				LastError:           p.health.LastError,
				ProbeTimeout:        p.probeTimeout.Timeout().Seconds(),
				ProbeInterval:       p.health.Interval.Seconds(),
			},
		})
	}
	slices.SortFunc(s.Pipelines, func(a, b protocol.PipelineInfo) int {
		switch {
		case a.PipelineID < b.PipelineID:
			return -1
		case a.PipelineID > b.PipelineID:
			return 1
		}
		return 0
	})
	return s
}

// lookup finds a pipeline a client may command. Idle (pool) workers are
// visible only to chaos.
func (m *Manager) lookup(id string, allowIdle bool) (*pipeline, *protocol.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.table[id]
	// A pipeline that ended by itself (its sources ended and its results
	// were consumed) is gone for clients at once, as upstream's health
	// pass deletes it from its table before joining its process.
	if !ok || (p.idle && !allowIdle) || p.removal && p.exitReason == ExitEnded {
		return nil, protocol.NotFound(id)
	}
	if p.removal {
		return nil, beingTerminated(id)
	}
	return p, nil
}

func beingTerminated(id string) *protocol.Error {
	return protocol.OperationError(fmt.Sprintf("Pipeline %s is being terminated.", id))
}

func (m *Manager) setState(p *pipeline, to protocol.State) {
	m.mu.Lock()
	from := p.state
	p.state = to
	m.mu.Unlock()
	if from != to {
		m.emit(PipelineStateChanged{At: now(), PipelineID: p.id, From: from, To: to})
	}
}

// command forwards a client command to the pipeline's worker with the
// pipeline's adaptive deadline for that command.
func (m *Manager) command(ctx context.Context, req *protocol.Request) protocol.Response {
	p, perr := m.lookup(req.PipelineID, req.Type == protocol.TypeChaos)
	if perr != nil {
		return protocol.Failure(perr)
	}
	// A bounded queue per pipeline: a hung worker holds at most this many
	// clients (and their connections); the rest are told at once.
	if n := p.queued.Add(1); n > int64(m.cfg.MaxQueuedPerPipeline) {
		p.queued.Add(-1)
		return protocol.Failure(protocol.OperationError(fmt.Sprintf(
			"Pipeline %s is busy: %d requests are already waiting for it (STREAM_MANAGER_MAX_QUEUED_PER_PIPELINE=%d); retry later.",
			p.id, n-1, m.cfg.MaxQueuedPerPipeline)))
	}
	defer p.queued.Add(-1)
	if sharable(req) {
		return m.sharedStatus(ctx, p, req)
	}
	return m.forward(ctx, p, req, callOpts{})
}

// forward sends req to p's worker with the pipeline's adaptive deadline
// for its type and records the outcome (health, timeouts, state).
func (m *Manager) forward(ctx context.Context, p *pipeline, req *protocol.Request, o callOpts) protocol.Response {
	at := m.commandTimeout(p, req.Type)
	timeout := at.Timeout()
	start := time.Now()
	r, err := p.ch.call(ctx, m.workerCommand(req.Type, req), timeout, o)
	if err != nil {
		if errors.Is(err, ErrTimeout) && !errors.Is(err, errQueued) {
			if _, unhealthy := m.recordHealth(p, fmt.Errorf("%s: %w", req.Type, err), false, 0); unhealthy {
				p.ch.refuseNew()
				m.stopMarked(p)
			}
		}
		return protocol.Failure(m.callFailed(p, req.Type, at, timeout, err))
	}
	m.recordHealth(p, nil, false, 0)
	if before, after := at.Observe(time.Since(start)); before != after {
		m.emit(TimeoutChanged{At: now(), PipelineID: p.id, Command: req.Type, Before: before, After: after})
	}
	if r.OK() {
		switch req.Type {
		case protocol.TypeMute:
			m.setState(p, protocol.StatePaused)
		case protocol.TypeResume:
			m.setState(p, protocol.StateRunning)
		}
	}
	return r
}

// callFailed turns a failed worker call into the client's error, recording
// timeouts and stopping pipelines whose channel broke.
func (m *Manager) callFailed(p *pipeline, command string, at *adaptiveTimeout, timeout time.Duration, err error) *protocol.Error {
	switch {
	case errors.Is(err, ErrChannelBroken):
		m.channelBroke(p, command, err)
		return protocol.OperationError(fmt.Sprintf("Pipeline %s: channel to its worker broke during %s (%v); the pipeline is being terminated.", p.id, command, err))
	case errors.Is(err, ErrTimeout):
		m.timeouts.Add(1)
		m.emit(CommandTimedOut{At: now(), PipelineID: p.id, Command: command, After: timeout})
		if at != nil {
			if before, after := at.TimedOut(); before != after {
				m.emit(TimeoutChanged{At: now(), PipelineID: p.id, Command: command, Before: before, After: after})
			}
		}
		return protocol.OperationError(fmt.Sprintf("Pipeline %s did not answer %s within %s.", p.id, command, timeout.Round(time.Millisecond)))
	case errors.Is(err, ErrWorkerGone):
		return protocol.OperationError(fmt.Sprintf("Pipeline %s: its worker exited during %s.", p.id, command))
	case errors.Is(err, errRefused):
		return beingTerminated(p.id)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return protocol.OperationError(fmt.Sprintf("Pipeline %s: %s abandoned: %v.", p.id, command, err))
	}
	return protocol.InternalError(fmt.Sprintf("Pipeline %s: %s failed: %v", p.id, command, err))
}

func (m *Manager) commandTimeout(p *pipeline, command string) *adaptiveTimeout {
	if v, ok := p.cmdTimeouts.Load(command); ok {
		return v.(*adaptiveTimeout)
	}
	v, _ := p.cmdTimeouts.LoadOrStore(command, newAdaptiveTimeout(m.cfg.CommandTimeoutFloor, m.cfg.QueueTimeout))
	return v.(*adaptiveTimeout)
}

func (m *Manager) workerCommand(typ string, req *protocol.Request) protocol.WorkerCommand {
	cmd := protocol.WorkerCommand{RequestID: m.nextRequestID(), Type: typ}
	if req != nil {
		cmd.Traceparent = req.Traceparent
		cmd.Request = req.Fields
	}
	return cmd
}
