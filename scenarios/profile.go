package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// Target profile names (Options.Profile, corral run --profile).
const (
	// ProfileCorral is Corral's own manager: every command, inspect for
	// the manager's view and the worker pids, chaos when it was started
	// with --chaos.
	ProfileCorral = "corral"
	// ProfileUpstream is the upstream inference stream manager (1.5.0)
	// and its forks: the seven upstream commands served one at a time,
	// workers as multiprocessing children of the manager, no inspect, no
	// chaos.
	ProfileUpstream = "upstream"
	// ProfileGeneric is any other server that speaks the protocol: the
	// upstream commands, nothing assumed about its workers but that they
	// descend from the manager.
	ProfileGeneric = "generic"
)

// How a profile finds a pipeline's worker process (Profile.Workers).
const (
	// WorkersInspect: the manager names each pipeline's pid in inspect.
	WorkersInspect = "inspect"
	// WorkersCensus: the process that appeared in the manager's process
	// tree between an init's invoke and its answer (see workerMap).
	WorkersCensus = "census"
)

// Profile is what the harness knows about the kind of manager it tests:
// which commands exist, the init payload it accepts, which fault levels
// can be injected and how workers are found. It is printed in the summary
// and in report.json.
type Profile struct {
	Name string `json:"name"`
	// Source says how the profile was chosen: the --profile flag, the
	// answer to the inspect probe, or the embedded manager.
	Source string `json:"source"`
	// Commands the target answers (protocol type names).
	Commands []string `json:"commands"`
	// Levels are the chaos levels that apply to this target (manager and
	// process levels need the manager's pid; worker level needs chaos).
	Levels []chaos.Level `json:"levels"`
	// Workers is WorkersInspect or WorkersCensus.
	Workers string `json:"workers"`
	// Descendants: with WorkersCensus, workers may be any descendant of
	// the manager (else only its children).
	Descendants bool `json:"descendants,omitempty"`
	// Serial: the server answers one request at a time, so the sampler
	// polls gently and backs off when answers slow.
	Serial bool `json:"serial,omitempty"`
	// Init is the init request template (without "type"); the workload
	// sets video_configuration.video_reference and applies Scenario.Init.
	Init map[string]any `json:"init"`
	// Limits are the bounds an external Corral reported in its inspect
	// answer; the run is judged by them (see resolveBounds).
	Limits *protocol.Limits `json:"limits,omitempty"`
}

// upstreamCommands are the commands of the upstream protocol.
var upstreamCommands = []string{
	protocol.TypeInit, protocol.TypeListPipelines, protocol.TypeStatus, protocol.TypeMute,
	protocol.TypeResume, protocol.TypeConsumeResult, protocol.TypeTerminate,
}

// ProfileNames lists the profiles --profile accepts.
func ProfileNames() []string { return []string{ProfileCorral, ProfileUpstream, ProfileGeneric} }

// InitTemplate is the init request every profile starts from: upstream's
// full payload model (inference 1.5.0), with the "type" literals of its
// discriminated unions and a minimal workflow, which Corral accepts too.
// video is the video_reference. `corral client init` sends the same
// payload (protocol.InitConfig.Defaults).
func InitTemplate(video string) map[string]any {
	cfg := protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: video}}.Defaults()
	b, _ := json.Marshal(cfg) // plain data: cannot fail
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// ProfileByName returns the named profile before it meets a target (all
// its levels; see Profile.forTarget). Errors name the flag.
func ProfileByName(name string) (Profile, error) {
	p := Profile{Name: name, Init: InitTemplate("")}
	switch name {
	case ProfileCorral:
		p.Commands = append(slices.Clone(upstreamCommands), protocol.TypeInspect, protocol.TypeChaos)
		p.Levels = []chaos.Level{chaos.LevelProcess, chaos.LevelWorker, chaos.LevelClient, chaos.LevelManager}
		p.Workers = WorkersInspect
	case ProfileUpstream:
		p.Commands = slices.Clone(upstreamCommands)
		p.Levels = []chaos.Level{chaos.LevelProcess, chaos.LevelClient, chaos.LevelManager}
		p.Workers, p.Serial = WorkersCensus, true
	case ProfileGeneric:
		p.Commands = slices.Clone(upstreamCommands)
		p.Levels = []chaos.Level{chaos.LevelProcess, chaos.LevelClient, chaos.LevelManager}
		p.Workers, p.Descendants, p.Serial = WorkersCensus, true, true
	default:
		return Profile{}, fmt.Errorf("%w: --profile %q: want one of %s", ErrInvalidScenario, name, strings.Join(ProfileNames(), ", "))
	}
	return p, nil
}

// Has reports whether the target answers command typ.
func (p Profile) Has(typ string) bool { return slices.Contains(p.Commands, typ) }

// hasLevel reports whether faults of level l can be injected.
func (p Profile) hasLevel(l chaos.Level) bool { return slices.Contains(p.Levels, l) }

// forTarget narrows the profile to what this target allows: without the
// manager's pid (and not embedded) neither manager- nor census-found
// process faults can be injected; without chaos no worker faults.
func (p Profile) forTarget(embedded bool, pid int, chaosOn bool) Profile {
	p.Levels = slices.DeleteFunc(slices.Clone(p.Levels), func(l chaos.Level) bool {
		switch l {
		case chaos.LevelManager:
			return !embedded && pid <= 0
		case chaos.LevelProcess:
			return p.Workers == WorkersCensus && pid <= 0
		case chaos.LevelWorker:
			return !chaosOn
		}
		return false
	})
	if !chaosOn {
		p.Commands = slices.DeleteFunc(slices.Clone(p.Commands), func(c string) bool { return c == protocol.TypeChaos })
	}
	return p
}

// Applicable says why fault cannot be injected into this target, or ""
// when it can. Unknown faults are left to the nemesis (they fail there,
// and fault_coverage says so).
func (p Profile) Applicable(fault string) string {
	f, ok := chaos.Lookup(fault)
	if !ok || p.hasLevel(f.Level()) {
		return ""
	}
	switch f.Level() {
	case chaos.LevelWorker:
		if p.Has(protocol.TypeInspect) {
			return fmt.Sprintf("%s is an in-worker fault and the %s target was not started with chaos (corral serve --chaos)", fault, p.Name)
		}
		return fmt.Sprintf("%s is an in-worker fault: it needs Corral's chaos command, which a %s target does not have", fault, p.Name)
	case chaos.LevelManager, chaos.LevelProcess:
		return fmt.Sprintf("%s is a %s-level fault and the manager's pid is unknown (pass --target-pid)", fault, f.Level())
	}
	return fmt.Sprintf("%s-level faults do not apply to a %s target", f.Level(), p.Name)
}

// initFields builds the init request of every pipeline: the template, the
// video, then the scenario's init: mapping merged over it (a null value
// deletes a key).
func (p Profile) initFields(video string, override map[string]any) map[string]any {
	m := deepCopy(p.Init)
	if m == nil {
		m = InitTemplate(video)
	}
	vc, _ := m["video_configuration"].(map[string]any)
	if vc == nil {
		vc = map[string]any{}
		m["video_configuration"] = vc
	}
	vc["video_reference"] = video
	mergeInto(m, override)
	return m
}

// mergeInto merges src into dst recursively: objects merge, other values
// replace, nil deletes.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if sok && dok {
			mergeInto(dm, sm)
			continue
		}
		dst[k] = deepCopyValue(v)
	}
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopyValue(v)
	}
	return out
}

func deepCopyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopy(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopyValue(e)
		}
		return out
	}
	return v
}

// probeTimeout bounds each detection probe.
const probeTimeout = 5 * time.Second

// probeChaosID is a pipeline id no manager has: the chaos probe's answer
// tells an enabled chaos command (not_found) from a missing one.
const probeChaosID = "corral-probe-no-such-pipeline"

// DetectProfile asks the target one question, inspect: a success means
// Corral (then a chaos probe on a pipeline that does not exist tells
// whether chaos is on); invalid_payload (unknown command) means a server
// without Corral's extensions, taken to be upstream; any other failure
// means generic. No answer is an error: a target that cannot answer one
// command within probeTimeout cannot be judged.
func DetectProfile(ctx context.Context, addr string) (Profile, bool, error) {
	resp, err := probeClient(addr).Inspect(ctx)
	var perr *protocol.Error
	switch {
	case err == nil:
		p, _ := ProfileByName(ProfileCorral)
		p.Source = "detected: inspect answered success"
		p.Limits = limitsOf(resp)
		chaosOn := ProbeChaos(ctx, addr)
		if !chaosOn {
			p.Source += "; chaos not enabled"
		}
		return p, chaosOn, nil
	case errors.As(err, &perr) && perr.Type == protocol.ErrTypeInvalidPayload:
		p, _ := ProfileByName(ProfileUpstream)
		p.Source = "detected: inspect answered invalid_payload (unknown command)"
		return p, false, nil
	case errors.As(err, &perr):
		p, _ := ProfileByName(ProfileGeneric)
		p.Source = fmt.Sprintf("detected: inspect answered %s", perr.Type)
		return p, false, nil
	}
	return Profile{}, false, fmt.Errorf("%w: --target %s did not answer the inspect probe: %w", ErrInvalidScenario, addr, err)
}

// ProbeChaos reports whether a Corral target has its chaos command on:
// asked to heal a pipeline that does not exist, an enabled chaos command
// answers not_found, a disabled one invalid_payload (so does no answer:
// worker faults are then not applicable rather than doomed).
func ProbeChaos(ctx context.Context, addr string) bool {
	c := probeClient(addr)
	_, err := c.Call(ctx, protocol.TypeChaos, probeChaosID, map[string]any{"fault": "heal"})
	var perr *protocol.Error
	return err == nil || errors.As(err, &perr) && perr.Type != protocol.ErrTypeInvalidPayload
}

// markApplicability marks the plan entries this target cannot carry out:
// faults of levels the profile lacks and commands it does not have. The
// runner skips them; fault_coverage and the reports list the faults as
// not applicable.
func markApplicability(plan []PlanEntry, p Profile) []PlanEntry {
	out := slices.Clone(plan)
	for i := range out {
		e := &out[i]
		switch e.Kind {
		case KindFault:
			if endsManager(e.F) && !p.hasLevel(chaos.LevelManager) {
				e.NotApplicable = fmt.Sprintf("the shutdown (%s) needs the manager's pid (pass --target-pid)", e.F)
				continue
			}
			e.NotApplicable = p.Applicable(e.F)
		case KindCommand:
			if !p.Has(e.F) {
				e.NotApplicable = fmt.Sprintf("a %s target has no %s command", p.Name, e.F)
			}
		}
	}
	return out
}

// profileSummary is the one-line description of a profile in reports.
func (p Profile) summary() string {
	levels := make([]string, len(p.Levels))
	for i, l := range p.Levels {
		levels[i] = string(l)
	}
	slices.Sort(levels)
	return fmt.Sprintf("%s (%s); fault levels: %s; workers found by %s", p.Name, p.Source,
		strings.Join(levels, ", "), p.Workers)
}

// TargetLimits asks a Corral target for the bounds it holds itself to
// (the limits of its inspect answer); nil when it does not say.
func TargetLimits(ctx context.Context, addr string) *protocol.Limits {
	resp, err := probeClient(addr).Inspect(ctx)
	if err != nil {
		return nil
	}
	return limitsOf(resp)
}

// limitsOf decodes the limits of an inspect answer; nil when absent.
func limitsOf(resp protocol.Response) *protocol.Limits {
	b, err := json.Marshal(resp.Fields["limits"])
	if err != nil || resp.Fields["limits"] == nil {
		return nil
	}
	var l protocol.Limits
	if json.Unmarshal(b, &l) != nil {
		return nil
	}
	return &l
}

// probeClient is the client of the harness's one-off questions to a
// target (profile, chaos, limits, emptiness): short, and untraced.
func probeClient(addr string) *protocol.Client {
	return &protocol.Client{Addr: addr, Timeout: probeTimeout, Traceparent: unsampledTraceparent}
}
