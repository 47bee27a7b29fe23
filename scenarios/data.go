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
	// NotApplicable says why this target cannot carry the entry out (a
	// fault of a level its profile lacks, a command it does not have);
	// the runner skips it. "" for entries that apply.
	NotApplicable string `json:"not_applicable,omitempty"`
}

// Plan kinds.
const (
	KindCommand = "command"
	KindFault   = "fault"
)

// CensusSample is the process census at one moment: every process carrying
// the manager's marker, or the manager's descendants and workers' groups.
type CensusSample struct {
	// Time is when the census began and End when it ended (ns since
	// start): a process listed was alive at Time or later, one missing
	// was dead by End.
	Time  int64             `json:"time"`
	End   int64             `json:"end,omitempty"`
	Phase string            `json:"phase"`
	Procs []launch.ProcInfo `json:"procs"`
	// ManagerRSS is the manager process's resident bytes at the census
	// (for the embedded manager: this process, as the manager itself
	// counts it); 0 when its pid is unknown or it is gone.
	ManagerRSS uint64 `json:"manager_rss,omitempty"`
}

// InspectSample is the manager's own view (the inspect command) at one moment.
type InspectSample struct {
	Time      int64                   `json:"time"`
	Pipelines []protocol.PipelineInfo `json:"pipelines"`
	// Listed is list_pipelines at the same moment.
	Listed []string `json:"listed"`
}

// PollSample is list_pipelines and every live pipeline's status at one
// moment, the observables of a target without inspect.
type PollSample struct {
	Time int64 `json:"time"` // ns since start
	// Listed is nil when list_pipelines was not answered (ListError).
	Listed    []string     `json:"listed"`
	ListError string       `json:"list_error,omitempty"`
	Status    []StatusPoll `json:"status,omitempty"`
}

// StatusPoll is one status answer of a PollSample.
type StatusPoll struct {
	PipelineID string `json:"pipeline_id"`
	// Answered is false when no answer came within the poll's deadline.
	Answered bool `json:"answered"`
	OK       bool `json:"ok"`
	// ErrorType is the failure's error_type ("" on success).
	ErrorType string `json:"error_type,omitempty"`
	// States are the report's source states (RUNNING, ERROR, ENDED...).
	States []string `json:"states,omitempty"`
}

// Bounds are the limits the checkers hold the manager to, taken from its
// configuration, the scenario's bounds: section and --bounds (see
// resolveBounds).
type Bounds struct {
	Grace, Join       time.Duration
	QueueTimeout      time.Duration
	HealthInterval    time.Duration
	HealthTimeout     time.Duration
	MaxHealthFailures int
	// CrashDetection is how soon a dead worker's pipeline must leave the
	// manager's table (or report failure); 0 means CrashDetectionBound.
	CrashDetection time.Duration
	// ProbeTimeoutFloor is the lower clamp of the adaptive probe timeout
	// (its ceiling is HealthTimeout); 0 when not known.
	ProbeTimeoutFloor time.Duration
	// MaxRAMMB is STREAM_MANAGER_MAX_RAM_MB (0: no limit) and WorkerRAMMB
	// the size a new worker is predicted at, in MiB.
	MaxRAMMB, WorkerRAMMB int
	// MaxConnections is STREAM_MANAGER_MAX_CONNECTIONS (0: not known).
	MaxConnections int
	// Epsilon is the slack allowed on every bound (scheduling, reaping).
	Epsilon time.Duration
	// SourceStall is the workers' frame watchdog timeout
	// (STREAM_MANAGER_SOURCE_STALL_TIMEOUT; 0: off).
	SourceStall time.Duration
	// From names where each bound (by its bounds: key) came from.
	From map[string]string
}

// crashBound is b.CrashDetection, or CrashDetectionBound when unset.
func (b Bounds) crashBound() time.Duration {
	if b.CrashDetection > 0 {
		return b.CrashDetection
	}
	return CrashDetectionBound
}

// ShutdownRecord is how the manager's end went.
type ShutdownRecord struct {
	Signal    string `json:"signal"`    // SIGTERM or SIGKILL ("" if none was sent)
	Requested int64  `json:"requested"` // ns since start
	Exited    int64  `json:"exited"`    // ns since start; 0 if it never exited
	ExitCode  int    `json:"exit_code"`
	// NotDelivered says why the signal never reached the manager ("" when
	// it did); the shutdown checkers are then unknown.
	NotDelivered string `json:"not_delivered,omitempty"`
	// ExitUnknown: the manager's exit status cannot be seen (an external
	// manager is not the harness's child); ExitCode means nothing then.
	ExitUnknown bool `json:"exit_unknown,omitempty"`
}

// RunData is everything a run observed; checkers and reports read only this.
type RunData struct {
	Scenario *Scenario
	Seed     int64
	Start    time.Time
	Dir      string // the run folder
	Embedded bool   // the manager ran in this process
	Plan     []PlanEntry
	Ops      []Op
	Census   []CensusSample
	Inspects []InspectSample
	// Polls are list_pipelines and status samples, taken when the target
	// has no inspect.
	Polls []PollSample
	// Profile is what the harness knew about the target.
	Profile Profile
	// WorkerPids maps pipeline ids to the worker pid the census found
	// around their init (targets without inspect; see workerMap).
	WorkerPids map[string]int
	// TargetAddr and TargetPid name an external target ("" and 0 when
	// embedded or unknown).
	TargetAddr string
	TargetPid  int
	Bounds     Bounds
	Shutdown   ShutdownRecord
	Replay     string // the exact command that replays this run
	TraceURL   string // Jaeger base URL when traces were exported, else ""
	TracesFile string // path of traces.json, if any
	// Interrupted is when the run was cut short (ns since start: SIGINT,
	// the run's own time bound), 0 if it ran its whole plan. Faults planned
	// after it were never reached: not applicable, not "never fired".
	Interrupted int64 `json:"interrupted,omitempty"`
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

// TargetInfo describes the manager under test in report.json.
type TargetInfo struct {
	Addr     string                `json:"addr,omitempty"`
	Pid      int                   `json:"pid,omitempty"`
	Embedded bool                  `json:"embedded"`
	Profile  Profile               `json:"profile"`
	Bounds   map[string]BoundValue `json:"bounds"`
}

// NotApplicableFault is one planned fault the target could not take.
type NotApplicableFault struct {
	Fault  string   `json:"fault"`
	At     Duration `json:"at"`
	Target int      `json:"pipeline,omitempty"`
	Reason string   `json:"reason"`
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
	// Verdict is the run's one verdict, as the header, the RESULT line,
	// report.json and junit.xml all say it: VALID, INVALID or UNKNOWN.
	Verdict string `json:"verdict"`
	// Target says what was tested and by which bounds.
	Target TargetInfo `json:"target"`
	// NotApplicable lists the planned faults this target could not take,
	// with why (planned at a level the profile lacks, or on a pipeline
	// the manager had already removed).
	NotApplicable []NotApplicableFault `json:"not_applicable,omitempty"`
	Replay        string               `json:"replay"`
	Dir           string               `json:"dir"`
	Data          *RunData             `json:"-"`
}
