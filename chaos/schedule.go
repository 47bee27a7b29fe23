package chaos

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"slices"
	"time"
)

// Choice is one entry of a weighted fault menu. Params are passed to the
// fault; Params[ParamFor] (seconds) overrides its default duration.
type Choice struct {
	Fault  string
	Weight int
	Params map[string]any
}

// Planned is one fault of a schedule: at At from the start of the chaos
// phase, against logical pipeline Target (1..pipelines; 0 for client- and
// manager-level faults), lasting For (0: instant).
type Planned struct {
	At     time.Duration
	Fault  string
	Target int
	For    time.Duration
	Params map[string]any
}

// maxPlanned caps a schedule, so that a tiny interval cannot exhaust
// memory.
const maxPlanned = 100_000

// Streams of the PCG generator, so that PlanFaults and SwarmPick draw
// independent sequences from the same seed.
const (
	streamPlan  = 0x636f7272616c_01 // "corral" + 1
	streamSwarm = 0x636f7272616c_02
)

// PlanFaults draws faults from menu by weight, with exponentially
// distributed gaps of mean interval, over duration. Faults that need a
// pipeline get a target drawn from 1..pipelines (they are left out when
// pipelines is 0); the others get 0. Names not in the catalogue are kept
// with target 0, for the runner's Lookup to report.
//
// It is deterministic: the same arguments give an equal slice. The menu is
// put in a canonical order first (stable by fault name), so a menu built
// from a map plans the same; choices with weight <= 0 are ignored. Times
// are rounded to the millisecond, sorted, and below duration.
func PlanFaults(seed int64, menu []Choice, interval, duration time.Duration, pipelines int) []Planned {
	if interval <= 0 || duration <= 0 {
		return nil
	}
	pipelines = max(pipelines, 0)
	type entry struct {
		Choice
		pipeline   bool
		defaultFor time.Duration
	}
	var entries []entry
	total := 0
	for _, c := range canonical(menu) {
		if c.Weight <= 0 {
			continue
		}
		e := entry{Choice: c}
		if f, ok := Lookup(c.Fault); ok {
			e.pipeline = f.NeedsPipeline()
			e.defaultFor = DefaultFor(c.Fault)
		}
		if e.pipeline && pipelines == 0 {
			continue
		}
		entries = append(entries, e)
		total += c.Weight
	}
	if total == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), streamPlan))
	var out []Planned
	at := 0.0
	for len(out) < maxPlanned {
		at += rng.ExpFloat64() * float64(interval)
		when := time.Duration(at).Round(time.Millisecond)
		if at >= float64(duration) || when >= duration {
			break
		}
		pick := rng.IntN(total)
		i := 0
		for pick >= entries[i].Weight {
			pick -= entries[i].Weight
			i++
		}
		e := entries[i]
		p := Planned{At: when, Fault: e.Fault, For: e.defaultFor, Params: cloneParams(e.Params, ParamFor)}
		if e.pipeline {
			p.Target = 1 + rng.IntN(pipelines)
		}
		if d, err := secondsParam(e.Fault, e.Params, ParamFor, e.defaultFor); err == nil {
			p.For = d.Round(time.Millisecond)
		}
		out = append(out, p)
	}
	return out
}

// SwarmPick keeps a seed-chosen, non-empty subset of the menu ("swarm
// testing": each run enables only some faults, so that faults which mask
// each other are also tried apart). Each choice is kept with probability
// one half; if none was, one is kept. The result is in canonical order
// (stable by fault name); an empty menu gives nil.
func SwarmPick(seed int64, menu []Choice) []Choice {
	if len(menu) == 0 {
		return nil
	}
	sorted := canonical(menu)
	rng := rand.New(rand.NewPCG(uint64(seed), streamSwarm))
	var out []Choice
	for _, c := range sorted {
		if rng.IntN(2) == 1 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		out = append(out, sorted[rng.IntN(len(sorted))])
	}
	for i := range out {
		out[i].Params = maps.Clone(out[i].Params)
	}
	return out
}

// canonical returns a copy of menu sorted stably by fault name.
func canonical(menu []Choice) []Choice {
	out := slices.Clone(menu)
	slices.SortStableFunc(out, func(a, b Choice) int { return cmp.Compare(a.Fault, b.Fault) })
	return out
}
