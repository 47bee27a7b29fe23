package scenarios

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// fakeServer answers every request with answer(type) over the protocol's
// framing, one request per connection; answer returns nil to hang up
// without a frame.
func fakeServer(t *testing.T, answer func(typ string) map[string]any) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			body, err := protocol.ReadFrame(c, 1<<20)
			if err == nil {
				var req map[string]any
				_ = json.Unmarshal(body, &req)
				typ, _ := req["type"].(string)
				if resp := answer(typ); resp != nil {
					b, _ := json.Marshal(map[string]any{"request_id": "r", "response": resp, "pipeline_id": nil})
					_ = protocol.WriteFrame(c, b)
				}
			}
			c.Close()
		}
	})
	return ln.Addr().String()
}

func failure(errType string) map[string]any {
	return map[string]any{"status": "failure", "error_type": errType, "error_message": "unknown request type"}
}

func TestDetectProfile(t *testing.T) {
	cases := []struct {
		name      string
		answer    func(typ string) map[string]any
		want      string
		chaosOn   bool
		sourceHas string
	}{
		{"corral with chaos", func(typ string) map[string]any {
			if typ == protocol.TypeChaos {
				return failure(protocol.ErrTypeNotFound)
			}
			return map[string]any{"status": "success", "pipelines": []any{}}
		}, ProfileCorral, true, "inspect answered success"},
		{"corral without chaos", func(typ string) map[string]any {
			if typ == protocol.TypeChaos {
				return failure(protocol.ErrTypeInvalidPayload)
			}
			return map[string]any{"status": "success", "pipelines": []any{}}
		}, ProfileCorral, false, "not enabled"},
		{"upstream", func(string) map[string]any { return failure(protocol.ErrTypeInvalidPayload) },
			ProfileUpstream, false, "invalid_payload"},
		{"generic", func(string) map[string]any { return failure(protocol.ErrTypeInternal) },
			ProfileGeneric, false, "internal_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, chaosOn, err := DetectProfile(t.Context(), fakeServer(t, tc.answer))
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tc.want || chaosOn != tc.chaosOn || !strings.Contains(p.Source, tc.sourceHas) {
				t.Fatalf("got %s chaos=%v (%s), want %s chaos=%v (%q)", p.Name, chaosOn, p.Source, tc.want, tc.chaosOn, tc.sourceHas)
			}
		})
	}
	t.Run("no answer", func(t *testing.T) {
		_, _, err := DetectProfile(t.Context(), fakeServer(t, func(string) map[string]any { return nil }))
		if !errors.Is(err, ErrInvalidScenario) || !strings.Contains(err.Error(), "did not answer the inspect probe") {
			t.Fatalf("err = %v, want a refusal naming the probe", err)
		}
	})
}

func TestProfileApplicability(t *testing.T) {
	up, _ := ProfileByName(ProfileUpstream)
	withPid := up.forTarget(false, 4242, false)
	noPid := up.forTarget(false, 0, false)
	cases := []struct {
		p       Profile
		fault   string
		applies bool
		why     string
	}{
		{withPid, protocol.FaultCrash, true, ""},
		{withPid, protocol.FaultClientBurst, true, ""},
		{withPid, protocol.FaultHangQueue, false, "needs Corral's chaos command"},
		{noPid, protocol.FaultCrash, false, "pass --target-pid"},
		{noPid, protocol.FaultManagerSigterm, false, "pass --target-pid"},
	}
	for _, tc := range cases {
		why := tc.p.Applicable(tc.fault)
		if (why == "") != tc.applies || !strings.Contains(why, tc.why) {
			t.Errorf("%s with levels %v: Applicable = %q, want applies=%v (%q)", tc.fault, tc.p.Levels, why, tc.applies, tc.why)
		}
	}
	plan := markApplicability([]PlanEntry{
		{Kind: KindFault, F: protocol.FaultHangQueue, Target: 1},
		{Kind: KindFault, F: protocol.FaultCrash, Target: 1},
		{Kind: KindCommand, F: protocol.TypeInspect},
		{Kind: KindCommand, F: protocol.TypeStatus, Target: 1},
		{Kind: KindFault, F: protocol.FaultManagerSigterm},
	}, withPid)
	var marked []string
	for _, e := range plan {
		if e.NotApplicable != "" {
			marked = append(marked, e.F)
		}
	}
	if want := []string{protocol.FaultHangQueue, protocol.TypeInspect}; !slices.Equal(marked, want) {
		t.Fatalf("not applicable = %v, want %v", marked, want)
	}
	corral, _ := ProfileByName(ProfileCorral)
	if why := corral.forTarget(true, 0, true).Applicable(protocol.FaultManagerSigterm); why != "" {
		t.Errorf("embedded corral: manager_sigterm not applicable: %s", why)
	}
	if _, err := ProfileByName("python"); !errors.Is(err, ErrInvalidScenario) || !strings.Contains(err.Error(), "--profile") {
		t.Errorf("unknown profile: err = %v", err)
	}
}

func TestInitTemplate(t *testing.T) {
	m := InitTemplate("rtsp://cam")
	get := func(m map[string]any, path ...string) any {
		var v any = m
		for _, k := range path {
			v = v.(map[string]any)[k]
		}
		return v
	}
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"video_configuration", "type"}, "VideoConfiguration"},
		{[]string{"video_configuration", "video_reference"}, "rtsp://cam"},
		{[]string{"processing_configuration", "type"}, "WorkflowConfiguration"},
		{[]string{"sink_configuration", "type"}, "MemorySinkConfiguration"},
		{[]string{"sink_configuration", "results_buffer_size"}, float64(64)},
	} {
		if got := get(m, c.path...); got != c.want {
			t.Errorf("%s = %v, want %v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if _, ok := get(m, "processing_configuration", "workflow_specification").(map[string]any); !ok {
		t.Error("processing_configuration has no workflow_specification")
	}

	// A scenario's init: mapping merges over the template; null deletes.
	p, _ := ProfileByName(ProfileUpstream)
	got := p.initFields("synthetic://1x1", map[string]any{
		"processing_configuration": map[string]any{"workflow_specification": nil, "workspace_name": "w", "workflow_id": "f"},
		"sink_configuration":       map[string]any{"results_buffer_size": 8},
	})
	if get(got, "processing_configuration", "workspace_name") != "w" || get(got, "processing_configuration", "type") != "WorkflowConfiguration" {
		t.Errorf("override not merged: %v", got["processing_configuration"])
	}
	if _, ok := got["processing_configuration"].(map[string]any)["workflow_specification"]; ok {
		t.Error("null did not delete workflow_specification")
	}
	if get(got, "sink_configuration", "results_buffer_size") != 8 || get(got, "video_configuration", "video_reference") != "synthetic://1x1" {
		t.Errorf("override or video lost: %v", got)
	}
	if get(p.Init, "video_configuration", "video_reference") != "" {
		t.Error("initFields changed the profile's template")
	}
}

// procs builds census rows: pid, ppid, start.
func censusRows(rows ...[3]int) []launch.ProcInfo {
	var out []launch.ProcInfo
	for _, r := range rows {
		out = append(out, launch.ProcInfo{Pid: r[0], PPid: r[1], Pgid: 100, State: "S", Start: uint64(r[2])})
	}
	return out
}

func TestWorkerMapCensusDiff(t *testing.T) {
	m := newWorkerMap()
	// One init, one new child: mapped.
	m.observeInit(1, OpOK, "a", censusRows(), censusRows([3]int{201, 100, 5}))
	// Two overlapping inits see the same two new children: ambiguous...
	both := censusRows([3]int{201, 100, 5}, [3]int{202, 100, 6}, [3]int{203, 100, 6})
	m.observeInit(3, OpOK, "b", censusRows([3]int{201, 100, 5}), both)
	m.observeInit(4, OpOK, "c", censusRows([3]int{201, 100, 5}), both)
	for _, id := range []string{"b", "c"} {
		if _, _, err := m.find(id); !errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), "did not tell them apart") {
			t.Fatalf("%s: err = %v, want not applicable (ambiguous)", id, err)
		}
	}
	// ... until a later init with a single candidate settles one of them
	// and elimination settles the other.
	m.observeInit(5, OpFail, "d", censusRows([3]int{201, 100, 5}), censusRows([3]int{201, 100, 5}, [3]int{203, 100, 6}))
	m.mu.Lock()
	b, c, d := m.byID["b"], m.byID["c"], m.byID["d"]
	m.mu.Unlock()
	if d.proc.Pid != 203 || b.proc.Pid != 202 || c.proc.Pid != 202 && c.proc.Pid != 0 {
		t.Fatalf("b=%d c=%d d=%d, want d=203 (the phantom's process) and b=202", b.proc.Pid, c.proc.Pid, d.proc.Pid)
	}
	// A process and the one it spawned in the same window (a fork server
	// and its worker, or a worker and its helper): never a guess.
	m2 := newWorkerMap()
	m2.observeInit(1, OpOK, "e", nil, censusRows([3]int{300, 100, 7}, [3]int{301, 300, 8}))
	if _, _, err := m2.find("e"); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("e: err = %v, want not applicable", err)
	}
	// No new process: not applicable, saying so.
	m2.observeInit(2, OpOK, "f", censusRows([3]int{301, 300, 8}), censusRows([3]int{301, 300, 8}))
	if _, _, err := m2.find("f"); !errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), "no new process") {
		t.Errorf("f: err = %v", err)
	}
	if _, _, err := m2.find("never"); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("unknown id: err = %v", err)
	}
}

func TestWorkerMapConfirmsStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	me, err := launch.Stat(cmd.Process.Pid)
	if err != nil || me.Start == 0 {
		t.Fatalf("stat: %+v %v", me, err)
	}
	m := newWorkerMap()
	m.observeInit(1, OpOK, "live", nil, []launch.ProcInfo{me})
	pid, _, how, err := m.findWorker(t.Context(), "live")
	if err != nil || pid != me.Pid || !strings.Contains(how, "init op 1") || !strings.Contains(how, "start time confirmed") {
		t.Fatalf("findWorker = %d %q %v", pid, how, err)
	}
	reused := me
	reused.Start++
	m.observeInit(2, OpOK, "reused", nil, []launch.ProcInfo{reused})
	if _, _, err := m.find("reused"); !errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), "reused") {
		t.Fatalf("reused pid: err = %v", err)
	}
}

func TestCheckPortOwner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	if err := checkPortOwner(os.Getpid(), addr); err != nil {
		t.Fatalf("this process listens on %s: %v", addr, err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	err = checkPortOwner(cmd.Process.Pid, addr)
	if !errors.Is(err, ErrNotPortOwner) || !strings.Contains(err.Error(), "owned by pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("err = %v, want a refusal naming pid %d", err, os.Getpid())
	}
	ln.Close()
	if err := checkPortOwner(os.Getpid(), addr); !errors.Is(err, ErrNotPortOwner) || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("closed port: err = %v", err)
	}
}
