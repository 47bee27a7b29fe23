package scenarios

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// Timeline is where the phases of a planned run begin, from the start of
// the run. The chaos phase starts at WarmUp and lasts Scenario.Duration.
type Timeline struct {
	WarmUp, Chaos, Heal, Quiesce, Final, Shutdown time.Duration
}

// finalChecks is how long the final-checks phase lasts before shutdown.
const finalChecks = time.Second

// underLoadTail is how long clients keep issuing commands after a shutdown
// under load begins (they meet a closing manager).
const underLoadTail = 2 * time.Second

// TimelineOf lays out the phases of sc (defaults applied).
func TimelineOf(sc *Scenario) Timeline {
	s := sc.withDefaults()
	var t Timeline
	t.Chaos = s.WarmUp.D()
	t.Heal = t.Chaos + s.Duration.D()
	t.Quiesce = t.Heal + s.Heal.D()
	t.Final = t.Quiesce + s.Quiesce.D()
	t.Shutdown = t.Final + finalChecks
	return t
}

// PlanRun turns a scenario and a seed into the run's schedule: warm-up
// inits of every logical pipeline (and one init_invalid when the mix has
// it), each client's commands at planned times
// (open loop, drawn from the mix at the scenario's rate), the nemesis's
// faults (the weighted menu through chaos.PlanFaults, after swarm selection
// when asked, plus the explicit schedule), the final checks and the
// shutdown. The same scenario and seed always give the same plan.
func PlanRun(sc *Scenario, seed int64) []PlanEntry {
	s := sc.withDefaults()
	tl := TimelineOf(s)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x636f7272616c)) // "corral"
	var plan []PlanEntry

	// Warm-up: every logical pipeline is started in the first half of it.
	for i := 1; i <= s.Pipelines; i++ {
		at := tl.Chaos / 2 * time.Duration(i-1) / time.Duration(s.Pipelines)
		plan = append(plan, PlanEntry{At: Duration(at), Process: clientName((i-1)%s.Clients + 1), Kind: KindCommand,
			F: protocol.TypeInit, Target: i})
	}
	// A mix with init_invalid sends one in the warm-up too, after those
	// inits: a serial server may freeze at the first fault, and the
	// refused init must meet a list_pipelines before (a phantom shows).
	if s.Mix[MixInitInvalid] > 0 {
		plan = append(plan, invalidInitEntry(PlanEntry{At: Duration(tl.Chaos * 3 / 4), Process: clientName(1), Kind: KindCommand}))
	}

	// Client commands, open loop: exponential gaps at Rate per client,
	// during chaos and heal; under load they continue past the shutdown.
	commands := slices.Sorted(maps.Keys(s.Mix))
	end := tl.Quiesce
	for c := 1; c <= s.Clients; c++ {
		at := tl.Chaos
		for {
			at += roundMs(time.Duration(rng.ExpFloat64() / s.Rate * float64(time.Second)))
			if at >= end {
				break
			}
			plan = append(plan, drawCommand(rng, s, commands, c, at))
		}
		if s.Shutdown == ShutdownUnderLoad {
			at := tl.Shutdown - underLoadTail
			for {
				// Twice the rate: the shutdown must meet traffic.
				at += roundMs(time.Duration(rng.ExpFloat64() / (2 * s.Rate) * float64(time.Second)))
				if at >= tl.Shutdown+underLoadTail {
					break
				}
				plan = append(plan, drawCommand(rng, s, commands, c, at))
			}
		}
	}

	// Faults: the weighted menu drawn from the seed, then the explicit
	// schedule, both offset into the chaos phase.
	if len(s.Faults) > 0 {
		menu := make([]chaos.Choice, 0, len(s.Faults))
		for _, f := range s.Faults {
			menu = append(menu, chaos.Choice{Fault: f.Fault, Weight: f.Weight, Params: f.Params})
		}
		if s.Swarm {
			menu = chaos.SwarmPick(seed, menu)
		}
		for _, p := range chaos.PlanFaults(seed, menu, s.FaultInterval.D(), s.Duration.D(), s.Pipelines) {
			plan = append(plan, PlanEntry{At: Duration(tl.Chaos + p.At), Process: Nemesis, Kind: KindFault,
				F: p.Fault, Target: p.Target, For: Duration(p.For), Params: p.Params})
		}
	}
	for _, f := range s.Schedule {
		e := PlanEntry{At: Duration(tl.Chaos + f.At.D()), Process: Nemesis, Kind: KindFault,
			F: f.Fault, Target: f.Target, For: f.For, Params: f.Params}
		if fault, ok := chaos.Lookup(f.Fault); ok && fault.NeedsPipeline() && e.Target == 0 {
			e.Target = 1 + rng.IntN(s.Pipelines) // "the fault's own choice", drawn here so the file says it
		}
		if e.For == 0 {
			e.For = Duration(chaos.DefaultFor(f.Fault))
		}
		plan = append(plan, e)
	}

	// Final checks: the list, the manager's view, and every pipeline's
	// status, by the first client.
	final := clientName(1)
	plan = append(plan,
		PlanEntry{At: Duration(tl.Final), Process: final, Kind: KindCommand, F: protocol.TypeListPipelines},
		PlanEntry{At: Duration(tl.Final), Process: final, Kind: KindCommand, F: protocol.TypeInspect})
	for i := 1; i <= s.Pipelines; i++ {
		plan = append(plan, PlanEntry{At: Duration(tl.Final), Process: final, Kind: KindCommand, F: protocol.TypeStatus, Target: i})
	}

	shutdown := PlanEntry{At: Duration(tl.Shutdown), Process: Nemesis, Kind: KindFault, F: protocol.FaultManagerSigterm,
		Params: map[string]any{"mode": s.Shutdown}}
	if s.Shutdown == ShutdownKill {
		shutdown.F = protocol.FaultManagerSigkill
	}
	plan = append(plan, shutdown)

	// A stable sort keeps each process's own order among equal times.
	slices.SortStableFunc(plan, func(a, b PlanEntry) int { return cmp.Compare(a.At, b.At) })
	return plan
}

func drawCommand(rng *rand.Rand, s *Scenario, commands []string, client int, at time.Duration) PlanEntry {
	f := weighted(rng, commands, s.Mix)
	e := PlanEntry{At: Duration(at), Process: clientName(client), Kind: KindCommand, F: f}
	if f == MixInitInvalid {
		return invalidInitEntry(e)
	}
	if protocol.NeedsPipelineID(f) || f == protocol.TypeInit {
		e.Target = 1 + rng.IntN(s.Pipelines)
	}
	return e
}

// weighted draws one of keys (sorted) by weights.
func weighted(rng *rand.Rand, keys []string, weights map[string]int) string {
	n := rng.IntN(max(sumWeights(weights), 1))
	for _, k := range keys {
		if n < max(weights[k], 0) {
			return k
		}
		n -= max(weights[k], 0)
	}
	return keys[len(keys)-1]
}

func clientName(n int) string { return "client-" + strconv.Itoa(n) }

func roundMs(d time.Duration) time.Duration { return max(d.Round(time.Millisecond), time.Millisecond) }

// WriteSchedule writes a plan as JSON lines. Maps marshal with sorted
// keys, so equal plans give equal bytes.
func WriteSchedule(w io.Writer, plan []PlanEntry) error {
	bw := bufio.NewWriter(w)
	for _, e := range plan {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("scenarios: schedule entry at %s: %w", e.At.D(), err)
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// ReadSchedule parses a schedule.jsonl stream.
func ReadSchedule(r io.Reader) ([]PlanEntry, error) {
	var plan []PlanEntry
	dec := json.NewDecoder(r)
	for {
		var e PlanEntry
		if err := dec.Decode(&e); err == io.EOF {
			return plan, nil
		} else if err != nil {
			return plan, fmt.Errorf("scenarios: schedule line %d: %w", len(plan)+1, err)
		}
		plan = append(plan, e)
	}
}
