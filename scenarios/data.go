package scenarios

import (
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// PlanEntry is one line of schedule.jsonl: a command of a client or a fault
// of the nemesis, at a time from the start of the run. Pipelines are logical
// numbers (1..Scenario.Pipelines), never generated ids, so the same seed
// gives a byte-equal file.
type PlanEntry struct {
	At      Duration       `json:"at"`
	Process string         `json:"process"` // "client-N" or "nemesis"
	Kind    string         `json:"kind"`    // "command" or "fault"
	F       string         `json:"f"`
	Target  int            `json:"pipeline,omitempty"`
	For     Duration       `json:"for,omitempty"` // faults: heal after
	Params  map[string]any `json:"params,omitempty"`
}

// Plan kinds.
const (
	KindCommand = "command"
	KindFault   = "fault"
)

// CensusSample is the process census at one moment: every process carrying
// the manager's marker, or the manager's descendants and workers' groups.
type CensusSample struct {
	Time  int64             `json:"time"` // ns since start
	Phase string            `json:"phase"`
	Procs []launch.ProcInfo `json:"procs"`
}

// InspectSample is the manager's own view (the inspect command) at one moment.
type InspectSample struct {
	Time      int64                   `json:"time"`
	Pipelines []protocol.PipelineInfo `json:"pipelines"`
	// Listed is list_pipelines at the same moment.
	Listed []string `json:"listed"`
}

// Bounds are the limits the checkers hold the manager to, taken from its
// configuration.
type Bounds struct {
	Grace, Join       time.Duration
	QueueTimeout      time.Duration
	HealthInterval    time.Duration
	HealthTimeout     time.Duration
	MaxHealthFailures int
	// Epsilon is the slack allowed on every bound (scheduling, reaping).
	Epsilon time.Duration
}

// ShutdownRecord is how the manager's end went.
type ShutdownRecord struct {
	Signal    string `json:"signal"`    // SIGTERM or SIGKILL ("" if none was sent)
	Requested int64  `json:"requested"` // ns since start
	Exited    int64  `json:"exited"`    // ns since start; 0 if it never exited
	ExitCode  int    `json:"exit_code"`
}

// RunData is everything a run observed; checkers and reports read only this.
type RunData struct {
	Scenario   *Scenario
	Seed       int64
	Start      time.Time
	Dir        string // the run folder
	Embedded   bool   // the manager ran in this process
	Plan       []PlanEntry
	Ops        []Op
	Census     []CensusSample
	Inspects   []InspectSample
	Bounds     Bounds
	Shutdown   ShutdownRecord
	Replay     string // the exact command that replays this run
	TraceURL   string // Jaeger base URL when traces were exported, else ""
	TracesFile string // path of traces.json, if any
}

// Verdicts of a checker, as in Jepsen/Porcupine: unknown is never a pass.
const (
	Valid   = "valid"
	Invalid = "invalid"
	Unknown = "unknown"
)

// Result is one checker's verdict on a run.
type Result struct {
	Checker string   `json:"checker"`
	Verdict string   `json:"verdict"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
}

// Checker judges one invariant over a run.
type Checker interface {
	Name() string
	Check(d *RunData) Result
}

// Percentiles are latency percentiles of one command, in seconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Report is a judged run: report.json is this value.
type Report struct {
	Valid    bool                   `json:"valid"`
	Seed     int64                  `json:"seed"`
	Scenario string                 `json:"scenario"`
	Results  []Result               `json:"results"`
	Counts   map[string]int         `json:"counts"`  // ops by type, faults fired, ...
	Latency  map[string]Percentiles `json:"latency"` // by command
	Faults   map[string]int         `json:"faults"`  // fired, by fault name
	Replay   string                 `json:"replay"`
	Dir      string                 `json:"dir"`
	Data     *RunData               `json:"-"`
}
