package chaos

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// ParamFor, in a Choice's Params, overrides the fault's default duration
// (in seconds) when PlanFaults fills Planned.For. It is not passed on.
const ParamFor = "for_seconds"

// effect is a set of the effects a fault has on a worker (Fault's
// predicates).
type effect uint8

const (
	effectKill effect = 1 << iota
	effectExit
	effectHang
	effectSlowProbe
	effectCorrupt
	effectAbandon
	effectStall
)

// fault is a catalogue entry: metadata plus its inject function.
type fault struct {
	name       string
	level      Level
	pipeline   bool
	effect     effect
	defaultFor time.Duration
	inject     func(ctx context.Context, f *fault, t Target, s Spec) (Injection, error)
}

func (f *fault) Name() string              { return f.name }
func (f *fault) Level() Level              { return f.level }
func (f *fault) NeedsPipeline() bool       { return f.pipeline }
func (f *fault) DefaultFor() time.Duration { return f.defaultFor }
func (f *fault) Kills() bool               { return f.effect&effectKill != 0 }
func (f *fault) Exits() bool               { return f.effect&effectExit != 0 }
func (f *fault) Hangs() bool               { return f.effect&effectHang != 0 }
func (f *fault) SlowsProbes() bool         { return f.effect&effectSlowProbe != 0 }
func (f *fault) CorruptsReplies() bool     { return f.effect&effectCorrupt != 0 }
func (f *fault) AbandonsConnections() bool { return f.effect&effectAbandon != 0 }
func (f *fault) InWorker() bool            { return f.level == LevelWorker }
func (f *fault) StallsSources() bool       { return f.effect&effectStall != 0 }
func (f *fault) EndsManager() bool         { return f.level == LevelManager }

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
		{name: protocol.FaultCrash, level: LevelProcess, pipeline: true, effect: effectKill, inject: injectCrash},
		{name: protocol.FaultHangProcess, level: LevelProcess, pipeline: true, effect: effectHang, defaultFor: 3 * time.Second, inject: injectHangProcess},
		{name: protocol.FaultClientStall, level: LevelClient, defaultFor: 3 * time.Second, inject: injectStall},
		{name: protocol.FaultClientDisconnect, level: LevelClient, inject: injectDisconnect},
		{name: protocol.FaultOversizedFrame, level: LevelClient, inject: injectOversized},
		{name: protocol.FaultMalformedFrame, level: LevelClient, inject: injectMalformed},
		{name: protocol.FaultClientBurst, level: LevelClient, inject: injectBurst},
		{name: protocol.FaultInitStorm, level: LevelClient, defaultFor: 3 * time.Second, inject: injectInitStorm},
		{name: protocol.FaultAbandonRequest, level: LevelClient, pipeline: true, effect: effectAbandon, inject: injectAbandon},
		{name: protocol.FaultManagerSigterm, level: LevelManager, inject: injectManagerSignal("SIGTERM")},
		{name: protocol.FaultManagerSigkill, level: LevelManager, inject: injectManagerSignal("SIGKILL")},
	}
	for _, w := range workerFaults() {
		fs = append(fs, &fault{name: w.name, level: LevelWorker, pipeline: true, effect: w.effect, defaultFor: w.defaultFor, inject: w.inject})
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
