package chaos_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func menu() []chaos.Choice {
	return []chaos.Choice{
		{Fault: protocol.FaultCrash, Weight: 1},
		{Fault: protocol.FaultHangProcess, Weight: 3},
		{Fault: protocol.FaultClientBurst, Weight: 2, Params: map[string]any{"clients": 10}},
		{Fault: protocol.FaultSlowProbe, Weight: 2, Params: map[string]any{chaos.ParamFor: 1.5, "delay_seconds": 0.2}},
	}
}

func TestPlanFaultsIsDeterministic(t *testing.T) {
	a := chaos.PlanFaults(7, menu(), time.Second, time.Minute, 4)
	b := chaos.PlanFaults(7, menu(), time.Second, time.Minute, 4)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed gave different plans:\n%v\n%v", a, b)
	}
	if c := chaos.PlanFaults(8, menu(), time.Second, time.Minute, 4); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 gave the same plan")
	}
	shuffled := menu()
	slices.Reverse(shuffled)
	if d := chaos.PlanFaults(7, shuffled, time.Second, time.Minute, 4); !reflect.DeepEqual(a, d) {
		t.Fatal("the menu's order changed the plan")
	}
}

func TestPlanFaultsShape(t *testing.T) {
	const pipelines, duration = 3, 10 * time.Minute
	plan := chaos.PlanFaults(1, menu(), time.Second, duration, pipelines)
	counts := map[string]int{}
	for i, p := range plan {
		counts[p.Fault]++
		if p.At < 0 || p.At >= duration || (i > 0 && p.At < plan[i-1].At) {
			t.Fatalf("plan[%d].At = %s: not sorted within [0, %s)", i, p.At, duration)
		}
		f, _ := chaos.Lookup(p.Fault)
		switch {
		case f.NeedsPipeline() && (p.Target < 1 || p.Target > pipelines):
			t.Fatalf("plan[%d] = %+v: target out of 1..%d", i, p, pipelines)
		case !f.NeedsPipeline() && p.Target != 0:
			t.Fatalf("plan[%d] = %+v: client fault with a target", i, p)
		}
		wantFor := map[string]time.Duration{protocol.FaultHangProcess: 3 * time.Second, protocol.FaultSlowProbe: 1500 * time.Millisecond}[p.Fault]
		if p.For != wantFor {
			t.Fatalf("plan[%d] = %+v: For = %s, want %s", i, p, p.For, wantFor)
		}
		if _, ok := p.Params[chaos.ParamFor]; ok {
			t.Fatalf("plan[%d] passes %s on", i, chaos.ParamFor)
		}
	}
	// About 600 draws with weights 1:3:2:2; a wide tolerance keeps this
	// from being flaky for any seed.
	total := len(plan)
	if total < 450 || total > 750 {
		t.Fatalf("%d faults in %s at a 1 s mean gap, want about 600", total, duration)
	}
	for fault, weight := range map[string]int{protocol.FaultCrash: 1, protocol.FaultHangProcess: 3, protocol.FaultClientBurst: 2, protocol.FaultSlowProbe: 2} {
		want := float64(total) * float64(weight) / 8
		if got := float64(counts[fault]); got < want*0.6 || got > want*1.4 {
			t.Errorf("%s drawn %v times, want about %.0f", fault, got, want)
		}
	}
}

func TestPlanFaultsEdges(t *testing.T) {
	if p := chaos.PlanFaults(1, menu(), 0, time.Minute, 2); p != nil {
		t.Errorf("zero interval: %v", p)
	}
	if p := chaos.PlanFaults(1, []chaos.Choice{{Fault: protocol.FaultCrash, Weight: 0}}, time.Second, time.Minute, 2); p != nil {
		t.Errorf("zero weights: %v", p)
	}
	for _, p := range chaos.PlanFaults(1, menu(), time.Second, time.Minute, 0) {
		if p.Fault != protocol.FaultClientBurst {
			t.Fatalf("no pipelines, yet %s planned", p.Fault)
		}
	}
}

func TestSwarmPick(t *testing.T) {
	seen := map[string]bool{}
	for seed := range int64(200) {
		got := chaos.SwarmPick(seed, menu())
		if !reflect.DeepEqual(got, chaos.SwarmPick(seed, menu())) {
			t.Fatalf("seed %d: not deterministic", seed)
		}
		if len(got) == 0 || len(got) > len(menu()) {
			t.Fatalf("seed %d: %d choices", seed, len(got))
		}
		var key string
		for _, c := range got {
			if !slices.ContainsFunc(menu(), func(m chaos.Choice) bool { return reflect.DeepEqual(m, c) }) {
				t.Fatalf("seed %d: %+v is not in the menu", seed, c)
			}
			key += c.Fault + ","
		}
		seen[key] = true
	}
	if len(seen) < 8 {
		t.Fatalf("200 seeds picked only %d distinct subsets", len(seen))
	}
	if chaos.SwarmPick(1, nil) != nil {
		t.Fatal("empty menu gave choices")
	}
}

func TestCatalogue(t *testing.T) {
	all := chaos.Catalogue()
	var names []string
	for _, f := range all {
		names = append(names, f.Name())
		if got, ok := chaos.Lookup(f.Name()); !ok || got.Name() != f.Name() {
			t.Errorf("Lookup(%s) failed", f.Name())
		}
	}
	if !slices.IsSorted(names) || len(names) != 20 {
		t.Fatalf("catalogue = %v, want 20 names sorted", names)
	}
	n := 0
	for level, ls := range chaos.Levels() {
		n += len(ls)
		for _, name := range ls {
			if f, _ := chaos.Lookup(name); f.Level() != level {
				t.Errorf("%s listed under %s", name, level)
			}
		}
	}
	if n != len(all) {
		t.Fatalf("Levels lists %d faults, the catalogue %d", n, len(all))
	}
	if _, ok := chaos.Lookup("nope"); ok {
		t.Fatal("Lookup(nope) succeeded")
	}
}
