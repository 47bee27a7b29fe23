package scenarios

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is one harness run's description, loaded from YAML or built in.
// Zero values take the defaults of Defaults.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
	// Seed drives the workload and the faults; the --seed flag overrides it.
	Seed int64 `yaml:"seed"`
	// Duration is the length of the chaos phase.
	Duration Duration `yaml:"duration"`
	// WarmUp, Heal and Quiesce are the phases around it.
	WarmUp  Duration `yaml:"warm_up,omitempty"`
	Heal    Duration `yaml:"heal,omitempty"`
	Quiesce Duration `yaml:"quiesce,omitempty"`
	// Pipelines is how many logical pipelines the workload keeps alive.
	Pipelines int `yaml:"pipelines"`
	// Clients is how many concurrent client processes issue commands.
	Clients int `yaml:"clients"`
	// Rate is the commands per second of each client.
	Rate float64 `yaml:"rate,omitempty"`
	// Video is the video_reference of every pipeline.
	Video string `yaml:"video,omitempty"`
	// Mix weighs the commands clients draw: status, consume_result, mute,
	// resume, list_pipelines, inspect, init, terminate.
	Mix map[string]int `yaml:"mix,omitempty"`
	// Faults is a weighted menu drawn from the seed at FaultInterval on
	// average; Schedule is an explicit list. Both may be given.
	Faults        []FaultChoice `yaml:"faults,omitempty"`
	FaultInterval Duration      `yaml:"fault_interval,omitempty"`
	Schedule      []FaultAt     `yaml:"schedule,omitempty"`
	// Churn runs create-and-destroy cycles (an init, then a terminate of
	// what it created) on clients of their own.
	Churn []ChurnStep `yaml:"churn,omitempty"`
	// Swarm lets the seed also pick which faults of the menu are enabled.
	Swarm bool `yaml:"swarm,omitempty"`
	// Shutdown is how the run ends: "graceful" (SIGTERM after quiesce),
	// "under_load" (SIGTERM while clients still run) or "kill" (SIGKILL).
	Shutdown string `yaml:"shutdown,omitempty"`
	// Manager overrides the manager's configuration by variable name, e.g.
	// STREAM_MANAGER_QUEUE_TIMEOUT: "1".
	Manager map[string]string `yaml:"manager,omitempty"`
	// Init is merged over the target profile's init request (objects
	// merge, other values replace, null deletes a key), e.g.
	// {processing_configuration: {workspace_name: w, workflow_id: f}}.
	Init map[string]any `yaml:"init,omitempty"`
	// Bounds sets the limits a foreign target is judged by (it does not
	// configure the target); unset keys come from the manager: section
	// or the profile's defaults. --bounds overrides them.
	Bounds *BoundsSpec `yaml:"bounds,omitempty"`
	// Invariants names the checkers to run; empty means all.
	Invariants []string `yaml:"invariants,omitempty"`
	// SLOs bound latency percentiles per command, e.g. "status.p99": 500ms.
	SLOs map[string]Duration `yaml:"slos,omitempty"`
	// Availability is the fraction of commands to pipelines that no fault
	// touches that must succeed, in (0, 1]; 0 means DefaultAvailability.
	Availability float64 `yaml:"availability,omitempty"`
}

// FaultChoice is one entry of a weighted fault menu.
type FaultChoice struct {
	Fault  string         `yaml:"fault"`
	Weight int            `yaml:"weight"`
	Params map[string]any `yaml:"params,omitempty"`
}

// FaultAt is one entry of an explicit schedule: fault at time At (from the
// start of the chaos phase) against logical pipeline Target (0 = the
// manager or the fault's own choice), healed after For (0 = the fault's
// default).
type FaultAt struct {
	At     Duration       `yaml:"at"`
	Fault  string         `yaml:"fault"`
	Target int            `yaml:"target,omitempty"`
	For    Duration       `yaml:"for,omitempty"`
	Params map[string]any `yaml:"params,omitempty"`
}

// Duration is a time.Duration written as "1.5s" in YAML and JSON.
type Duration time.Duration

// UnmarshalYAML reads "250ms", "2s" or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 500ms, 2s)", n.Line, s)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalText writes the duration as text (JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration (JSON).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Parse reads a scenario from YAML, rejecting unknown keys.
func Parse(r io.Reader) (*Scenario, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return &s, nil
}

// LoadFile reads a scenario file.
func LoadFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
