package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHostileFrames sends malformed and abusive frames to one server: none
// may be answered with success, and the server must stay up, responsive
// and small.
func TestHostileFrames(t *testing.T) {
	t.Parallel()
	s := startServer(t, []string{"STREAM_MANAGER_SOCKET_TIMEOUT=1"})

	nested := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	cases := []struct {
		name string
		raw  []byte // the bytes written; the write side is closed after
		// want is the error_type of the answer; "" accepts any failure
		// or no answer at all (a dropped connection).
		want string
	}{
		{"4 GiB header", []byte{0xff, 0xff, 0xff, 0xff}, "invalid_payload"},
		{"zero length", []byte{0, 0, 0, 0}, "invalid_payload"},
		{"truncated body", frame([]byte(`{"type":"list_pipelines"}`))[:15], ""},
		{"truncated header", []byte{0, 0}, ""},
		{"JSON array", frame([]byte(`[{"type":"list_pipelines"}]`)), "invalid_payload"},
		{"JSON string", frame([]byte(`"list_pipelines"`)), "invalid_payload"},
		{"JSON null", frame([]byte(`null`)), "invalid_payload"},
		{"JSON number", frame([]byte(`42`)), "invalid_payload"},
		{"two objects", frame([]byte(`{"type":"list_pipelines"}{"type":"list_pipelines"}`)), "invalid_payload"},
		{"type is a number", frame([]byte(`{"type":5}`)), "invalid_payload"},
		{"type is an object", frame([]byte(`{"type":{"type":"list_pipelines"}}`)), "invalid_payload"},
		{"pipeline_id is a number", frame([]byte(`{"type":"status","pipeline_id":7}`)), "invalid_payload"},
		{"pipeline_id is a list", frame([]byte(`{"type":"status","pipeline_id":["a"]}`)), "invalid_payload"},
		{"video_configuration is a string", frame([]byte(`{"type":"init","video_configuration":"synthetic://160x120"}`)), "invalid_payload"},
		{"excluded_fields is a string", frame([]byte(`{"type":"consume_result","pipeline_id":"x","excluded_fields":"image"}`)), ""},
		{"invalid UTF-8", frame([]byte("{\"type\":\"list_pipelines\",\"x\":\"\xff\xfe\"}")), "invalid_payload"},
		{"invalid UTF-8 in type", frame([]byte("{\"type\":\"list_pipelines\xff\"}")), "invalid_payload"},
		{"100 kB pipeline_id", frame([]byte(`{"type":"status","pipeline_id":"` + strings.Repeat("a", 100_000) + `"}`)), ""},
		{"100k nested arrays", frame([]byte(`{"type":"list_pipelines","x":` + nested + `}`)), "invalid_payload"},
		{"100k nested arrays as the body", frame([]byte(nested)), "invalid_payload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, s.Addr, 5*time.Second)
			defer conn.Close()
			if _, err := conn.Write(tc.raw); err != nil {
				t.Fatalf("write: %v", err)
			}
			_ = conn.(*net.TCPConn).CloseWrite()
			env, err := readEnvelope(conn)
			switch {
			case errors.Is(err, errNoFrame) && tc.want == "":
				t.Logf("dropped without an answer")
			case err != nil:
				t.Fatalf("answer: %v", err)
			case env.status() == "success":
				t.Errorf("hostile frame answered with success: %v", env.Response)
			case tc.want != "" && env.errorType() != tc.want:
				t.Errorf("error_type = %q, want %q: %v", env.errorType(), tc.want, env.Response)
			default:
				t.Logf("answered %s: %.120s", env.errorType(), env.Response["error_message"])
			}
		})
	}

	t.Run("header trickled byte by byte", func(t *testing.T) {
		// Slow is not hostile: a frame written in pieces within the socket
		// timeout is a request like any other.
		conn := dial(t, s.Addr, 5*time.Second)
		defer conn.Close()
		for _, b := range frame([]byte(`{"type":"list_pipelines"}`)) {
			if _, err := conn.Write([]byte{b}); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		env, err := readEnvelope(conn)
		if err != nil || env.status() != "success" {
			t.Errorf("list_pipelines written byte by byte = %v, %v; want success", env.Response, err)
		}
	})

	t.Run("stalled client is dropped", func(t *testing.T) {
		conn := dial(t, s.Addr, 5*time.Second)
		defer conn.Close()
		if _, err := conn.Write([]byte{0, 0}); err != nil {
			t.Fatalf("write: %v", err)
		}
		start := time.Now()
		n, err := conn.Read(make([]byte, 64))
		took := time.Since(start)
		t.Logf("stalled connection closed by the server after %v (socket timeout 1s)", took)
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("read = %d bytes, %v; want EOF", n, err)
		}
	})

	t.Run("200 idle connections", func(t *testing.T) {
		idle := make([]net.Conn, 0, 200)
		defer func() {
			for _, c := range idle {
				_ = c.Close()
			}
		}()
		for range 200 {
			idle = append(idle, dial(t, s.Addr, 5*time.Second))
		}
		start := time.Now()
		env := rawJSON(t, s.Addr, map[string]any{"type": "list_pipelines"})
		took := time.Since(start)
		t.Logf("list_pipelines with 200 idle connections open: %v", took)
		if env.status() != "success" {
			t.Errorf("list_pipelines = %v", env.Response)
		}
		if took >= time.Second {
			t.Errorf("list_pipelines took %v with 200 idle connections, want < 1s", took)
		}
	})

	if !s.alive() {
		t.Fatalf("server exited during the hostile frames")
	}
	if env := rawJSON(t, s.Addr, map[string]any{"type": "list_pipelines"}); env.status() != "success" {
		t.Errorf("list_pipelines after the hostile frames = %v", env.Response)
	}
	// Failed inits (wrong types) must not leave workers behind.
	if ws := s.workers(t); len(ws) != 0 {
		t.Errorf("pipelines left after the hostile frames: %v", ws)
	}
	rss := vmRSS(t, s.Pid)
	t.Logf("server VmRSS after the hostile frames: %d kB", rss)
	if rss >= 200<<10 {
		t.Errorf("server VmRSS = %d kB, want < 200 MB", rss)
	}
}

// vmRSS returns VmRSS of pid in kB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
