package manager

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Config is the manager's configuration. The zero value is not valid; start
// from DefaultConfig. Durations are plain time.Duration values.
type Config struct {
	Host string // STREAM_MANAGER_HOST
	Port int    // STREAM_MANAGER_PORT; 0 picks a free port

	// SocketTimeout bounds reading a request and writing its response.
	SocketTimeout time.Duration
	// QueueTimeout is the ceiling of the adaptive deadline of client
	// commands sent to a worker, and the deadline of init.
	QueueTimeout time.Duration
	// HealthCheckTimeout is the ceiling of the adaptive probe deadline.
	HealthCheckTimeout time.Duration
	// MaxHealthFailures consecutive failed probes terminate a pipeline.
	MaxHealthFailures int
	// ProcessJoinTimeout bounds the wait for a SIGKILLed worker to be reaped.
	ProcessJoinTimeout time.Duration
	// TerminationGracePeriod is how long a worker may take to exit after
	// terminate and SIGTERM before it is killed.
	TerminationGracePeriod time.Duration
	// PreloadedProcesses idle workers are kept ready for init.
	PreloadedProcesses int
	// MaxRAMMB refuses init while the manager and its workers use this many
	// MiB of resident memory or more; 0 means no limit.
	MaxRAMMB int
	// WorkerRAMMB is the resident size in MiB an admission reserves for a
	// new worker before one of the same video configuration has been
	// measured (then the largest size measured is reserved instead).
	WorkerRAMMB int

	// HealthCheckInterval is the base probe interval; it stretches to twice
	// this for healthy pipelines and shrinks to half for failing ones.
	HealthCheckInterval time.Duration
	// ProbeTimeoutFloor and CommandTimeoutFloor are the lower clamps of the
	// adaptive deadlines (clamped again to their ceilings).
	ProbeTimeoutFloor   time.Duration
	CommandTimeoutFloor time.Duration
	// MaxFrameBytes caps request frames; larger headers are refused unread.
	MaxFrameBytes int
	// MaxWorkerFrameBytes caps worker reply frames, apart from requests: a
	// larger reply breaks that pipeline's channel, and the pipeline is
	// failed and stopped. Status reports are bounded far below the default.
	MaxWorkerFrameBytes int
	// MaxConnections caps open client connections; more are answered with
	// an error frame and closed.
	MaxConnections int
	// MaxQueuedPerPipeline caps the client commands waiting for (or in
	// flight to) one pipeline's worker; more are answered operation_error
	// at once, so one slow pipeline cannot hold every connection.
	MaxQueuedPerPipeline int
	// Chaos enables the chaos command and fault modes in workers.
	Chaos bool
}

// DefaultConfig returns the upstream defaults plus Corral's own.
func DefaultConfig() Config {
	return Config{
		Host:                   "127.0.0.1",
		Port:                   7070,
		SocketTimeout:          5 * time.Second,
		QueueTimeout:           10 * time.Second,
		HealthCheckTimeout:     5 * time.Second,
		MaxHealthFailures:      3,
		ProcessJoinTimeout:     30 * time.Second,
		TerminationGracePeriod: 5 * time.Second,
		HealthCheckInterval:    2 * time.Second,
		ProbeTimeoutFloor:      250 * time.Millisecond,
		CommandTimeoutFloor:    time.Second,
		MaxFrameBytes:          protocol.DefaultMaxFrameBytes,
		// Four times the request cap, so a reply that echoes a request
		// (a status report names the init's video reference) still fits.
		MaxWorkerFrameBytes:  4 * protocol.DefaultMaxFrameBytes,
		MaxConnections:       1024,
		MaxQueuedPerPipeline: 32,
		// A worker of the reference binary measures 15-20 MiB resident.
		WorkerRAMMB: 32,
	}
}

// Addr returns host:port.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Setting describes one configuration entry: its variable, its flag and the
// rule its value must follow.
type Setting struct {
	Env, Flag, Usage, Rule string
	value                  func(c *Config) flag.Value
	check                  func(c Config) bool
}

// Settings lists every configuration entry in help order.
func Settings() []Setting {
	positive := func(get func(Config) time.Duration) func(Config) bool {
		return func(c Config) bool { return get(c) > 0 }
	}
	return []Setting{
		{"STREAM_MANAGER_HOST", "host", "address to listen on", "must not be empty",
			func(c *Config) flag.Value { return (*stringValue)(&c.Host) },
			func(c Config) bool { return c.Host != "" }},
		{"STREAM_MANAGER_PORT", "port", "TCP port to listen on (0 picks one)", "must be an integer in 0..65535",
			func(c *Config) flag.Value { return (*intValue)(&c.Port) },
			func(c Config) bool { return c.Port >= 0 && c.Port <= 65535 }},
		{"STREAM_MANAGER_SOCKET_TIMEOUT", "socket-timeout", "read/write deadline of a client connection", "must be a positive duration (seconds or e.g. 500ms)",
			func(c *Config) flag.Value { return (*durationValue)(&c.SocketTimeout) },
			positive(func(c Config) time.Duration { return c.SocketTimeout })},
		{"STREAM_MANAGER_QUEUE_TIMEOUT", "queue-timeout", "ceiling of a worker command's deadline", "must be a positive duration",
			func(c *Config) flag.Value { return (*durationValue)(&c.QueueTimeout) },
			positive(func(c Config) time.Duration { return c.QueueTimeout })},
		{"STREAM_MANAGER_HEALTH_CHECK_TIMEOUT", "health-check-timeout", "ceiling of a health probe's deadline", "must be a positive duration",
			func(c *Config) flag.Value { return (*durationValue)(&c.HealthCheckTimeout) },
			positive(func(c Config) time.Duration { return c.HealthCheckTimeout })},
		{"STREAM_MANAGER_MAX_HEALTH_FAILURES", "max-health-failures", "consecutive failed probes that terminate a pipeline", "must be an integer >= 1",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxHealthFailures) },
			func(c Config) bool { return c.MaxHealthFailures >= 1 }},
		{"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT", "process-join-timeout", "wait for a killed worker to be reaped", "must be a positive duration",
			func(c *Config) flag.Value { return (*durationValue)(&c.ProcessJoinTimeout) },
			positive(func(c Config) time.Duration { return c.ProcessJoinTimeout })},
		{"STREAM_MANAGER_TERMINATION_GRACE_PERIOD", "termination-grace-period", "time a worker has to exit after terminate+SIGTERM", "must be a positive duration",
			func(c *Config) flag.Value { return (*durationValue)(&c.TerminationGracePeriod) },
			positive(func(c Config) time.Duration { return c.TerminationGracePeriod })},
		{"STREAM_API_PRELOADED_PROCESSES", "preloaded-processes", "idle workers kept ready for init", "must be an integer in 0..256",
			func(c *Config) flag.Value { return (*intValue)(&c.PreloadedProcesses) },
			func(c Config) bool { return c.PreloadedProcesses >= 0 && c.PreloadedProcesses <= 256 }},
		{"STREAM_MANAGER_MAX_RAM_MB", "max-ram-mb", "refuse init at this resident memory in MiB (0: no limit)", "must be an integer >= 0",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxRAMMB) },
			func(c Config) bool { return c.MaxRAMMB >= 0 }},
		{"STREAM_MANAGER_WORKER_RAM_MB", "worker-ram-mb", "MiB reserved for a new worker until one of its video configuration is measured", "must be an integer in 1..1048576",
			func(c *Config) flag.Value { return (*intValue)(&c.WorkerRAMMB) },
			func(c Config) bool { return c.WorkerRAMMB >= 1 && c.WorkerRAMMB <= 1<<20 }},
		{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL", "health-check-interval", "base interval between health probes", "must be a duration >= 10ms",
			func(c *Config) flag.Value { return (*durationValue)(&c.HealthCheckInterval) },
			func(c Config) bool { return c.HealthCheckInterval >= 10*time.Millisecond }},
		{"STREAM_MANAGER_PROBE_TIMEOUT_FLOOR", "probe-timeout-floor", "lower clamp of the adaptive probe deadline", "must be a duration >= 1ms",
			func(c *Config) flag.Value { return (*durationValue)(&c.ProbeTimeoutFloor) },
			func(c Config) bool { return c.ProbeTimeoutFloor >= time.Millisecond }},
		{"STREAM_MANAGER_COMMAND_TIMEOUT_FLOOR", "command-timeout-floor", "lower clamp of the adaptive command deadline", "must be a duration >= 1ms",
			func(c *Config) flag.Value { return (*durationValue)(&c.CommandTimeoutFloor) },
			func(c Config) bool { return c.CommandTimeoutFloor >= time.Millisecond }},
		{"STREAM_MANAGER_MAX_FRAME_BYTES", "max-frame-bytes", "largest request frame accepted", "must be an integer in 64..4294967295",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxFrameBytes) },
			func(c Config) bool { return c.MaxFrameBytes >= 64 && c.MaxFrameBytes <= math.MaxUint32 }},
		{"STREAM_MANAGER_MAX_WORKER_FRAME_BYTES", "max-worker-frame-bytes", "largest worker reply frame accepted; a larger one fails its pipeline", "must be an integer in 1024..4294967295",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxWorkerFrameBytes) },
			func(c Config) bool { return c.MaxWorkerFrameBytes >= 1024 && c.MaxWorkerFrameBytes <= math.MaxUint32 }},
		{"STREAM_MANAGER_MAX_CONNECTIONS", "max-connections", "open client connections allowed", "must be an integer >= 1",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxConnections) },
			func(c Config) bool { return c.MaxConnections >= 1 }},
		{"STREAM_MANAGER_MAX_QUEUED_PER_PIPELINE", "max-queued-per-pipeline", "client commands that may wait for one pipeline; more are refused as busy", "must be an integer >= 1",
			func(c *Config) flag.Value { return (*intValue)(&c.MaxQueuedPerPipeline) },
			func(c Config) bool { return c.MaxQueuedPerPipeline >= 1 }},
		{"STREAM_MANAGER_CHAOS", "chaos", "enable the chaos command and worker fault modes", "must be true or false",
			func(c *Config) flag.Value { return (*boolValue)(&c.Chaos) },
			func(Config) bool { return true }},
	}
}

// ConfigError names the variable (and, when the value may have come from
// either, the flag) that holds a bad value.
type ConfigError struct {
	Name, Flag, Value, Rule string
}

func (e *ConfigError) Error() string {
	if e.Flag != "" {
		return fmt.Sprintf("%s (--%s) = %q is invalid: %s", e.Name, e.Flag, e.Value, e.Rule)
	}
	return fmt.Sprintf("%s=%q is invalid: %s", e.Name, e.Value, e.Rule)
}

// FromEnv overrides c with every set variable of Settings.
func (c *Config) FromEnv(lookup func(string) (string, bool)) error {
	for _, s := range Settings() {
		v, ok := lookup(s.Env)
		if !ok {
			continue
		}
		if err := s.value(c).Set(v); err != nil {
			return &ConfigError{Name: s.Env, Value: v, Rule: s.Rule}
		}
	}
	// Worker settings have no flag: every worker reads them from the
	// environment it inherits. A bad one stops serve here rather than
	// every worker at start.
	for _, w := range []struct {
		env, rule string
		check     func(string) error
	}{
		{protocol.EnvSourceStallTimeout, "must be seconds in 0..86400 (0 turns the frame watchdog off)",
			func(v string) error { _, err := protocol.ParseSourceStallTimeout(v); return err }},
		{protocol.EnvDecodeSize, "must be WxH with both in 16..4096",
			func(v string) error { _, _, err := protocol.ParseDecodeSize(v); return err }},
	} {
		if v, ok := lookup(w.env); ok && w.check(v) != nil {
			return &ConfigError{Name: w.env, Value: v, Rule: w.rule}
		}
	}
	return nil
}

// BindFlags registers one flag per setting on fs, with c's current values
// (the environment already applied) as defaults. A bad flag value is
// reported by fs.Parse naming the flag and its rule.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	for _, s := range Settings() {
		fs.Var(ruled{s.value(c), s.Rule}, s.Flag, fmt.Sprintf("%s (env %s)", s.Usage, s.Env))
	}
}

// Validate checks every rule, naming the variable of the first one broken.
func (c Config) Validate() error {
	var errs []error
	for _, s := range Settings() {
		if !s.check(c) {
			errs = append(errs, &ConfigError{Name: s.Env, Flag: s.Flag, Value: s.value(&c).String(), Rule: s.Rule})
		}
	}
	return errors.Join(errs...)
}

// ruled adds the rule to a flag's parse error.
type ruled struct {
	flag.Value
	rule string
}

func (r ruled) Set(s string) error {
	if err := r.Value.Set(s); err != nil {
		return errors.New(r.rule)
	}
	return nil
}

func (r ruled) IsBoolFlag() bool { _, ok := r.Value.(*boolValue); return ok }

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	*v = intValue(n)
	return err
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	*v = boolValue(b)
	return err
}
func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }

// durationValue accepts seconds as a number (upstream style, "2.5") or a Go
// duration ("500ms").
type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e6 {
			return errors.New("out of range")
		}
		*v = durationValue(time.Duration(f * float64(time.Second)))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

// Default returns the setting's value in c, as text (for help output).
func (s Setting) Default(c Config) string { return s.value(&c).String() }
