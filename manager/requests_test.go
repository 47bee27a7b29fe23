package manager_test

import (
	"encoding/json"
	"testing"

	"github.com/corral-dev/corral/manager/protocol"
)

func request(t *testing.T, body map[string]any) *protocol.Request {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := protocol.ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func initRequest(t *testing.T) *protocol.Request {
	return request(t, map[string]any{"type": "init", "video_configuration": map[string]any{"video_reference": "synthetic://64x48?fps=50"}})
}

func chaosRequest(t *testing.T, id, fault string) *protocol.Request {
	return request(t, map[string]any{"type": "chaos", "pipeline_id": id, "fault": fault})
}
