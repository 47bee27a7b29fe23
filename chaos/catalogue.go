package chaos

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"
)

// Fault names of the catalogue.
const (
	FaultCrash            = "crash"
	FaultHangProcess      = "hang_process"
	FaultHangQueue        = "hang_queue"
	FaultSlowProbe        = "slow_probe"
	FaultStaleResponses   = "stale_responses"
	FaultGarbageOutput    = "garbage_output"
	FaultIgnoreSigterm    = "ignore_sigterm"
	FaultSlowStart        = "slow_start"
	FaultSpawnGrandchild  = "spawn_grandchild"
	FaultWorkerCrash      = "worker_crash"
	FaultClientStall      = "client_stall"
	FaultClientDisconnect = "client_disconnect"
	FaultOversizedFrame   = "oversized_frame"
	FaultMalformedFrame   = "malformed_frame"
	FaultClientBurst      = "client_burst"
	FaultManagerSigterm   = "manager_sigterm"
	FaultManagerSigkill   = "manager_sigkill"
)

// ParamFor, in a Choice's Params, overrides the fault's default duration
// (in seconds) when PlanFaults fills Planned.For. It is not passed on.
const ParamFor = "for_seconds"

// fault is a catalogue entry: metadata plus its inject function.
type fault struct {
	name       string
	level      Level
	pipeline   bool
	defaultFor time.Duration
	inject     func(ctx context.Context, f *fault, t Target, s Spec) (Injection, error)
}

func (f *fault) Name() string              { return f.name }
func (f *fault) Level() Level              { return f.level }
func (f *fault) NeedsPipeline() bool       { return f.pipeline }
func (f *fault) DefaultFor() time.Duration { return f.defaultFor }

// Inject checks what every fault needs, applies the default duration, and
// hands over to the fault's own injector.
func (f *fault) Inject(ctx context.Context, t Target, s Spec) (Injection, error) {
	if s.Fault != "" && s.Fault != f.name {
		return nil, errorf(f.name, ErrUnknownFault, nil, "spec names fault %q", s.Fault)
	}
	if f.pipeline && s.PipelineID == "" {
		return nil, errorf(f.name, ErrNoPipeline, nil, "no pipeline id given")
	}
	if s.For <= 0 {
		s.For = f.defaultFor
	}
	if err := ctx.Err(); err != nil {
		return nil, errorf(f.name, err, nil, "not injected")
	}
	return f.inject(ctx, f, t, s)
}

// catalogue builds the fault list afresh: no package-level mutable state.
func catalogue() []*fault {
	fs := []*fault{
		{name: FaultCrash, level: LevelProcess, pipeline: true, inject: injectCrash},
		{name: FaultHangProcess, level: LevelProcess, pipeline: true, defaultFor: 3 * time.Second, inject: injectHangProcess},
		{name: FaultClientStall, level: LevelClient, defaultFor: 3 * time.Second, inject: injectStall},
		{name: FaultClientDisconnect, level: LevelClient, inject: injectDisconnect},
		{name: FaultOversizedFrame, level: LevelClient, inject: injectOversized},
		{name: FaultMalformedFrame, level: LevelClient, inject: injectMalformed},
		{name: FaultClientBurst, level: LevelClient, inject: injectBurst},
		{name: FaultManagerSigterm, level: LevelManager, inject: injectManagerSignal("SIGTERM")},
		{name: FaultManagerSigkill, level: LevelManager, inject: injectManagerSignal("SIGKILL")},
	}
	for _, w := range workerFaults() {
		fs = append(fs, &fault{name: w.name, level: LevelWorker, pipeline: true, defaultFor: w.defaultFor, inject: w.inject})
	}
	slices.SortFunc(fs, func(a, b *fault) int { return cmp.Compare(a.name, b.name) })
	return fs
}

// Catalogue returns every fault, sorted by name.
func Catalogue() []Fault {
	fs := catalogue()
	out := make([]Fault, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

// Lookup returns the fault called name.
func Lookup(name string) (Fault, bool) {
	for _, f := range catalogue() {
		if f.name == name {
			return f, true
		}
	}
	return nil, false
}

// Levels returns the fault names of each level, sorted, for listings such
// as `corral scenarios` and the docs.
func Levels() map[Level][]string {
	out := map[Level][]string{}
	for _, f := range catalogue() {
		out[f.level] = append(out[f.level], f.name)
	}
	return out
}

// DefaultFor returns how long the named fault lasts when Spec.For is 0;
// 0 for instant faults and unknown names.
func DefaultFor(name string) time.Duration {
	if f, ok := Lookup(name); ok {
		if l, ok := f.(Lasting); ok {
			return l.DefaultFor()
		}
	}
	return 0
}

// cloneParams copies params without the keys the harness reserves.
func cloneParams(params map[string]any, drop ...string) map[string]any {
	out := maps.Clone(params)
	if out == nil {
		out = map[string]any{}
	}
	for _, k := range drop {
		delete(out, k)
	}
	return out
}
