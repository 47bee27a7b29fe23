package scenarios

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

func schedule(t *testing.T, sc *Scenario, seed int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSchedule(&b, PlanRun(sc, seed)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPlanSameSeedSameBytes(t *testing.T) {
	for _, sc := range Builtins() {
		t.Run(sc.Name, func(t *testing.T) {
			a, b := schedule(t, sc, 42), schedule(t, sc, 42)
			if !bytes.Equal(a, b) {
				t.Fatalf("same seed, different schedules:\n%s\n---\n%s", a, b)
			}
			if c := schedule(t, sc, 43); bytes.Equal(a, c) {
				t.Fatalf("seeds 42 and 43 gave the same schedule")
			}
		})
	}
}

func TestPlanShape(t *testing.T) {
	sc, err := Builtin("smoke")
	if err != nil {
		t.Fatal(err)
	}
	plan := PlanRun(sc, 1)
	tl := TimelineOf(sc)
	inits := map[int]bool{}
	faults := map[string]int{}
	for i, e := range plan {
		if i > 0 && e.At < plan[i-1].At {
			t.Fatalf("entry %d at %s is before entry %d at %s", i, e.At.D(), i-1, plan[i-1].At.D())
		}
		if e.Kind == KindCommand && e.F == "init" && e.At.D() < tl.Chaos {
			inits[e.Target] = true
		}
		if e.Kind == KindFault {
			faults[e.F]++
			if e.F != protocol.FaultManagerSigterm && (e.At.D() < tl.Chaos || e.At.D() > tl.Heal) {
				t.Errorf("fault %s at %s is outside the chaos phase [%s, %s]", e.F, e.At.D(), tl.Chaos, tl.Heal)
			}
		}
	}
	if len(inits) != sc.Pipelines {
		t.Errorf("warm-up inits %v, want pipelines 1..%d", inits, sc.Pipelines)
	}
	for _, f := range []string{"crash", "hang_process", "hang_queue", "slow_probe", "stale_responses", "garbage_output",
		"ignore_sigterm", "slow_start", "spawn_grandchild"} {
		if faults[f] == 0 {
			t.Errorf("smoke never plans %s", f)
		}
	}
	last := plan[len(plan)-1]
	var shutdown *PlanEntry
	for i := range plan {
		if plan[i].F == protocol.FaultManagerSigterm {
			shutdown = &plan[i]
		}
	}
	if shutdown == nil || shutdown.At.D() != tl.Shutdown {
		t.Fatalf("no SIGTERM at %s in the plan", tl.Shutdown)
	}
	// Under load: clients still have commands after the shutdown.
	if last.Kind != KindCommand || last.At <= shutdown.At {
		t.Errorf("last entry %+v: want a client command after the shutdown at %s", last, shutdown.At.D())
	}
}

func TestPlanSwarmPicksBySeed(t *testing.T) {
	sc, err := Builtin("swarm")
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]bool{}
	for seed := int64(1); seed <= 8; seed++ {
		names := map[string]bool{}
		for _, e := range PlanRun(sc, seed) {
			if e.Kind == KindFault && e.F != protocol.FaultManagerSigterm {
				names[e.F] = true
			}
		}
		var key []string
		for n := range names {
			key = append(key, n)
		}
		slices.Sort(key)
		sets[strings.Join(key, ",")] = true
	}
	if len(sets) < 2 {
		t.Fatalf("8 seeds enabled the same faults: %v", sets)
	}
}

func TestScheduleRoundTrip(t *testing.T) {
	sc, _ := Builtin("smoke")
	b := schedule(t, sc, 9)
	plan, err := ReadSchedule(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := WriteSchedule(&again, plan); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again.Bytes()) {
		t.Fatal("schedule.jsonl does not survive a read and a write")
	}
}

func TestBuiltinsValidate(t *testing.T) {
	names := BuiltinNames()
	for _, want := range []string{"smoke", "hung-queue", "crash-loop", "slow-probes", "shutdown-under-load", "bad-clients", "swarm", "soak", "limits", "churn"} {
		sc, err := Builtin(want)
		if err != nil {
			t.Errorf("built-in %s: %v (have %v)", want, err, names)
			continue
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("built-in %s: %v", want, err)
		}
		if sc.Name != want || sc.Description == "" {
			t.Errorf("built-in %s: name %q, description %q", want, sc.Name, sc.Description)
		}
	}
	if sc, _ := Builtin("smoke"); sc != nil {
		tl := TimelineOf(sc)
		if tl.Shutdown > 55*time.Second {
			t.Errorf("smoke shuts down at %s, want about a minute in all", tl.Shutdown)
		}
	}
	if _, err := Builtin("nope"); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("Builtin(nope) = %v, want ErrUnknownScenario", err)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "name: x\npipelinez: 2\n", "line 2: field pipelinez not found"},
		{"bad duration", "name: x\nduration: soon\n", "line 2"},
		{"bad type", "name: x\npipelines: many\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Scenario)
		want string
	}{
		{"no name", func(s *Scenario) { s.Name = "" }, "name: must not be empty"},
		{"unknown fault", func(s *Scenario) { s.Faults = []FaultChoice{{Fault: "meteor", Weight: 1}} }, `faults[0].fault: unknown fault "meteor"`},
		{"zero weight", func(s *Scenario) { s.Faults = []FaultChoice{{Fault: "crash"}} }, "faults[0].weight: must be > 0"},
		{"negative pipelines", func(s *Scenario) { s.Pipelines = -1 }, "pipelines: must be in 1..256"},
		{"schedule target", func(s *Scenario) { s.Schedule = []FaultAt{{Fault: "crash", Target: 9}} }, "schedule[0].target"},
		{"schedule late", func(s *Scenario) { s.Schedule = []FaultAt{{At: Duration(time.Hour), Fault: "crash"}} }, "schedule[0].at"},
		{"manager fault", func(s *Scenario) { s.Schedule = []FaultAt{{Fault: "manager_sigkill"}} }, "schedule[0].fault: manager_sigkill ends the run"},
		{"mix", func(s *Scenario) { s.Mix = map[string]int{"dance": 1} }, "mix.dance: unknown command"},
		{"shutdown", func(s *Scenario) { s.Shutdown = "gently" }, "shutdown:"},
		{"manager key", func(s *Scenario) { s.Manager = map[string]string{"STREAM_MANAGER_NOPE": "1"} }, "manager.STREAM_MANAGER_NOPE"},
		{"manager value", func(s *Scenario) { s.Manager = map[string]string{"STREAM_MANAGER_QUEUE_TIMEOUT": "-3"} }, "STREAM_MANAGER_QUEUE_TIMEOUT"},
		{"slo", func(s *Scenario) { s.SLOs = map[string]Duration{"status.p42": Duration(time.Second)} }, "slos.status.p42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &Scenario{Name: "x", Duration: Duration(10 * time.Second), Pipelines: 2}
			tc.edit(sc)
			err := sc.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidScenario) {
				t.Fatalf("Validate() = %v, want ErrInvalidScenario containing %q", err, tc.want)
			}
		})
	}
}
