package scenarios

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// Where a bound came from (Bounds.From values), lowest precedence first.
const (
	BoundFromDefault  = "profile default"
	BoundFromManager  = "scenario manager: section"
	BoundFromTarget   = "the target's inspect"
	BoundFromScenario = "scenario bounds: section"
	BoundFromFlag     = "--bounds"
)

// BoundsSpec is the bounds: section of a scenario file and the --bounds
// flag: the limits a target is judged by, without configuring it (a
// foreign manager runs with whatever configuration it was started with).
// Zero fields keep the value of the layer below.
type BoundsSpec struct {
	Grace             Duration `yaml:"grace,omitempty" json:"grace,omitempty"`
	Join              Duration `yaml:"join,omitempty" json:"join,omitempty"`
	QueueTimeout      Duration `yaml:"queue_timeout,omitempty" json:"queue_timeout,omitempty"`
	HealthInterval    Duration `yaml:"health_interval,omitempty" json:"health_interval,omitempty"`
	HealthTimeout     Duration `yaml:"health_timeout,omitempty" json:"health_timeout,omitempty"`
	MaxHealthFailures int      `yaml:"max_health_failures,omitempty" json:"max_health_failures,omitempty"`
	CrashDetection    Duration `yaml:"crash_detection,omitempty" json:"crash_detection,omitempty"`
	Epsilon           Duration `yaml:"epsilon,omitempty" json:"epsilon,omitempty"`
}

// boundNames are the keys of bounds: and --bounds, in report order.
var boundNames = []string{"grace", "join", "queue_timeout", "health_interval", "health_timeout",
	"max_health_failures", "crash_detection", "epsilon"}

// ParseBounds reads the --bounds flag: comma-separated KEY=VALUE with the
// keys of the bounds: section (durations as 2s or 500ms; a bare number is
// seconds; max_health_failures an integer).
func ParseBounds(s string) (BoundsSpec, error) {
	var b BoundsSpec
	if strings.TrimSpace(s) == "" {
		return b, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return b, fmt.Errorf("--bounds %q: want KEY=VALUE[,KEY=VALUE...] (keys: %s)", part, strings.Join(boundNames, ", "))
		}
		if k == "max_health_failures" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return b, fmt.Errorf("--bounds max_health_failures=%q: must be an integer >= 1", v)
			}
			b.MaxHealthFailures = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			f, ferr := strconv.ParseFloat(v, 64)
			if ferr != nil {
				return b, fmt.Errorf("--bounds %s=%q: not a duration (e.g. 2s, 500ms)", k, v)
			}
			d = time.Duration(f * float64(time.Second))
		}
		if d <= 0 {
			return b, fmt.Errorf("--bounds %s=%q: must be positive", k, v)
		}
		dst := b.field(k)
		if dst == nil {
			return b, fmt.Errorf("--bounds: unknown key %q (keys: %s)", k, strings.Join(boundNames, ", "))
		}
		*dst = Duration(d)
	}
	return b, nil
}

// String renders b as ParseBounds reads it ("" when every field is zero).
func (b BoundsSpec) String() string {
	var parts []string
	for _, k := range boundNames {
		if k == "max_health_failures" {
			if b.MaxHealthFailures > 0 {
				parts = append(parts, k+"="+strconv.Itoa(b.MaxHealthFailures))
			}
			continue
		}
		if f := b.field(k); *f > 0 {
			parts = append(parts, k+"="+f.D().String())
		}
	}
	return strings.Join(parts, ",")
}

// field returns the duration field called name, nil for unknown names and
// max_health_failures.
func (b *BoundsSpec) field(name string) *Duration {
	switch name {
	case "grace":
		return &b.Grace
	case "join":
		return &b.Join
	case "queue_timeout":
		return &b.QueueTimeout
	case "health_interval":
		return &b.HealthInterval
	case "health_timeout":
		return &b.HealthTimeout
	case "crash_detection":
		return &b.CrashDetection
	case "epsilon":
		return &b.Epsilon
	}
	return nil
}

// validate names every negative value.
func (b BoundsSpec) validate(prefix string) []error {
	var errs []error
	for _, k := range boundNames {
		if f := b.field(k); f != nil && *f < 0 {
			errs = append(errs, fmt.Errorf("%s%s: must not be negative (got %s)", prefix, k, f.D()))
		}
	}
	if b.MaxHealthFailures < 0 {
		errs = append(errs, fmt.Errorf("%smax_health_failures: must not be negative", prefix))
	}
	return errs
}

// managerVar is the manager setting each bound mirrors.
var managerVar = map[string]string{
	"grace":               "STREAM_MANAGER_TERMINATION_GRACE_PERIOD",
	"join":                "STREAM_MANAGER_PROCESS_JOIN_TIMEOUT",
	"queue_timeout":       "STREAM_MANAGER_QUEUE_TIMEOUT",
	"health_interval":     "STREAM_MANAGER_HEALTH_CHECK_INTERVAL",
	"health_timeout":      "STREAM_MANAGER_HEALTH_CHECK_TIMEOUT",
	"max_health_failures": "STREAM_MANAGER_MAX_HEALTH_FAILURES",
}

// resolveBounds layers the bounds: profile defaults (the manager's
// defaults; Corral keeps upstream's variable names and defaults), the
// scenario's manager: section (the embedded manager's configuration; for
// a foreign target only a statement of what it was started with), the
// scenario's bounds: section, then the --bounds flag. From names the layer
// each value came from.
//
// A serial profile's default crash-detection bound is two health
// intervals plus a queue timeout: such a manager learns of a dead worker
// in a health pass that may wait behind a request, not from the exit.
func resolveBounds(cfg manager.Config, sc *Scenario, flag BoundsSpec, p Profile) Bounds {
	if p.Limits != nil {
		cfg = withTargetLimits(cfg, *p.Limits)
	}
	b := Bounds{Grace: cfg.TerminationGracePeriod, Join: cfg.ProcessJoinTimeout, QueueTimeout: cfg.QueueTimeout,
		HealthInterval: cfg.HealthCheckInterval, HealthTimeout: cfg.HealthCheckTimeout,
		MaxHealthFailures: cfg.MaxHealthFailures, CrashDetection: CrashDetectionBound, Epsilon: Epsilon,
		ProbeTimeoutFloor: cfg.ProbeTimeoutFloor, MaxRAMMB: cfg.MaxRAMMB, WorkerRAMMB: cfg.WorkerRAMMB,
		MaxConnections: cfg.MaxConnections, From: map[string]string{}}
	if p.Serial {
		b.CrashDetection = 2*b.HealthInterval + b.QueueTimeout
	}
	// Checked when the scenario was loaded (manager.Config.FromEnv).
	b.SourceStall, _ = protocol.ParseSourceStallTimeout(sc.Manager[protocol.EnvSourceStallTimeout])
	for _, k := range boundNames {
		b.From[k] = BoundFromDefault
		if p.Limits != nil {
			// A running Corral said what it holds itself to; the
			// scenario's manager: section did not configure it.
			if _, ok := managerVar[k]; ok {
				b.From[k] = BoundFromTarget
			}
			continue
		}
		if v, ok := managerVar[k]; ok {
			if _, set := sc.Manager[v]; set {
				b.From[k] = BoundFromManager
			}
		}
	}
	apply := func(s BoundsSpec, from string) {
		set := func(k string, dst *time.Duration) {
			if f := s.field(k); f != nil && *f > 0 {
				*dst, b.From[k] = f.D(), from
			}
		}
		set("grace", &b.Grace)
		set("join", &b.Join)
		set("queue_timeout", &b.QueueTimeout)
		set("health_interval", &b.HealthInterval)
		set("health_timeout", &b.HealthTimeout)
		set("crash_detection", &b.CrashDetection)
		set("epsilon", &b.Epsilon)
		if s.MaxHealthFailures > 0 {
			b.MaxHealthFailures, b.From["max_health_failures"] = s.MaxHealthFailures, from
		}
	}
	if sc.Bounds != nil {
		apply(*sc.Bounds, BoundFromScenario)
	}
	apply(flag, BoundFromFlag)
	return b
}

// BoundValue is one bound as reports declare it.
type BoundValue struct {
	Value string `json:"value"`
	From  string `json:"from"`
}

// Declared lists every bound with its value and origin, in report order.
func (b Bounds) Declared() map[string]BoundValue {
	vals := map[string]string{
		"grace": b.Grace.String(), "join": b.Join.String(), "queue_timeout": b.QueueTimeout.String(),
		"health_interval": b.HealthInterval.String(), "health_timeout": b.HealthTimeout.String(),
		"max_health_failures": strconv.Itoa(b.MaxHealthFailures), "crash_detection": b.CrashDetection.String(),
		"epsilon": b.Epsilon.String(),
	}
	out := map[string]BoundValue{}
	for _, k := range boundNames {
		from := b.From[k]
		if from == "" {
			from = BoundFromDefault
		}
		out[k] = BoundValue{Value: vals[k], From: from}
	}
	return out
}

// declaredLines renders Declared grouped by origin, one line per origin,
// for the terminal summary.
func (b Bounds) declaredLines() []string {
	byFrom := map[string][]string{}
	for _, k := range boundNames {
		v := b.Declared()[k]
		byFrom[v.From] = append(byFrom[v.From], k+"="+v.Value)
	}
	var out []string
	for _, from := range []string{BoundFromFlag, BoundFromScenario, BoundFromTarget, BoundFromManager, BoundFromDefault} {
		if len(byFrom[from]) > 0 {
			out = append(out, fmt.Sprintf("%s: %s", from, strings.Join(byFrom[from], " ")))
		}
	}
	return slices.Clip(out)
}

// withTargetLimits returns cfg with the bounds a target reported in its
// inspect answer (zero values keep cfg's).
func withTargetLimits(cfg manager.Config, l protocol.Limits) manager.Config {
	secs := func(dst *time.Duration, v float64) {
		if v > 0 {
			*dst = time.Duration(v * float64(time.Second))
		}
	}
	secs(&cfg.TerminationGracePeriod, l.TerminationGracePeriod)
	secs(&cfg.ProcessJoinTimeout, l.ProcessJoinTimeout)
	secs(&cfg.QueueTimeout, l.QueueTimeout)
	secs(&cfg.HealthCheckInterval, l.HealthCheckInterval)
	secs(&cfg.HealthCheckTimeout, l.HealthCheckTimeout)
	secs(&cfg.ProbeTimeoutFloor, l.ProbeTimeoutFloor)
	if l.MaxHealthFailures > 0 {
		cfg.MaxHealthFailures = l.MaxHealthFailures
	}
	cfg.MaxRAMMB = l.MaxRAMMB
	if l.WorkerRAMMB > 0 {
		cfg.WorkerRAMMB = l.WorkerRAMMB
	}
	if l.MaxConnections > 0 {
		cfg.MaxConnections = l.MaxConnections
	}
	return cfg
}
