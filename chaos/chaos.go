package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Level groups faults by where they act.
type Level string

// Fault levels.
const (
	LevelProcess Level = "process" // signals to a worker's process group
	LevelWorker  Level = "worker"  // the chaos command inside a worker
	LevelClient  Level = "client"  // misbehaving clients on the wire
	LevelManager Level = "manager" // signals to the manager itself
)

// Target is what faults act on.
type Target struct {
	// Client reaches the manager.
	Client *protocol.Client
	// ManagerPid is the manager's pid; 0 when unknown (manager-level and,
	// without inspect pids, process-level faults are then unavailable).
	ManagerPid int
	// Signal delivers manager-level signals; nil means syscall.Kill on
	// ManagerPid. The embedded manager sets it to reach its own shutdown.
	Signal func(sig string) error
	// FindWorker resolves a pipeline id to its worker's pid and process
	// group for process-level faults, when the server has no inspect (a
	// foreign manager does not say which process runs which pipeline; the
	// harness maps them from the process census around each init).
	// source says how the pid was found, for the history. An error means
	// the fault cannot be aimed: it is returned, never replaced by a
	// guess. nil means inspect only.
	FindWorker func(ctx context.Context, pipelineID string) (pid, pgid int, source string, err error)
}

// Spec is one fault to inject.
type Spec struct {
	Fault      string
	PipelineID string // "" for manager- and client-level faults
	Params     map[string]any
	// For is how long the fault lasts before its heal; 0 means the
	// fault's default (instant faults have no heal).
	For time.Duration
}

// Injection is a fault that was injected. Heal undoes it (a no-op for
// instant faults) and is safe to call twice.
type Injection interface {
	Heal(ctx context.Context) error
	// Observed describes what the injector saw (e.g. the pid signalled),
	// for the history.
	Observed() map[string]any
}

// Fault is one entry of the catalogue.
type Fault interface {
	Name() string
	Level() Level
	// NeedsPipeline reports whether Spec.PipelineID must be set.
	NeedsPipeline() bool
	Inject(ctx context.Context, t Target, s Spec) (Injection, error)

	// The fault's effect, for checkers: they decide by these, never by
	// the name, so that a renamed fault cannot slip past them.

	// Kills: firing ends the worker's process group at once with a
	// signal from outside; the injection's Observed names the "pid".
	Kills() bool
	// Exits: the worker ends itself (with exit_code, after delay_seconds
	// when given) on the chaos command.
	Exits() bool
	// Hangs: the worker answers nothing while the fault lasts.
	Hangs() bool
	// SlowsProbes: health probes are answered after delay_seconds; the
	// pipeline must be removed only when that is above the probe timeout.
	SlowsProbes() bool
	// CorruptsReplies: the worker's replies are stale or not JSON while
	// the fault lasts; the worker itself stays alive and answering.
	CorruptsReplies() bool
	// AbandonsConnections: the fault's clients send complete requests and
	// are gone (reset) before the answers: none of its connections is a
	// live client's once it has fired.
	AbandonsConnections() bool
	// InWorker: the fault is injected inside a worker with the chaos
	// command (LevelWorker).
	InWorker() bool
	// EndsManager: the fault signals the manager itself (LevelManager);
	// the planner puts one last, as the run's shutdown.
	EndsManager() bool
}

// Stalling is implemented by catalogue faults; StallsSources reports that
// the worker keeps answering while its sources stay connected and deliver
// no frame (a camera that stops sending): its frame watchdog must report
// the stall within STREAM_MANAGER_SOURCE_STALL_TIMEOUT, and a source that
// cannot reconnect fails the health probe from then on. It is a separate
// interface so that other Fault implementations need not change.
type Stalling interface {
	StallsSources() bool
}

// Lasting is implemented by catalogue faults that last until healed.
// DefaultFor is how long they last when Spec.For is 0; PlanFaults uses it to
// fill Planned.For. It is a separate interface, not a Fault method, so that
// fakes implementing Fault keep compiling.
type Lasting interface {
	DefaultFor() time.Duration
}

// Sentinel errors, matched with errors.Is. Messages name the fault and the
// pipeline, e.g. "chaos: crash: pipeline p1 not found in inspect".
var (
	ErrUnknownFault     = errors.New("chaos: unknown fault")
	ErrNoPipeline       = errors.New("chaos: fault needs a pipeline")
	ErrPipelineNotFound = errors.New("chaos: pipeline not found")
	ErrNoClient         = errors.New("chaos: target has no client")
	ErrNoManagerPid     = errors.New("chaos: manager pid unknown")
	ErrNotLoopback      = errors.New("chaos: target is not a loopback address")
	ErrUnsafeSignal     = errors.New("chaos: refusing to signal this process")
	ErrBadParam         = errors.New("chaos: bad parameter")
)

// faultError carries a readable message while matching its sentinel (and
// its cause, if any) with errors.Is.
type faultError struct {
	msg   string
	kinds []error
}

func (e *faultError) Error() string   { return e.msg }
func (e *faultError) Unwrap() []error { return e.kinds }

// errorf builds "chaos: <fault>: <message>" matching kind and cause.
func errorf(fault string, kind, cause error, format string, args ...any) error {
	msg := "chaos: " + fault + ": " + fmt.Sprintf(format, args...)
	var kinds []error
	if kind != nil {
		kinds = append(kinds, kind)
	}
	if cause != nil {
		msg += ": " + cause.Error()
		kinds = append(kinds, cause)
	}
	return &faultError{msg: msg, kinds: kinds}
}
