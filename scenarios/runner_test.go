package scenarios

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// tiny is a short real run: two pipelines, a crash and a hung queue, a
// graceful shutdown, against the embedded manager with real workers. The
// hang is healed before the hang bound (6 s here), so this test proves the
// runner end to end and leaves hang detection to the hung-queue scenario.
func tiny() *Scenario {
	return &Scenario{
		Name: "tiny", Seed: 11,
		Duration: Duration(10 * time.Second), WarmUp: Duration(2 * time.Second),
		Heal: Duration(time.Second), Quiesce: Duration(time.Second),
		Pipelines: 2, Clients: 2, Rate: 4,
		Schedule: []FaultAt{
			{At: Duration(time.Second), Fault: "crash", Target: 1},
			{At: Duration(2 * time.Second), Fault: "hang_queue", Target: 2, For: Duration(4 * time.Second)},
		},
		Manager: map[string]string{
			"STREAM_MANAGER_HEALTH_CHECK_INTERVAL":    "0.5",
			"STREAM_MANAGER_HEALTH_CHECK_TIMEOUT":     "1",
			"STREAM_MANAGER_QUEUE_TIMEOUT":            "2",
			"STREAM_MANAGER_TERMINATION_GRACE_PERIOD": "1",
			"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT":     "3",
		},
	}
}

func TestRunEmbedded(t *testing.T) {
	dir := t.TempDir()
	rep, err := Run(t.Context(), tiny(), testWorkers(Options{Out: dir, Progress: t.Output()}))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, f := range []string{"history.jsonl", "schedule.jsonl", "report.json", "scenario.yaml", "seed"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Valid    bool
		Seed     int64
		Scenario string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Seed != 11 || got.Scenario != "tiny" {
		t.Errorf("report.json names %s seed %d, want tiny seed 11", got.Scenario, got.Seed)
	}
	d := rep.Data
	if d.Shutdown.Signal != "SIGTERM" || d.Shutdown.Exited == 0 {
		t.Errorf("shutdown %+v: want a SIGTERM and an exit", d.Shutdown)
	}
	fired := map[string]bool{}
	for _, o := range d.Ops {
		if o.Process == Nemesis && o.Type == OpOK {
			fired[o.F] = true
		}
	}
	for _, f := range []string{"crash", "hang_queue", protocol.FaultManagerSigterm} {
		if !fired[f] {
			t.Errorf("%s never fired", f)
		}
	}
	if !strings.HasPrefix(rep.Replay, "corral run tiny --seed 11") {
		t.Errorf("replay %q", rep.Replay)
	}
	checkRunTraces(t, rep)
	Require(t, rep)
}

// A logical pipeline whose first init failed has no id yet; it must still
// be handed to the keeper, or a scenario whose inits fail makes one init
// per pipeline and never again.
func TestFailedFirstInitIsRetried(t *testing.T) {
	p := newPipelines()
	p.markLost(1, "")
	if got := p.lostOnes(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("lost after a failed first init = %v, want [1]", got)
	}
	p.set(1, "a")
	p.markLost(1, "stale") // another id: ignored
	if got := p.lostOnes(); len(got) != 0 {
		t.Fatalf("lost after a stale id = %v, want none", got)
	}
	p.markLost(1, "a")
	if got := p.lostOnes(); len(got) != 1 {
		t.Fatalf("lost after its own id = %v, want [1]", got)
	}
}

// An in-worker fault that meets a worker held by an earlier fault (hung
// and not yet healed, or killed) is not applicable; once the hang is
// healed, the worker owes an answer again.
func TestHeldByEarlierFault(t *testing.T) {
	r := &runner{hist: NewHistory(time.Now(), nil)}
	hang := r.hist.Invoke(Nemesis, protocol.FaultHangQueue, 1, "p1", nil)
	r.hist.Complete(hang, OpOK, "", nil, "", "")
	slow := r.hist.Invoke(Nemesis, protocol.FaultSlowProbe, 1, "p1", nil)
	if by := r.heldBy("p1", slow.Index); !strings.Contains(by, protocol.FaultHangQueue) {
		t.Errorf("during the hang: heldBy = %q, want the hang named", by)
	}
	if by := r.heldBy("p2", slow.Index); by != "" {
		t.Errorf("another pipeline: heldBy = %q, want none", by)
	}
	heal := r.hist.Invoke(Nemesis, healPrefix+protocol.FaultHangQueue, 1, "p1", nil)
	r.hist.Complete(heal, OpOK, "", nil, "", "")
	later := r.hist.Invoke(Nemesis, protocol.FaultSlowProbe, 1, "p1", nil)
	if by := r.heldBy("p1", later.Index); by != "" {
		t.Errorf("after the heal: heldBy = %q, want none", by)
	}
	crash := r.hist.Invoke(Nemesis, protocol.FaultCrash, 1, "p1", nil)
	r.hist.Complete(crash, OpOK, "", nil, "", "")
	last := r.hist.Invoke(Nemesis, protocol.FaultSlowProbe, 1, "p1", nil)
	if by := r.heldBy("p1", last.Index); !strings.Contains(by, protocol.FaultCrash) {
		t.Errorf("after a crash: heldBy = %q, want the crash named", by)
	}
}
