package scenarios

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// ErrInvalidScenario wraps every error that comes from the scenario or its
// overrides rather than from the run (the CLI exits 2 on it).
var ErrInvalidScenario = errors.New("scenarios: invalid scenario")

// ErrUnknownScenario is returned by Builtin for a name that is not built in.
var ErrUnknownScenario = errors.New("scenarios: unknown scenario")

// Shutdown modes of Scenario.Shutdown.
const (
	ShutdownGraceful  = "graceful"
	ShutdownUnderLoad = "under_load"
	ShutdownKill      = "kill"
)

// Commands a client may draw from Scenario.Mix.
var mixCommands = []string{
	protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume,
	protocol.TypeListPipelines, protocol.TypeInspect, protocol.TypeInit, protocol.TypeTerminate,
	MixInitInvalid,
}

// Defaults is the scenario every zero field of a scenario falls back to.
func Defaults() Scenario {
	return Scenario{
		Duration:  Duration(30 * time.Second),
		WarmUp:    Duration(3 * time.Second),
		Heal:      Duration(3 * time.Second),
		Quiesce:   Duration(3 * time.Second),
		Pipelines: 2,
		Clients:   2,
		Rate:      2,
		Video:     "synthetic://160x120?fps=15",
		Mix: map[string]int{protocol.TypeStatus: 4, protocol.TypeConsumeResult: 4, protocol.TypeListPipelines: 2,
			protocol.TypeInspect: 1, protocol.TypeMute: 1, protocol.TypeResume: 1},
		FaultInterval: Duration(5 * time.Second),
		Shutdown:      ShutdownGraceful,
		Availability:  DefaultAvailability,
	}
}

// withDefaults returns a copy of s with every zero field taken from
// Defaults. Maps and slices are copied so the copy can be changed.
func (s *Scenario) withDefaults() *Scenario {
	d := Defaults()
	c := *s
	set := func(dst *Duration, v Duration) {
		if *dst == 0 {
			*dst = v
		}
	}
	set(&c.Duration, d.Duration)
	set(&c.WarmUp, d.WarmUp)
	set(&c.Heal, d.Heal)
	set(&c.Quiesce, d.Quiesce)
	set(&c.FaultInterval, d.FaultInterval)
	if c.Pipelines == 0 {
		c.Pipelines = d.Pipelines
	}
	if c.Clients == 0 {
		c.Clients = d.Clients
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Video == "" {
		c.Video = d.Video
	}
	if len(c.Mix) == 0 {
		c.Mix = d.Mix
	}
	if c.Shutdown == "" {
		c.Shutdown = d.Shutdown
	}
	if c.Availability == 0 {
		c.Availability = d.Availability
	}
	c.Mix = maps.Clone(c.Mix)
	c.Manager = maps.Clone(c.Manager)
	c.SLOs = maps.Clone(c.SLOs)
	c.Faults = slices.Clone(c.Faults)
	c.Schedule = slices.Clone(c.Schedule)
	c.Churn = slices.Clone(c.Churn)
	c.Invariants = slices.Clone(c.Invariants)
	c.Init = deepCopy(c.Init)
	if c.Bounds != nil {
		b := *c.Bounds
		c.Bounds = &b
	}
	return &c
}

// Validate checks a scenario, naming the field of every problem. Zero
// values are allowed (they take Defaults).
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Name == "" {
		bad("name", "must not be empty")
	}
	for _, f := range []struct {
		name string
		d    Duration
	}{{"duration", s.Duration}, {"warm_up", s.WarmUp}, {"heal", s.Heal}, {"quiesce", s.Quiesce}, {"fault_interval", s.FaultInterval}} {
		if f.d < 0 {
			bad(f.name, "must not be negative (got %s)", f.d.D())
		}
	}
	if s.Duration.D() > 7*24*time.Hour {
		bad("duration", "must be at most a week (got %s)", s.Duration.D())
	}
	if s.Pipelines < 0 || s.Pipelines > 256 {
		bad("pipelines", "must be in 1..256 (got %d)", s.Pipelines)
	}
	if s.Clients < 0 || s.Clients > 256 {
		bad("clients", "must be in 1..256 (got %d)", s.Clients)
	}
	if s.Rate < 0 || s.Rate > 1000 || math.IsNaN(s.Rate) {
		bad("rate", "must be in (0, 1000] commands per second (got %v)", s.Rate)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Mix)) {
		if !slices.Contains(mixCommands, k) {
			bad("mix."+k, "unknown command (want one of %s)", strings.Join(mixCommands, ", "))
		} else if s.Mix[k] < 0 {
			bad("mix."+k, "weight must not be negative (got %d)", s.Mix[k])
		}
	}
	if len(s.Mix) > 0 && sumWeights(s.Mix) == 0 {
		bad("mix", "at least one weight must be > 0")
	}
	for i, f := range s.Faults {
		field := fmt.Sprintf("faults[%d]", i)
		validateFault(field, f.Fault, bad)
		if f.Weight <= 0 {
			bad(field+".weight", "must be > 0 (got %d)", f.Weight)
		}
	}
	for i, f := range s.Schedule {
		field := fmt.Sprintf("schedule[%d]", i)
		validateFault(field, f.Fault, bad)
		if f.At < 0 {
			bad(field+".at", "must not be negative (got %s)", f.At.D())
		}
		if s.Duration > 0 && f.At > s.Duration {
			bad(field+".at", "%s is after the chaos phase ends (duration %s)", f.At.D(), s.Duration.D())
		}
		if f.For < 0 {
			bad(field+".for", "must not be negative (got %s)", f.For.D())
		}
		pipelines := cmpOr(s.Pipelines, Defaults().Pipelines)
		if f.Target < 0 || f.Target > pipelines {
			bad(field+".target", "must be a logical pipeline in 1..%d or 0 for the fault's own choice (got %d)", pipelines, f.Target)
		}
	}
	validateChurn(s, bad)
	if s.Bounds != nil {
		errs = append(errs, s.Bounds.validate("bounds.")...)
	}
	switch s.Shutdown {
	case "", ShutdownGraceful, ShutdownUnderLoad, ShutdownKill:
	default:
		bad("shutdown", "%q is not one of graceful, under_load, kill", s.Shutdown)
	}
	if len(s.Manager) > 0 {
		known := map[string]bool{}
		for _, st := range manager.Settings() {
			known[st.Env] = true
		}
		for _, env := range protocol.WorkerSettings {
			known[env] = true
		}
		for _, k := range slices.Sorted(maps.Keys(s.Manager)) {
			if !known[k] {
				bad("manager."+k, "not a manager setting (see corral serve --help)")
			}
		}
		if _, err := s.managerConfig(); err != nil {
			bad("manager", "%v", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.SLOs)) {
		cmd, pct, ok := strings.Cut(k, ".")
		if !ok || !slices.Contains(mixCommands, cmd) || !slices.Contains([]string{"p50", "p90", "p99", "max"}, pct) {
			bad("slos."+k, "want COMMAND.PERCENTILE with PERCENTILE one of p50, p90, p99, max")
		}
		if s.SLOs[k] <= 0 {
			bad("slos."+k, "must be a positive duration")
		}
	}
	if s.Availability < 0 || s.Availability > 1 || math.IsNaN(s.Availability) {
		bad("availability", "must be a fraction in (0, 1], e.g. 0.99 (got %v)", s.Availability)
	}
	if len(s.Invariants) > 0 {
		var names []string
		for _, c := range DefaultCheckers(&Scenario{}) {
			names = append(names, c.Name())
		}
		for i, n := range s.Invariants {
			if len(names) > 0 && !slices.Contains(names, n) {
				bad(fmt.Sprintf("invariants[%d]", i), "unknown checker %q (want one of %s)", n, strings.Join(names, ", "))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w %s: %w", ErrInvalidScenario, cmpOr(s.Name, "(unnamed)"), errors.Join(errs...))
}

func validateFault(field, name string, bad func(field, format string, args ...any)) {
	if name == "" {
		bad(field+".fault", "must not be empty")
		return
	}
	f, ok := chaos.Lookup(name)
	if !ok {
		var names []string
		for _, c := range chaos.Catalogue() {
			names = append(names, c.Name())
		}
		bad(field+".fault", "unknown fault %q (want one of %s)", name, strings.Join(names, ", "))
		return
	}
	if f.EndsManager() {
		bad(field+".fault", "%s ends the run; choose it with shutdown: graceful, under_load or kill", name)
	}
}

// managerConfig is the manager configuration the scenario asks for:
// DefaultConfig with the scenario's overrides, chaos on and a free port.
func (s *Scenario) managerConfig() (manager.Config, error) {
	cfg := manager.DefaultConfig()
	if err := cfg.FromEnv(func(k string) (string, bool) { v, ok := s.Manager[k]; return v, ok }); err != nil {
		return cfg, err
	}
	cfg.Chaos = true
	cfg.Port = 0
	cfg.Host = "127.0.0.1"
	return cfg, cfg.Validate()
}

func sumWeights(m map[string]int) int {
	n := 0
	for _, w := range m {
		n += max(w, 0)
	}
	return n
}

func cmpOr[T comparable](v, or T) T {
	var zero T
	if v == zero {
		return or
	}
	return v
}

// Builtin returns the built-in scenario name (see Builtins).
func Builtin(name string) (*Scenario, error) {
	b, err := builtinFS.ReadFile(path.Join("builtin", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w %q (built-ins: %s)", ErrUnknownScenario, name, strings.Join(BuiltinNames(), ", "))
	}
	s, err := Parse(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("built-in %s: %w", name, err)
	}
	return s, nil
}

// BuiltinNames lists the built-in scenarios, sorted.
func BuiltinNames() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}

// Builtins returns every built-in scenario, sorted by name. A built-in
// that does not parse is a build error caught by the package's tests, so
// it is left out here rather than returned as an error.
func Builtins() []*Scenario {
	var out []*Scenario
	for _, n := range BuiltinNames() {
		if s, err := Builtin(n); err == nil {
			out = append(out, s)
		}
	}
	return out
}
