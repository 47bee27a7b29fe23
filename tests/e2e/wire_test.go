package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// envelope is a decoded response frame, kept loose so tests can see
// exactly which keys the server sent.
type envelope struct {
	Keys     map[string]json.RawMessage
	Response map[string]any
	// PipelineID is nil for JSON null.
	PipelineID *string
	RequestID  string
}

func (e envelope) status() string    { s, _ := e.Response["status"].(string); return s }
func (e envelope) errorType() string { s, _ := e.Response["error_type"].(string); return s }

// frame returns header and body of one request frame.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body))), body...)
}

// dial connects to addr with a bounded dial and a deadline on every
// later step.
func dial(t testing.TB, addr string, deadline time.Duration) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(deadline))
	return conn
}

// rawCall sends body as one frame and reads the answer frame. The header
// must arrive whole in the first read, as the upstream client requires.
func rawCall(t testing.TB, addr string, body []byte) envelope {
	t.Helper()
	conn := dial(t, addr, requestTimeout)
	defer conn.Close()
	if _, err := conn.Write(frame(body)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	env, err := readEnvelope(conn)
	if err != nil {
		t.Fatalf("request %.200s: %v", body, err)
	}
	return env
}

// rawJSON marshals req and calls rawCall.
func rawJSON(t testing.TB, addr string, req map[string]any) envelope {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return rawCall(t, addr, body)
}

// errNoFrame is returned by readEnvelope when the server closed the
// connection without answering.
var errNoFrame = errors.New("connection closed without a response frame")

// readEnvelope reads one response frame: the 4-byte header with exactly one
// Read (the upstream client's sock.recv(4)), then the body, then checks
// the envelope's three keys.
func readEnvelope(conn net.Conn) (envelope, error) {
	var hdr [4]byte
	n, err := conn.Read(hdr[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return envelope{}, errNoFrame
	}
	if n != 4 {
		return envelope{}, fmt.Errorf("first read of the header returned %d bytes (err %v); the server must write header and body at once", n, err)
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size == 0 || size > 64<<20 {
		return envelope{}, fmt.Errorf("response header announces %d bytes", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(conn, body); err != nil {
		return envelope{}, fmt.Errorf("read response body of %d bytes: %w", size, err)
	}
	return decodeEnvelope(body)
}

// decodeEnvelope checks the envelope contract: all three keys present,
// request_id a non-empty string, response an object with a status,
// pipeline_id a string or null.
func decodeEnvelope(body []byte) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(body, &env.Keys); err != nil {
		return env, fmt.Errorf("response is not a JSON object: %v: %.200s", err, body)
	}
	for _, k := range []string{"request_id", "response", "pipeline_id"} {
		if _, ok := env.Keys[k]; !ok {
			return env, fmt.Errorf("envelope lacks %q: %.300s", k, body)
		}
	}
	if err := json.Unmarshal(env.Keys["request_id"], &env.RequestID); err != nil || env.RequestID == "" {
		return env, fmt.Errorf("request_id is not a non-empty string: %s", env.Keys["request_id"])
	}
	if err := json.Unmarshal(env.Keys["response"], &env.Response); err != nil || env.Response == nil {
		return env, fmt.Errorf("response is not an object: %.300s", env.Keys["response"])
	}
	if err := json.Unmarshal(env.Keys["pipeline_id"], &env.PipelineID); err != nil {
		return env, fmt.Errorf("pipeline_id is neither a string nor null: %.300s", env.Keys["pipeline_id"])
	}
	switch env.status() {
	case "success":
	case "failure":
		if env.errorType() == "" {
			return env, fmt.Errorf("failure without error_type: %.300s", body)
		}
	default:
		return env, fmt.Errorf("response.status is %q: %.300s", env.Response["status"], body)
	}
	return env, nil
}
