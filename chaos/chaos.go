// Package chaos is the harness's nemesis: faults at the process, worker,
// client and manager level, each with an inject and a heal, and seeded
// weighted schedules (with "swarm" selection of the enabled faults).
package chaos

import (
	"context"
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
}
