package manager_test

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager/protocol"
)

// raw sends bytes on a fresh connection and returns the decoded envelope
// (as a map, to see exactly which keys are present), or nil when the
// server closed without answering.
func raw(t *testing.T, addr string, payload []byte) map[string]any {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.CloseWrite() // a truncated body ends here
	}
	body, err := protocol.ReadFrame(conn, 0)
	if err == io.EOF || err == protocol.ErrTruncated {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("answer is not JSON: %q", body)
	}
	for _, k := range []string{"request_id", "response", "pipeline_id"} {
		if _, ok := env[k]; !ok {
			t.Fatalf("envelope %v lacks %q", env, k)
		}
	}
	return env
}

func errorType(env map[string]any) string {
	resp, _ := env["response"].(map[string]any)
	s, _ := resp["error_type"].(string)
	if resp["status"] == "success" {
		return "success"
	}
	return s
}

func TestHostileFrames(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameBytes = 1 << 20
	r := testkit.StartManager(t, cfg, memory(t))
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	frame := func(s string) []byte { return protocol.AppendFrame(nil, []byte(s)) }
	longID := strings.Repeat("x", 100_000)
	tests := []struct {
		name    string
		payload []byte
		want    string // error_type, or "" for no answer
	}{
		{"4 GiB header", header(0xFFFFFFFF), protocol.ErrTypeInvalidPayload},
		{"zero length", header(0), protocol.ErrTypeInvalidPayload},
		{"truncated body", append(header(100), `{"type":`...), ""},
		{"not an object", frame(`[1,2,3]`), protocol.ErrTypeInvalidPayload},
		{"not json", frame(`type=status`), protocol.ErrTypeInvalidPayload},
		{"wrong types", frame(`{"type":["status"],"pipeline_id":1}`), protocol.ErrTypeInvalidPayload},
		{"invalid utf-8", frame("{\"type\":\"status\",\"pipeline_id\":\"\xc3\x28\"}"), protocol.ErrTypeInvalidPayload},
		{"100 kB id", frame(`{"type":"status","pipeline_id":"` + longID + `"}`), protocol.ErrTypeNotFound},
		{"deep nesting", frame(`{"type":"status","pipeline_id":"p","x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`), protocol.ErrTypeInvalidPayload},
		{"missing type", frame(`{"pipeline_id":"p"}`), protocol.ErrTypeInvalidPayload},
		{"unknown type", frame(`{"type":"reboot"}`), protocol.ErrTypeInvalidPayload},
		{"missing pipeline id", frame(`{"type":"mute"}`), protocol.ErrTypeInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := raw(t, r.Client.Addr, tt.payload)
			if tt.want == "" {
				if env != nil {
					t.Fatalf("answered %v, want the connection closed", env)
				}
				return
			}
			if env == nil || errorType(env) != tt.want {
				t.Fatalf("answer = %v, want %s", env, tt.want)
			}
		})
	}
	// The manager still answers after all of that.
	if _, err := r.Client.List(t.Context()); err != nil {
		t.Fatalf("list after hostile frames: %v", err)
	}
}

func TestStalledClientDropped(t *testing.T) {
	cfg := testConfig()
	cfg.SocketTimeout = 200 * time.Millisecond
	r := testkit.StartManager(t, cfg, memory(t))
	conn, err := net.Dial("tcp", r.Client.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0, 0}); err != nil { // two bytes, then nothing
		t.Fatal(err)
	}
	// Meanwhile other clients are served.
	if _, err := r.Client.List(t.Context()); err != nil {
		t.Fatalf("list beside a stalled client: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(make([]byte, 1))
	if err != io.EOF || n != 0 {
		t.Fatalf("stalled connection read = %d, %v; want EOF (dropped by the server)", n, err)
	}
}

func TestConnectionCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	r := testkit.StartManager(t, cfg, memory(t))
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", r.Client.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The cap is reached once the server has accepted both; a request
	// answered with "too many" proves it, a success means it raced ahead.
	deadline := time.Now().Add(wait)
	for {
		env := raw(t, r.Client.Addr, protocol.AppendFrame(nil, []byte(`{"type":"list_pipelines"}`)))
		if errorType(env) == protocol.ErrTypeInternal {
			resp := env["response"].(map[string]any)
			if !strings.Contains(resp["error_message"].(string), "STREAM_MANAGER_MAX_CONNECTIONS") {
				t.Fatalf("cap answer = %v", resp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection cap never applied")
		}
	}
	for _, c := range idle {
		c.Close()
	}
	// Once the idle connections close, requests are served again.
	deadline = time.Now().Add(wait)
	for {
		if _, err := r.Client.List(t.Context()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests not served after idle connections closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
