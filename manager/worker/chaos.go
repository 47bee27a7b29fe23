package worker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// garbageBody is a well-framed reply body that is not JSON.
const garbageBody = "corral chaos: garbage output, this frame is not JSON"

// faults are the armed faults that change later behaviour; a hang and a
// delayed crash live in the worker's timers.
type faults struct {
	probeDelay    time.Duration
	slowStart     time.Duration
	stale         bool
	garbage       bool
	ignoreSigterm bool
}

// chaosParams are the optional fault parameters of a chaos command.
type chaosParams struct {
	Fault           string   `json:"fault"`
	DurationSeconds *float64 `json:"duration_seconds"`
	DelaySeconds    *float64 `json:"delay_seconds"`
	ExitCode        *int     `json:"exit_code"`
}

// chaos arms one fault. Its reply is never decorated by the faults it arms.
func (w *worker) chaos(cmd *protocol.WorkerCommand) outcome {
	if !w.cfg.Chaos {
		return fail(protocol.InvalidPayload("chaos is not enabled in this manager"))
	}
	var p chaosParams
	body, _ := json.Marshal(cmd.Request)
	if err := json.Unmarshal(body, &p); err != nil {
		return fail(protocol.InvalidPayload(fmt.Sprintf("malformed chaos request: %v", err)))
	}
	duration, err := secondsParam(protocol.ChaosFieldDurationSeconds, p.DurationSeconds)
	if err != nil {
		return fail(err)
	}
	delay, err := secondsParam(protocol.ChaosFieldDelaySeconds, p.DelaySeconds)
	if err != nil {
		return fail(err)
	}
	ok := outcome{resp: protocol.Success(nil), plain: true}
	w.log.Warn("chaos fault", "fault", p.Fault)
	switch p.Fault {
	case protocol.ChaosHangQueue:
		// The reply goes out first: only later commands are not read.
		w.hung = true
		if w.hangTimer != nil {
			w.hangTimer.Stop()
			w.hangTimer = nil
		}
		if duration > 0 {
			w.hangTimer = time.NewTimer(duration)
		}
	case protocol.ChaosSlowProbe:
		w.faults.probeDelay = delay
	case protocol.ChaosStaleResponses:
		w.faults.stale = true
	case protocol.ChaosGarbageOutput:
		w.faults.garbage = true
	case protocol.ChaosIgnoreSigterm:
		w.faults.ignoreSigterm = true
	case protocol.ChaosSlowStart:
		w.faults.slowStart = delay
	case protocol.ChaosCrash:
		code := 1
		if p.ExitCode != nil {
			code = *p.ExitCode
		}
		if code < 0 || code > 255 {
			return fail(protocol.InvalidPayload("exit_code must be in 0..255"))
		}
		if delay <= 0 {
			return outcome{silent: true, err: w.crash(code)}
		}
		w.stopCrash()
		w.crashCode, w.crashTimer = code, time.NewTimer(delay)
	case protocol.ChaosSpawnGrandchild:
		if w.cfg.SpawnGrandchild == nil {
			return fail(protocol.OperationError("spawn_grandchild is not supported by this worker host"))
		}
		if err := w.cfg.SpawnGrandchild(); err != nil {
			return fail(protocol.OperationError(fmt.Sprintf("spawn_grandchild failed: %v", err)))
		}
	case protocol.ChaosFreezeSource:
		if w.pipe == nil {
			return fail(protocol.OperationError("freeze_source needs an initialised pipeline"))
		}
		w.pipe.frozen.close()
	case protocol.ChaosHeal:
		// A spawned grandchild cannot be taken back; it ends with the
		// worker.
		w.faults = faults{}
		if w.pipe != nil {
			w.pipe.frozen.open()
		}
		w.stopCrash()
		if w.hangTimer != nil {
			w.hangTimer.Stop()
			w.hangTimer = nil
		}
		w.hung = false
	default:
		return fail(protocol.InvalidPayload(fmt.Sprintf("unknown chaos fault %q", clipText(p.Fault))))
	}
	return ok
}

// crash ends the worker with code: through Config.Exit when the host has
// one (a process dies there), else Run returns *ExitError.
func (w *worker) crash(code int) error {
	w.log.Error("crashing (chaos crash)", "exit_code", code)
	if w.cfg.Exit != nil {
		w.cfg.Exit(code)
	}
	return &ExitError{Code: code}
}

func (w *worker) stopCrash() {
	if w.crashTimer != nil {
		w.crashTimer.Stop()
		w.crashTimer = nil
	}
}

// secondsParam reads an optional non-negative number of seconds.
func secondsParam(name string, v *float64) (time.Duration, *protocol.Error) {
	if v == nil {
		return 0, nil
	}
	if !(*v >= 0) {
		return 0, protocol.InvalidPayload(name + " must not be negative")
	}
	return seconds(*v), nil
}
