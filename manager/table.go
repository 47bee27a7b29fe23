package manager

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-dev/corral/manager/launch"
)

// State is a pipeline's state in the manager's table (as inspect shows it).
type State string

// Pipeline states.
const (
	StateIdle        State = "idle"
	StateStarting    State = "starting"
	StateRunning     State = "running"
	StatePaused      State = "paused"
	StateTerminating State = "terminating"
	StateFailed      State = "failed"
)

// pipeline is one table entry. Fields under "guarded by Manager.mu" are
// only touched with the manager's lock held; the lock is never held across
// I/O.
type pipeline struct {
	id   string
	proc launch.Process
	ch   *workerChan

	// guarded by Manager.mu
	state      State
	idle       bool
	removal    bool   // marked for removal: no new command gets through
	exitReason string // why it is being removed (an Exit* constant)
	killed     bool   // the stop sequence had to SIGKILL it
	health     healthRecord
	videoKey   string // video configuration, for the RAM prediction; "" while idle
	reserved   uint64 // bytes reserved for it until its size is measured (memory.go)
	resident   uint64 // its last measured resident bytes

	// queued counts client commands waiting for or in flight on ch,
	// capped by Config.MaxQueuedPerPipeline.
	queued atomic.Int64

	probeTimeout *adaptiveTimeout
	cmdTimeouts  sync.Map // command type -> *adaptiveTimeout

	quit     chan struct{} // closed when the pipeline leaves the table
	quitOnce sync.Once
	termOnce sync.Once // the polite half of the stop sequence runs once
}

// healthRecord lives and dies with its table entry.
type healthRecord struct {
	ConsecutiveFailures int
	LastProbe           time.Time
	LastError           string
	Interval            time.Duration
}

func (p *pipeline) leave() { p.quitOnce.Do(func() { close(p.quit) }) }

// PipelineInfo is one pipeline as Snapshot and inspect show it.
type PipelineInfo struct {
	PipelineID       string     `json:"pipeline_id"`
	State            State      `json:"state"`
	Idle             bool       `json:"idle"`
	MarkedForRemoval bool       `json:"marked_for_removal"`
	Pid              int        `json:"pid"`
	Pgid             int        `json:"pgid"`
	Health           HealthInfo `json:"health"`
}

// HealthInfo is a pipeline's health record.
type HealthInfo struct {
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastProbe is nil until the first probe.
	LastProbe     *time.Time `json:"last_probe"`
	LastError     string     `json:"last_error,omitempty"`
	ProbeTimeout  float64    `json:"probe_timeout_seconds"`
	ProbeInterval float64    `json:"probe_interval_seconds"`
}

// Snapshot is a consistent copy of the manager's state.
type Snapshot struct {
	Pipelines      []PipelineInfo
	ShuttingDown   bool
	StaleResponses int64
	Timeouts       int64
}

// CountByState counts the snapshot's pipelines per state.
func (s Snapshot) CountByState() map[State]int {
	out := map[State]int{}
	for _, p := range s.Pipelines {
		out[p.State]++
	}
	return out
}
