package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// fakeManager answers every request with a success envelope and hands the
// decoded request to the test.
type fakeManager struct {
	addr     string
	requests chan map[string]any
}

func startFakeManager(t *testing.T) *fakeManager {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{addr: ln.Addr().String(), requests: make(chan map[string]any, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed by cleanup
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if body, err := protocol.ReadFrame(conn, 0); err == nil {
				var req map[string]any
				_ = json.Unmarshal(body, &req)
				m.requests <- req
				id := "p-1"
				env, _ := json.Marshal(protocol.NewEnvelope("r-1", protocol.Response{Status: protocol.StatusSuccess, PipelineID: id}))
				_ = protocol.WriteFrame(conn, env)
			}
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return m
}

// next returns the request the fake manager received last, bounded.
func (m *fakeManager) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case r := <-m.requests:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the fake manager received no request in 10s")
		return nil
	}
}

// Issue 8: `corral client --addr HOST:PORT list` failed with `unknown
// command "--addr"`; flags may now come before or after the command.
func TestClientFlagsBeforeOrAfterTheCommand(t *testing.T) {
	m := startFakeManager(t)
	for _, tc := range []struct {
		args     []string
		typ, id  string
		excluded []any
	}{
		{[]string{"--addr", m.addr, "list"}, "list_pipelines", "", nil},
		{[]string{"list", "--addr", m.addr}, "list_pipelines", "", nil},
		{[]string{"--timeout", "5s", "--addr=" + m.addr, "status", "p-1"}, "status", "p-1", nil},
		{[]string{"--addr", m.addr, "consume", "--exclude", "a,b", "p-1", "--timeout", "5s"}, "consume_result", "p-1", []any{"a", "b"}},
		{[]string{"-addr", m.addr, "pause", "p-1"}, "mute", "p-1", nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"client"}, tc.args...), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, want 0\nstderr: %s", code, stderr.String())
			}
			req := m.next(t)
			if req["type"] != tc.typ {
				t.Errorf("request type %v, want %s (request %v)", req["type"], tc.typ, req)
			}
			if got, _ := req["pipeline_id"].(string); got != tc.id {
				t.Errorf("pipeline_id %q, want %q", got, tc.id)
			}
			if tc.excluded != nil {
				got, _ := json.Marshal(req["excluded_fields"])
				want, _ := json.Marshal(tc.excluded)
				if !bytes.Equal(got, want) {
					t.Errorf("excluded_fields %s, want %s", got, want)
				}
			}
			var env protocol.Envelope
			if err := json.Unmarshal(stdout.Bytes(), &env); err != nil || !env.Response.OK() {
				t.Errorf("stdout is not the success envelope (%v): %s", err, stdout.String())
			}
		})
	}
}

// client init sends upstream's full payload by default (the type literals
// upstream's model requires), and --payload sends the user's own, given
// inline or in a file.
func TestClientInitPayload(t *testing.T) {
	m := startFakeManager(t)
	initOf := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"client", "--addr", m.addr}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d, want 0\nstderr: %s", code, stderr.String())
		}
		req := m.next(t)
		if req["type"] != "init" {
			t.Fatalf("request type %v, want init", req["type"])
		}
		return req
	}
	section := func(req map[string]any, name string) map[string]any {
		s, _ := req[name].(map[string]any)
		return s
	}

	t.Run("default", func(t *testing.T) {
		req := initOf(t, "init", "--video", "synthetic://64x48", "--buffer", "8")
		vc, sink := section(req, "video_configuration"), section(req, "sink_configuration")
		if vc["type"] != "VideoConfiguration" || vc["video_reference"] != "synthetic://64x48" {
			t.Errorf("video_configuration %v, want type VideoConfiguration and the --video reference", vc)
		}
		if sink["type"] != "MemorySinkConfiguration" || sink["results_buffer_size"] != 8.0 {
			t.Errorf("sink_configuration %v, want type MemorySinkConfiguration, results_buffer_size 8", sink)
		}
		if pc := section(req, "processing_configuration"); pc["type"] != "WorkflowConfiguration" || pc["workflow_specification"] == nil {
			t.Errorf("processing_configuration %v, want type WorkflowConfiguration with a workflow_specification", pc)
		}
	})

	payload := `{"video_configuration":{"type":"VideoConfiguration","video_reference":"rtsp://cam/1"},` +
		`"processing_configuration":{"type":"WorkflowConfiguration","workspace_name":"w","workflow_id":"f"},` +
		`"sink_configuration":{"type":"MemorySinkConfiguration"},"api_key":"k"}`
	check := func(t *testing.T, req map[string]any) {
		t.Helper()
		if vc := section(req, "video_configuration"); vc["video_reference"] != "rtsp://cam/1" {
			t.Errorf("video_configuration %v is not the payload's", vc)
		}
		if pc := section(req, "processing_configuration"); pc["workflow_id"] != "f" {
			t.Errorf("processing_configuration %v is not the payload's", pc)
		}
		if req["api_key"] != "k" {
			t.Errorf("api_key %v, want k", req["api_key"])
		}
	}
	t.Run("inline", func(t *testing.T) {
		check(t, initOf(t, "init", "--payload", payload, "--video", "ignored://x"))
	})
	t.Run("file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "init.json")
		if err := os.WriteFile(file, []byte("\n"+payload+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, initOf(t, "--payload", file, "init"))
	})
}

// The usage errors of corral client are in TestRunUsageErrors.
func TestClientHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"client", "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "before or after") {
		t.Errorf("client -h: exit %d, stderr %q; want 0 and the usage", code, stderr.String())
	}
}
