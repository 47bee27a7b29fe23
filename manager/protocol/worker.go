package protocol

import "encoding/json"

// WorkerCommand is one message from the manager to a worker over the
// worker's stdin. Request carries the client's request as received (for
// init: the whole init payload; for chaos: the fault and its parameters).
type WorkerCommand struct {
	RequestID   string                     `json:"request_id"`
	Type        string                     `json:"type"`
	Traceparent string                     `json:"traceparent,omitempty"`
	Request     map[string]json.RawMessage `json:"request,omitempty"`
}

// WorkerReply is one message from a worker to the manager over its stdout.
// A reply whose RequestID is not the one being waited for is stale.
type WorkerReply struct {
	RequestID string   `json:"request_id"`
	Response  Response `json:"response"`
}
