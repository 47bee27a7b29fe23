package chaos

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// armedFor is how long a fault that stays armed lasts by default.
const armedFor = 5 * time.Second

// workerFault is a fault injected with the manager's chaos command.
type workerFault struct {
	name       string
	command    string // the worker's fault name
	heal       bool   // healed by the worker's heal command
	effect     effect
	defaultFor time.Duration // 0: instant
	// params completes the chaos parameters from the spec.
	params func(f string, s Spec, p map[string]any) error
}

func workerFaults() []workerFault {
	delay := func(def time.Duration) func(string, Spec, map[string]any) error {
		return func(f string, s Spec, p map[string]any) error {
			d, err := secondsParam(f, p, protocol.ChaosFieldDelaySeconds, def)
			p[protocol.ChaosFieldDelaySeconds] = d.Seconds()
			return err
		}
	}
	return []workerFault{
		// A hung queue reads no heal command: its own timer ends it.
		{name: protocol.FaultHangQueue, command: protocol.ChaosHangQueue, effect: effectHang, defaultFor: 3 * time.Second,
			params: func(f string, s Spec, p map[string]any) error {
				d, err := secondsParam(f, p, protocol.ChaosFieldDurationSeconds, s.For)
				p[protocol.ChaosFieldDurationSeconds] = d.Seconds()
				return err
			}},
		{name: protocol.FaultSlowProbe, command: protocol.ChaosSlowProbe, effect: effectSlowProbe, heal: true, defaultFor: armedFor, params: delay(time.Second)},
		{name: protocol.FaultStaleResponses, command: protocol.ChaosStaleResponses, effect: effectCorrupt, heal: true, defaultFor: armedFor},
		{name: protocol.FaultGarbageOutput, command: protocol.ChaosGarbageOutput, effect: effectCorrupt, heal: true, defaultFor: armedFor},
		{name: protocol.FaultIgnoreSigterm, command: protocol.ChaosIgnoreSigterm, heal: true, defaultFor: armedFor},
		{name: protocol.FaultSlowStart, command: protocol.ChaosSlowStart, heal: true, defaultFor: armedFor, params: delay(2 * time.Second)},
		// A camera that stays connected and stops sending, until heal.
		{name: protocol.FaultFreezeSource, command: protocol.ChaosFreezeSource, effect: effectStall, heal: true, defaultFor: armedFor},
		// A grandchild cannot be taken back; it ends with its worker.
		{name: protocol.FaultSpawnGrandchild, command: protocol.ChaosSpawnGrandchild},
		{name: protocol.FaultWorkerCrash, command: protocol.ChaosCrash, effect: effectExit,
			params: func(f string, s Spec, p map[string]any) error {
				code, err := intParam(f, p, protocol.ChaosFieldExitCode, 1)
				if err == nil && code > 255 {
					err = errorf(f, ErrBadParam, nil, "exit_code = %d must be in 0..255", code)
				}
				p[protocol.ChaosFieldExitCode] = code
				return err
			}},
	}
}

// inject sends the chaos command; Heal sends heal for faults that stay armed.
func (w workerFault) inject(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	if t.Client == nil {
		return nil, errorf(f.name, ErrNoClient, nil, "pipeline %s", s.PipelineID)
	}
	// Keys the request itself uses must not be overridden by parameters.
	params := cloneParams(s.Params, ParamFor, protocol.ChaosFieldFault, "type", "pipeline_id", "traceparent")
	if w.params != nil {
		if err := w.params(f.name, s, params); err != nil {
			return nil, err
		}
	}
	in := newInjection(f.name, map[string]any{"pipeline_id": s.PipelineID, "command": w.command, "params": params})
	err := t.Client.Chaos(ctx, s.PipelineID, w.command, params)
	switch {
	case err == nil:
		in.set("answer", protocol.StatusSuccess)
	case w.command == protocol.ChaosCrash && errors.Is(err, &protocol.Error{Type: protocol.ErrTypeOperation}):
		// An immediate crash sends no reply: the manager answers that
		// the worker exited, which is the fault working.
		in.set("answer", err.Error())
	default:
		if errors.Is(err, &protocol.Error{Type: protocol.ErrTypeNotFound}) {
			return nil, errorf(f.name, ErrPipelineNotFound, err, "pipeline %s", s.PipelineID)
		}
		return nil, errorf(f.name, nil, err, "chaos command to pipeline %s", s.PipelineID)
	}
	if w.heal {
		in.heal = func(ctx context.Context) error {
			err := t.Client.Chaos(ctx, s.PipelineID, protocol.ChaosHeal, nil)
			switch {
			case err == nil:
				in.set("heal", protocol.StatusSuccess)
			case gone(err):
				// The manager removed the pipeline (often the point of
				// the fault): nothing is left to heal.
				in.set("heal", "pipeline gone: "+err.Error())
			default:
				return errorf(f.name, nil, err, "heal pipeline %s", s.PipelineID)
			}
			return nil
		}
	}
	return in, nil
}

// gone reports an answer saying the pipeline no longer exists or is being
// removed.
func gone(err error) bool {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		return false
	}
	return perr.Type == protocol.ErrTypeNotFound ||
		(perr.Type == protocol.ErrTypeOperation && strings.Contains(perr.Message, "being terminated"))
}
