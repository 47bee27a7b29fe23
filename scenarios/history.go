package scenarios

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Operation types, as in Jepsen: an invoke is followed by exactly one of ok,
// fail (definitely did not happen) or info (outcome unknown, e.g. a timeout).
const (
	OpInvoke = "invoke"
	OpOK     = "ok"
	OpFail   = "fail"
	OpInfo   = "info"
)

// Nemesis is the process name of the fault injector in the history.
const Nemesis = "nemesis"

// Op is one line of history.jsonl.
type Op struct {
	Index   int    `json:"index"`
	Time    int64  `json:"time"`    // ns since the run started
	Process string `json:"process"` // "client-N" or "nemesis"
	Type    string `json:"type"`    // invoke | ok | fail | info
	F       string `json:"f"`       // command or fault name
	// Pipeline is the logical pipeline number of the plan (0 = none);
	// PipelineID the id the manager gave it, once known.
	Pipeline   int    `json:"pipeline,omitempty"`
	PipelineID string `json:"pipeline_id,omitempty"`
	Value      any    `json:"value,omitempty"`
	Error      string `json:"error,omitempty"`
	TraceID    string `json:"trace_id,omitempty"`
	// Invoke is the index of the invoke a completion answers (-1 for
	// invokes themselves).
	Invoke int `json:"invoke"`
}

// Duration returns the time from inv to this completion.
func (o Op) Duration(inv Op) time.Duration { return time.Duration(o.Time - inv.Time) }

// History records operations in order, stamping index and time, and
// streams each line to w as it happens (so a crashed run keeps its
// history). Safe for concurrent use.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []Op
	enc   *json.Encoder
	err   error
}

// NewHistory starts a history at start; w may be nil.
func NewHistory(start time.Time, w io.Writer) *History {
	h := &History{start: start}
	if w != nil {
		h.enc = json.NewEncoder(w)
	}
	return h
}

// Start is the time the history counts from.
func (h *History) Start() time.Time { return h.start }

func (h *History) add(o Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.Index = len(h.ops)
	o.Time = int64(time.Since(h.start))
	h.ops = append(h.ops, o)
	if h.enc != nil && h.err == nil {
		h.err = h.enc.Encode(o)
	}
	return o
}

// Invoke records the start of an operation and returns it.
func (h *History) Invoke(process, f string, pipeline int, pipelineID string, value any) Op {
	return h.add(Op{Process: process, Type: OpInvoke, F: f, Pipeline: pipeline, PipelineID: pipelineID, Value: value, Invoke: -1})
}

// Complete records the completion of inv with typ (ok, fail or info).
func (h *History) Complete(inv Op, typ string, pipelineID string, value any, errText, traceID string) Op {
	if pipelineID == "" {
		pipelineID = inv.PipelineID
	}
	return h.add(Op{Process: inv.Process, Type: typ, F: inv.F, Pipeline: inv.Pipeline, PipelineID: pipelineID,
		Value: value, Error: errText, TraceID: traceID, Invoke: inv.Index})
}

// Ops returns a copy of every operation so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Err reports the first error writing the stream.
func (h *History) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// ReadHistory parses a history.jsonl stream.
func ReadHistory(r io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(r)
	for {
		var o Op
		if err := dec.Decode(&o); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return ops, err
		}
		ops = append(ops, o)
	}
}

// Pairs matches each invoke with its completion; an invoke without one
// maps to nil.
func Pairs(ops []Op) map[int]*Op {
	out := map[int]*Op{}
	for i := range ops {
		switch o := &ops[i]; o.Type {
		case OpInvoke:
			if _, ok := out[o.Index]; !ok {
				out[o.Index] = nil
			}
		default:
			out[o.Invoke] = o
		}
	}
	return out
}
