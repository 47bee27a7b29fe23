package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
)

// Issue 10, "What it must show": decoded media through the worker's ffmpeg
// child. `make test` installs ffmpeg when it can.

// mediaBound bounds every wait of these tests (a loaded 2-core machine).
const mediaBound = 30 * time.Second

// needFFmpeg returns ffmpeg's path, skipping (failing under CI=true)
// without it.
func needFFmpeg(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg is required under CI (make test installs it): %v", err)
		}
		t.Skipf("ffmpeg not found (%v); `make test` installs it as root (apt-get install ffmpeg); CI fails instead of skipping", err)
	}
	return path
}

// call sends one request and returns its response body.
func call(t *testing.T, addr string, req map[string]any) map[string]any {
	t.Helper()
	return rawJSON(t, addr, req).Response
}

// status returns the status report of id.
func status(t *testing.T, addr, id string) map[string]any {
	t.Helper()
	r := call(t, addr, map[string]any{"type": "status", "pipeline_id": id})
	report, _ := r["report"].(map[string]any)
	if report == nil {
		t.Fatalf("status of %s: %v", id, r)
	}
	return report
}

// waitFor polls cond (each call makes requests) until it holds, failing
// after mediaBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(mediaBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", mediaBound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func source0(report map[string]any) map[string]any {
	list := listOf(report["sources_metadata"])
	if len(list) == 0 {
		return map[string]any{}
	}
	return list[0]
}

func eventsOf(report map[string]any, kind string) int {
	n := 0
	for _, e := range listOf(report["video_source_status_updates"]) {
		if e["event_type"] == kind {
			n++
		}
	}
	return n
}

// An .mp4 made by ffmpeg's test source plays to its end; its results are
// consumed, then the ended pipeline leaves the table.
func TestMP4Plays(t *testing.T) {
	t.Parallel()
	ffmpeg := needFFmpeg(t)
	clip := filepath.Join(t.TempDir(), "testsrc.mp4")
	ctx, cancel := context.WithTimeout(t.Context(), mediaBound)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "testsrc=size=160x120:rate=25", "-t", "2", "-c:v", "mpeg4", "-pix_fmt", "yuv420p", clip).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", clip, err, out)
	}
	s := startServer(t, []string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=200ms"})
	req := initRequest(clip)
	req["video_configuration"].(map[string]any)["source_buffer_filling_strategy"] = "WAIT"
	req["video_configuration"].(map[string]any)["source_buffer_consumption_strategy"] = "LAZY"
	id := wantSomeID(t, rawJSON(t, s.Addr, req))

	var props map[string]any
	var frames []float64
	waitFor(t, "the clip to end", func() bool {
		for {
			r := call(t, s.Addr, map[string]any{"type": "consume_result", "pipeline_id": id})
			meta := listOf(r["frames_metadata"])
			if len(meta) == 0 {
				break
			}
			frames = append(frames, meta[0]["frame_id"].(float64))
		}
		report := status(t, s.Addr, id)
		src := source0(report)
		props, _ = src["source_properties"].(map[string]any)
		if src["state"] == "ERROR" {
			t.Fatalf("the clip failed: %v", report["video_source_status_updates"])
		}
		return src["state"] == "ENDED"
	})
	if props["is_file"] != true || props["is_reconnectable"] != false || props["fps"] != 25.0 || props["total_frames"] != 50.0 {
		t.Errorf("source_properties = %v, want a 25 fps file of 50 frames", props)
	}
	waitFor(t, "the ended pipeline to leave list_pipelines", func() bool {
		for {
			r := call(t, s.Addr, map[string]any{"type": "consume_result", "pipeline_id": id})
			meta := listOf(r["frames_metadata"])
			if len(meta) == 0 {
				break
			}
			frames = append(frames, meta[0]["frame_id"].(float64))
		}
		return !slices.Contains(stringsOf(call(t, s.Addr, map[string]any{"type": "list_pipelines"})["pipelines"]), id)
	})
	if len(frames) != 50 || frames[0] != 1 || frames[49] != 50 {
		t.Errorf("consumed %d frames (%v...), want frames 1..50", len(frames), frames[:min(3, len(frames))])
	}
}

// An rtsp:// URL to a closed loopback port: init succeeds, the source
// reports ERROR with ffmpeg's reason within the bound.
func TestRTSPClosedPortReportsError(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	s := startServer(t, []string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=30s"})
	ref := fmt.Sprintf("rtsp://127.0.0.1:%d/cam", closedPort(t))
	env := rawJSON(t, s.Addr, initRequest(ref))
	if env.status() != "success" {
		t.Fatalf("init %s: %v, want success as upstream", ref, env.Response)
	}
	id := wantSomeID(t, env)
	begin := time.Now()
	var reason string
	waitFor(t, "ERROR", func() bool {
		report := status(t, s.Addr, id)
		for _, e := range listOf(report["video_source_status_updates"]) {
			if p, _ := e["payload"].(map[string]any); e["severity"] == 40.0 && p != nil {
				reason, _ = p["error_message"].(string)
			}
		}
		return source0(report)["state"] == "ERROR" && reason != ""
	})
	t.Logf("ERROR after %s: %s", time.Since(begin).Round(time.Millisecond), reason)
}

// liveY4M serves an endless YUV4MPEG2 stream at 25 fps over HTTP; frozen,
// it keeps connections open and sends nothing (a camera that stalls).
type liveY4M struct {
	header []byte
	frames [][]byte
	mu     sync.Mutex
	thawed chan struct{} // closed while not frozen
}

func newLiveY4M(t *testing.T) *liveY4M {
	var buf bytes.Buffer
	if err := worker.WriteY4M(&buf, 64, 48, 25, 25); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	nl := bytes.IndexByte(data, '\n') + 1
	size := len("FRAME\n") + 64*48*3/2
	l := &liveY4M{header: data[:nl], thawed: make(chan struct{})}
	close(l.thawed)
	for off := nl; off+size <= len(data); off += size {
		l.frames = append(l.frames, data[off:off+size])
	}
	return l
}

func (l *liveY4M) freeze(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.thawed:
		if on {
			l.thawed = make(chan struct{})
		}
	default:
		if !on {
			close(l.thawed)
		}
	}
}

func (l *liveY4M) gate() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.thawed
}

func (l *liveY4M) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "video/x-yuv4mpeg")
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	wroteHeader := false
	for i := 0; ; i++ {
		select {
		case <-l.gate():
		case <-r.Context().Done():
			return
		}
		if !wroteHeader {
			if _, err := w.Write(l.header); err != nil {
				return
			}
			wroteHeader = true
		}
		if _, err := w.Write(l.frames[i%len(l.frames)]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		}
	}
}

// A loopback HTTP stream that stops sending is reported stalled within its
// bound and, being reconnectable, recovers when the stream resumes.
func TestHTTPStreamStallRecovers(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	live := newLiveY4M(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: live, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		live.freeze(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})

	const stall = 1.0 // seconds
	s := startServer(t, []string{"STREAM_MANAGER_SOURCE_STALL_TIMEOUT=" + strconv.FormatFloat(stall, 'f', -1, 64)})
	ref := "http://" + ln.Addr().String() + "/live.y4m"
	id := wantSomeID(t, rawJSON(t, s.Addr, initRequest(ref)))
	waitFor(t, "frames from the stream", func() bool {
		report := status(t, s.Addr, id)
		if source0(report)["state"] == "ERROR" {
			t.Fatalf("the stream failed: %v", report["video_source_status_updates"])
		}
		l := listOf(report["latency_reports"])
		return len(l) == 1 && l[0]["e2e_latency"] != nil
	})
	if props, _ := source0(status(t, s.Addr, id))["source_properties"].(map[string]any); props["is_reconnectable"] != true {
		t.Errorf("source_properties = %v, want is_reconnectable", props)
	}

	live.freeze(true)
	frozenAt := time.Now()
	waitFor(t, "the stall report", func() bool {
		return eventsOf(status(t, s.Addr, id), protocol.EventSourceStalled) > 0
	})
	reported := time.Since(frozenAt)
	// The watchdog looks every quarter timeout; the rest is the machine.
	if bound := time.Duration(stall*float64(time.Second)) + 5*time.Second; reported > bound {
		t.Errorf("stall reported after %s, bound %s", reported, bound)
	}
	t.Logf("stall reported %s after the stream froze", reported.Round(time.Millisecond))
	if report := status(t, s.Addr, id); report[protocol.ReportKeyStalled] == true {
		t.Errorf("a reconnectable source's stall fails health: %v", report)
	}

	live.freeze(false)
	waitFor(t, "recovery: RUNNING with a second connection", func() bool {
		report := status(t, s.Addr, id)
		return source0(report)["state"] == "RUNNING" && eventsOf(report, "SOURCE_CONNECTION_ESTABLISHED") >= 2
	})
	waitFor(t, "results after recovery", func() bool {
		r := call(t, s.Addr, map[string]any{"type": "consume_result", "pipeline_id": id})
		for _, m := range listOf(r["frames_metadata"]) {
			ts, err := time.ParseInLocation(pyTimeLayout, str(m["frame_timestamp"]), time.Local)
			if err == nil && ts.After(frozenAt) {
				return true
			}
		}
		return false
	})
}
