package manager

import (
	"context"
	"log/slog"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Event is one typed event of the manager's life. The concrete types are
// the structs below; switch on them.
type Event interface {
	// Kind names the event type, e.g. "pipeline_state".
	Kind() string
	// When is the time the event happened.
	When() time.Time
}

// EventHook receives every event, synchronously, from the goroutine that
// caused it. It must not block; nil discards events. Chain hooks with
// Hooks.
type EventHook func(Event)

// Hooks fans one event out to several hooks in order.
func Hooks(hooks ...EventHook) EventHook {
	return func(e Event) {
		for _, h := range hooks {
			if h != nil {
				h(e)
			}
		}
	}
}

// At is embedded in every event.
type At struct{ Time time.Time }

// When returns the event time.
func (a At) When() time.Time { return a.Time }

func now() At { return At{Time: time.Now()} }

// PipelineStateChanged reports a move between pipeline states.
type PipelineStateChanged struct {
	At
	PipelineID string
	From, To   protocol.State
}

// ProbeResult reports one health probe.
type ProbeResult struct {
	At
	PipelineID          string
	Duration            time.Duration
	Err                 error // nil on success
	TimedOut            bool
	ConsecutiveFailures int
	NextInterval        time.Duration
}

// TimeoutChanged reports a new adaptive deadline for one pipeline and
// command kind ("probe" or a command type).
type TimeoutChanged struct {
	At
	PipelineID    string
	Command       string
	Before, After time.Duration
}

// CommandTimedOut reports a worker that did not answer within its deadline.
type CommandTimedOut struct {
	At
	PipelineID string
	Command    string
	RequestID  string
	After      time.Duration
}

// StaleResponse reports a worker reply that nobody waited for (a late reply
// after a timeout, or a frame that was not a reply); it was dropped.
type StaleResponse struct {
	At
	PipelineID string
	RequestID  string // the reply's id; "" for garbage
	Garbage    bool
}

// Exit reasons of WorkerExited.
const (
	ExitRequested = "requested" // terminate, shutdown or failed init
	ExitUnhealthy = "unhealthy" // killed after too many failed probes
	ExitEnded     = "ended"     // ended by itself with status 0
	ExitCrashed   = "crashed"   // ended by itself with a failure or a signal
)

// WorkerExited reports a reaped worker and why it ended.
type WorkerExited struct {
	At
	PipelineID string
	Pid        int
	Code       int
	Signal     string
	Reason     string
	Killed     bool // the manager had to SIGKILL it
}

// ShutdownPhase reports the start or end of a shutdown phase: 1 mark,
// 2 terminate (grace), 3 kill (join).
type ShutdownPhase struct {
	At
	Phase     int
	Name      string
	Pipelines int
	Done      bool
	Duration  time.Duration // of the phase, when Done
	Survivors int           // processes still alive at the end of the phase
}

// PipelineError reports a problem the manager acted on without a client
// waiting (a broken channel, a failed pool launch, a worker that would not die).
type PipelineError struct {
	At
	PipelineID string
	Op         string
	Err        error
}

// Kind implementations.
func (PipelineStateChanged) Kind() string { return "pipeline_state" }
func (ProbeResult) Kind() string          { return "probe" }
func (TimeoutChanged) Kind() string       { return "timeout_changed" }
func (CommandTimedOut) Kind() string      { return "timeout" }
func (StaleResponse) Kind() string        { return "stale_response" }
func (WorkerExited) Kind() string         { return "worker_exit" }
func (ShutdownPhase) Kind() string        { return "shutdown_phase" }
func (PipelineError) Kind() string        { return "pipeline_error" }

// LogEvents returns a hook that logs each event through log.
func LogEvents(log *slog.Logger) EventHook {
	return func(e Event) {
		ctx := context.Background()
		switch e := e.(type) {
		case PipelineStateChanged:
			log.Info("pipeline state", "pipeline_id", e.PipelineID, "from", e.From, "to", e.To)
		case ProbeResult:
			if e.Err != nil {
				log.Warn("probe failed", "pipeline_id", e.PipelineID, "err", e.Err, "failures", e.ConsecutiveFailures)
			} else {
				log.Debug("probe", "pipeline_id", e.PipelineID, "duration", e.Duration)
			}
		case TimeoutChanged:
			log.Debug("adaptive timeout", "pipeline_id", e.PipelineID, "command", e.Command, "timeout", e.After)
		case CommandTimedOut:
			log.Warn("worker timeout", "pipeline_id", e.PipelineID, "command", e.Command, "after", e.After)
		case StaleResponse:
			log.Warn("stale response dropped", "pipeline_id", e.PipelineID, "request_id", e.RequestID, "garbage", e.Garbage)
		case WorkerExited:
			log.Info("worker exited", "pipeline_id", e.PipelineID, "pid", e.Pid, "code", e.Code, "signal", e.Signal, "reason", e.Reason)
		case ShutdownPhase:
			log.Info("shutdown phase", "phase", e.Phase, "name", e.Name, "done", e.Done, "pipelines", e.Pipelines, "survivors", e.Survivors, "duration", e.Duration)
		case PipelineError:
			log.Error("pipeline error", "pipeline_id", e.PipelineID, "op", e.Op, "err", e.Err)
		default:
			log.Log(ctx, slog.LevelInfo, "event", "kind", e.Kind())
		}
	}
}
