package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"unicode/utf8"
)

// Command types of the upstream protocol and Corral's extensions.
const (
	TypeListPipelines = "list_pipelines"
	TypeInit          = "init"
	TypeWebRTC        = "webrtc"
	TypeMute          = "mute"
	TypeResume        = "resume"
	TypeStatus        = "status"
	TypeConsumeResult = "consume_result"
	TypeTerminate     = "terminate"
	TypeInspect       = "inspect"
	TypeChaos         = "chaos"
)

// NeedsPipelineID reports whether a request of type t must carry pipeline_id.
func NeedsPipelineID(t string) bool {
	switch t {
	case TypeInit, TypeWebRTC, TypeListPipelines, TypeInspect:
		return false
	}
	return true
}

// KnownType reports whether t is a command this protocol defines.
func KnownType(t string) bool {
	switch t {
	case TypeListPipelines, TypeInit, TypeWebRTC, TypeMute, TypeResume, TypeStatus,
		TypeConsumeResult, TypeTerminate, TypeInspect, TypeChaos:
		return true
	}
	return false
}

// Request is one decoded request. Fields holds the whole JSON object as
// received, so that command-specific fields (init configuration, chaos
// parameters, excluded_fields) reach the worker untouched.
type Request struct {
	Type        string
	PipelineID  string
	Traceparent string
	Fields      map[string]json.RawMessage
}

// ParseRequest decodes and validates one request frame body. Every error is
// an *Error of type invalid_payload.
func ParseRequest(body []byte) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, InvalidPayload("request is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, InvalidPayload("request is not a JSON object")
	}
	if dec.More() {
		return nil, InvalidPayload("request has data after the JSON object")
	}
	req := &Request{Fields: fields}
	var err error
	if req.Type, err = stringField(fields, "type"); err != nil {
		return nil, err
	}
	if req.Type == "" {
		return nil, InvalidPayload("request has no \"type\"")
	}
	if !KnownType(req.Type) {
		return nil, InvalidPayload(fmt.Sprintf("unknown request type %q", clip(req.Type)))
	}
	if req.PipelineID, err = stringField(fields, "pipeline_id"); err != nil {
		return nil, err
	}
	if NeedsPipelineID(req.Type) && req.PipelineID == "" {
		return nil, InvalidPayload(fmt.Sprintf("request of type %q has no \"pipeline_id\"", req.Type))
	}
	if req.Traceparent, err = stringField(fields, "traceparent"); err != nil {
		return nil, err
	}
	return req, nil
}

// stringField reads an optional string field; null counts as absent.
func stringField(fields map[string]json.RawMessage, key string) (string, error) {
	raw, ok := fields[key]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", InvalidPayload(fmt.Sprintf("%q must be a string", key))
	}
	return s, nil
}

// Decode unmarshals the request's fields into v (a struct with json tags).
func (r *Request) Decode(v any) error {
	body, err := json.Marshal(r.Fields)
	if err != nil {
		return InvalidPayload(err.Error())
	}
	if err := json.Unmarshal(body, v); err != nil {
		return InvalidPayload(fmt.Sprintf("malformed %s request: %v", r.Type, err))
	}
	return nil
}

// Clone returns a copy whose Fields map may be modified freely.
func (r *Request) Clone() *Request {
	c := *r
	c.Fields = maps.Clone(r.Fields)
	return &c
}

// MarshalJSON writes the request as one flat object.
func (r *Request) MarshalJSON() ([]byte, error) {
	out := maps.Clone(r.Fields)
	if out == nil {
		out = map[string]json.RawMessage{}
	}
	set := func(k, v string) {
		if v != "" {
			out[k], _ = json.Marshal(v)
		}
	}
	set("type", r.Type)
	set("pipeline_id", r.PipelineID)
	set("traceparent", r.Traceparent)
	return json.Marshal(out)
}

// Status values of a response body.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Response is the body under the envelope's "response" key, plus the
// envelope's pipeline_id. Fields holds the command-specific keys of a success
// (pipelines, report, outputs, frames_metadata, ...).
type Response struct {
	Status             string
	ErrorType          string
	ErrorClass         string
	ErrorMessage       string
	PublicErrorMessage string
	// TraceID links the response to its trace (a Corral extension).
	TraceID string
	Fields  map[string]any
	// PipelineID is written to the envelope, not the body; "" is null.
	PipelineID string
}

// OK reports whether the response is a success.
func (r Response) OK() bool { return r.Status == StatusSuccess }

// Err returns the failure as an *Error, or nil for a success.
func (r Response) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Type: r.ErrorType, Class: r.ErrorClass, Message: r.ErrorMessage, Public: r.PublicErrorMessage}
}

// Success builds a success response with the given body fields.
func Success(fields map[string]any) Response {
	return Response{Status: StatusSuccess, Fields: fields}
}

// MarshalJSON writes the response body as one flat object.
func (r Response) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(r.Fields)+6)
	maps.Copy(out, r.Fields)
	out["status"] = r.Status
	put := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	put("error_type", r.ErrorType)
	put("error_class", r.ErrorClass)
	put("error_message", r.ErrorMessage)
	put("public_error_message", r.PublicErrorMessage)
	put("trace_id", r.TraceID)
	return json.Marshal(out)
}

// UnmarshalJSON reads a flat response body.
func (r *Response) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	return r.fromMap(m)
}

func (r *Response) fromMap(m map[string]any) error {
	if m == nil {
		return fmt.Errorf("protocol: response is null")
	}
	take := func(k string) string {
		v, _ := m[k].(string)
		delete(m, k)
		return v
	}
	*r = Response{
		Status:             take("status"),
		ErrorType:          take("error_type"),
		ErrorClass:         take("error_class"),
		ErrorMessage:       take("error_message"),
		PublicErrorMessage: take("public_error_message"),
		TraceID:            take("trace_id"),
		Fields:             m,
		PipelineID:         r.PipelineID,
	}
	return nil
}

// DecodeWorkerReply decodes a worker's reply frame body, keeping every
// number in Fields as a json.Number: relaying the reply to a client then
// writes each number exactly as the worker wrote it, so a float (25.0)
// stays a float for a Python client (PROTOCOL.md: numbers that are floats
// upstream are JSON floats).
func DecodeWorkerReply(body []byte) (WorkerReply, error) {
	var raw struct {
		RequestID string          `json:"request_id"`
		Response  json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return WorkerReply{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Response))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return WorkerReply{}, err
	}
	rep := WorkerReply{RequestID: raw.RequestID}
	return rep, rep.Response.fromMap(m)
}

// Envelope is one response frame: all three keys are always present.
type Envelope struct {
	RequestID  string   `json:"request_id"`
	Response   Response `json:"response"`
	PipelineID *string  `json:"pipeline_id"`
}

// NewEnvelope wraps resp for the wire.
func NewEnvelope(requestID string, resp Response) Envelope {
	env := Envelope{RequestID: requestID, Response: resp}
	if resp.PipelineID != "" {
		id := resp.PipelineID
		env.PipelineID = &id
	}
	return env
}

// clip shortens user-supplied text quoted in error messages.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
