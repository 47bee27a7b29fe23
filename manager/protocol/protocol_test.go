package protocol_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/corral-dev/corral/manager/protocol"
)

func frame(body string) []byte { return protocol.AppendFrame(nil, []byte(body)) }

func TestReadFrame(t *testing.T) {
	big := make([]byte, 4)
	binary.BigEndian.PutUint32(big, 0xFFFFFFFF)
	tests := []struct {
		name    string
		in      []byte
		limit   int
		want    string
		wantErr error
	}{
		{"ok", frame(`{"type":"x"}`), 0, `{"type":"x"}`, nil},
		{"empty stream", nil, 0, "", io.EOF},
		{"short header", []byte{0, 0}, 0, "", protocol.ErrTruncated},
		{"zero length", []byte{0, 0, 0, 0}, 0, "", protocol.ErrEmptyFrame},
		{"truncated body", frame(`{"type":"x"}`)[:8], 0, "", protocol.ErrTruncated},
		{"4 GiB header", big, 0, "", &protocol.FrameTooLargeError{}},
		{"over limit", frame(strings.Repeat("a", 65)), 64, "", &protocol.FrameTooLargeError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.ReadFrame(iotest.OneByteReader(bytes.NewReader(tt.in)), tt.limit)
			var tooLarge *protocol.FrameTooLargeError
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case errors.As(tt.wantErr, &tooLarge):
				if !errors.As(err, &tooLarge) {
					t.Fatalf("err = %v, want FrameTooLargeError", err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// countingWriter records how many Write calls a frame took.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func TestWriteFrameIsOneWrite(t *testing.T) {
	var w countingWriter
	if err := protocol.WriteFrame(&w, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 {
		t.Fatalf("frame took %d writes, want 1 (header and body together)", w.writes)
	}
	if got := w.Bytes(); binary.BigEndian.Uint32(got[:4]) != 7 || string(got[4:]) != `{"a":1}` {
		t.Fatalf("frame = %q", got)
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, body string
		wantType   string
		wantErr    string // substring of the invalid_payload message
	}{
		{"list", `{"type":"list_pipelines"}`, "list_pipelines", ""},
		{"status", `{"type":"status","pipeline_id":"p1","extra":[1,2]}`, "status", ""},
		{"null pipeline id on init", `{"type":"init","pipeline_id":null}`, "init", ""},
		{"missing type", `{"pipeline_id":"p"}`, "", `no "type"`},
		{"unknown type", `{"type":"reboot"}`, "", "unknown request type"},
		{"missing pipeline id", `{"type":"status"}`, "", `no "pipeline_id"`},
		{"type not a string", `{"type":7}`, "", "must be a string"},
		{"pipeline id not a string", `{"type":"status","pipeline_id":{"a":1}}`, "", "must be a string"},
		{"array", `[1,2]`, "", "not a JSON object"},
		{"null", `null`, "", "not a JSON object"},
		{"not json", `hello`, "", "not a JSON object"},
		{"trailing data", `{"type":"inspect"} {}`, "", "after the JSON object"},
		{"invalid utf-8", "{\"type\":\"status\",\"pipeline_id\":\"\xff\"}", "", "UTF-8"},
		{"deep nesting", `{"type":"inspect","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, "", "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := protocol.ParseRequest([]byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if req.Type != tt.wantType {
					t.Fatalf("type = %q, want %q", req.Type, tt.wantType)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Type != protocol.ErrTypeInvalidPayload || !strings.Contains(pe.Message, tt.wantErr) {
				t.Fatalf("err = %v, want invalid_payload containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnvelopeAlwaysHasThreeKeys(t *testing.T) {
	for _, resp := range []protocol.Response{
		protocol.Success(nil),
		protocol.Failure(protocol.NotFound("x")),
		{Status: protocol.StatusSuccess, PipelineID: "p"},
	} {
		b, err := json.Marshal(protocol.NewEnvelope("r1", resp))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"request_id", "response", "pipeline_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: envelope lacks %q", b, k)
			}
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	in := protocol.Failure(protocol.NotFound("abc"))
	in.Fields = map[string]any{"extra": "v"}
	b, _ := json.Marshal(in)
	var out protocol.Response
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ErrorType != protocol.ErrTypeNotFound || out.PublicErrorMessage != "Could not find InferencePipeline with id=abc." || out.Fields["extra"] != "v" {
		t.Fatalf("round trip = %+v", out)
	}
	if !errors.Is(out.Err(), &protocol.Error{Type: protocol.ErrTypeNotFound}) {
		t.Fatalf("Err() = %v, want not_found", out.Err())
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"type":"status","pipeline_id":"x"}`, `{"type":"init"}`, `[]`, `{"type":1}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := protocol.ParseRequest(body)
		if err == nil {
			if !protocol.KnownType(req.Type) || (protocol.NeedsPipelineID(req.Type) && req.PipelineID == "") {
				t.Fatalf("accepted invalid request %q", body)
			}
			return
		}
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Type != protocol.ErrTypeInvalidPayload {
			t.Fatalf("error %v is not invalid_payload", err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frame(`{"type":"x"}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		body, err := protocol.ReadFrame(bytes.NewReader(in), 1024)
		if err == nil && (len(body) == 0 || len(body) > 1024) {
			t.Fatalf("accepted a frame of %d bytes", len(body))
		}
	})
}
