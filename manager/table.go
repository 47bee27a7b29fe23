package manager

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// pipeline is one table entry. Fields under "guarded by Manager.mu" are
// only touched with the manager's lock held; the lock is never held across
// I/O.
type pipeline struct {
	id   string
	proc launch.Process
	ch   *workerChan

	// guarded by Manager.mu
	state      protocol.State
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

	// status is the status round trip in flight that later status
	// requests join (flight.go); nil when none.
	statusMu sync.Mutex
	status   *flight

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

// Snapshot is a consistent copy of the manager's state.
type Snapshot struct {
	Pipelines      []protocol.PipelineInfo
	ShuttingDown   bool
	StaleResponses int64
	Timeouts       int64
}

// CountByState counts the snapshot's pipelines per state.
func (s Snapshot) CountByState() map[protocol.State]int {
	out := map[protocol.State]int{}
	for _, p := range s.Pipelines {
		out[p.State]++
	}
	return out
}
