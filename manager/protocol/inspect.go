package protocol

import "time"

// State is a pipeline's state in the manager's table, as inspect shows it.
type State string

// Pipeline states of an inspect answer.
const (
	StateIdle        State = "idle"        // a warm-pool worker, not yet taken
	StateStarting    State = "starting"    // launched, init not yet answered
	StateRunning     State = "running"     // init answered ok
	StatePaused      State = "paused"      // muted
	StateTerminating State = "terminating" // its stop sequence runs
	StateFailed      State = "failed"      // its worker exited or broke
)

// Inspect is the body of a successful inspect answer (a Corral extension):
// the manager's own view of its table.
type Inspect struct {
	// Pipelines are sorted by pipeline id; never null on the wire.
	Pipelines    []PipelineInfo `json:"pipelines"`
	ShuttingDown bool           `json:"shutting_down"`
	// StaleResponses counts worker replies dropped as stale, Timeouts the
	// worker calls that timed out, since the manager started.
	StaleResponses int64 `json:"stale_responses"`
	Timeouts       int64 `json:"timeouts"`
	// Limits is the configuration the manager holds itself to, so a
	// harness judges a running server by its real bounds, not by settings
	// it assumes; nil from managers that do not report it.
	Limits *Limits `json:"limits,omitempty"`
}

// Limits are a manager's configured bounds as inspect reports them:
// durations in seconds, memory in MiB (0: no limit).
type Limits struct {
	TerminationGracePeriod float64 `json:"termination_grace_period_seconds"`
	ProcessJoinTimeout     float64 `json:"process_join_timeout_seconds"`
	QueueTimeout           float64 `json:"queue_timeout_seconds"`
	HealthCheckInterval    float64 `json:"health_check_interval_seconds"`
	HealthCheckTimeout     float64 `json:"health_check_timeout_seconds"`
	MaxHealthFailures      int     `json:"max_health_failures"`
	ProbeTimeoutFloor      float64 `json:"probe_timeout_floor_seconds"`
	MaxRAMMB               int     `json:"max_ram_mb"`
	WorkerRAMMB            int     `json:"worker_ram_mb"`
	MaxConnections         int     `json:"max_connections"`
}

// Fields returns the answer's body fields (for Success).
func (in Inspect) Fields() map[string]any {
	pipelines := in.Pipelines
	if pipelines == nil {
		pipelines = []PipelineInfo{}
	}
	out := map[string]any{
		"pipelines":       pipelines,
		"shutting_down":   in.ShuttingDown,
		"stale_responses": in.StaleResponses,
		"timeouts":        in.Timeouts,
	}
	if in.Limits != nil {
		out["limits"] = in.Limits
	}
	return out
}

// PipelineInfo is one pipeline of an inspect answer.
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
	LastProbe *time.Time `json:"last_probe"`
	LastError string     `json:"last_error,omitempty"`
	// ProbeTimeout is the adaptive probe timeout now, in seconds (inside
	// the manager's configured floor and ceiling).
	ProbeTimeout float64 `json:"probe_timeout_seconds"`
	// ProbeInterval is the time between probes, in seconds.
	ProbeInterval float64 `json:"probe_interval_seconds"`
}
