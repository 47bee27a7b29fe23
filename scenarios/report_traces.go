package scenarios

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// OTLP JSON (one ExportTraceServiceRequest per line), as the file
// exporter writes traces.json. Only what the waterfall draws is decoded.
type otlpLine struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpAttr `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue *string          `json:"stringValue"`
		IntValue    *json.Number     `json:"intValue"`
		DoubleValue *json.Number     `json:"doubleValue"`
		BoolValue   *bool            `json:"boolValue"`
		Other       *json.RawMessage `json:"arrayValue"`
	} `json:"value"`
}

func (a otlpAttr) text() string {
	v := a.Value
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return v.IntValue.String()
	case v.DoubleValue != nil:
		return v.DoubleValue.String()
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.Other != nil:
		return string(*v.Other)
	}
	return ""
}

type otlpSpan struct {
	TraceID      string          `json:"traceId"`
	SpanID       string          `json:"spanId"`
	ParentSpanID string          `json:"parentSpanId"`
	Name         string          `json:"name"`
	Kind         json.RawMessage `json:"kind"`
	Start        json.Number     `json:"startTimeUnixNano"`
	End          json.Number     `json:"endTimeUnixNano"`
	Attributes   []otlpAttr      `json:"attributes"`
	Events       []struct {
		Time       json.Number `json:"timeUnixNano"`
		Name       string      `json:"name"`
		Attributes []otlpAttr  `json:"attributes"`
	} `json:"events"`
	Status struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	} `json:"status"`
}

// traceSpan is one decoded span of a trace.
type traceSpan struct {
	TraceID, SpanID, ParentID string
	Name, Service             string
	Start, End                int64 // unix ns
	Error                     bool
	StatusMessage             string
	Attrs                     []string // "key=value"
	Events                    []traceEvent
}

type traceEvent struct {
	Time  int64
	Name  string
	Attrs []string
}

// normID returns a trace or span id as lower-case hex: OTLP JSON writes
// hex, the protobuf JSON mapping base64.
func normID(s string) string {
	if s == "" {
		return ""
	}
	if _, err := hex.DecodeString(s); err == nil {
		return strings.ToLower(s)
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return hex.EncodeToString(b)
	}
	return strings.ToLower(s)
}

func unixNano(n json.Number) int64 {
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		f, _ := n.Float64()
		return int64(f)
	}
	return v
}

func attrTexts(as []otlpAttr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Key+"="+a.text())
	}
	return out
}

// statusError reads an OTLP status code: 2 or "STATUS_CODE_ERROR".
func statusError(raw json.RawMessage) bool {
	s := strings.Trim(string(raw), `"`)
	return s == "2" || s == "STATUS_CODE_ERROR"
}

// readTraces decodes the spans of the wanted traces (hex ids) from an OTLP
// JSON lines stream. Lines that do not decode are counted and skipped: a
// run that crashed may leave a torn last line.
func readTraces(r io.Reader, want map[string]bool) (map[string][]traceSpan, int, error) {
	out := map[string][]traceSpan{}
	bad := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var l otlpLine
		if err := json.Unmarshal(line, &l); err != nil {
			bad++
			continue
		}
		for _, rs := range l.ResourceSpans {
			service := ""
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					service = a.text()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := normID(s.TraceID)
					if want != nil && !want[id] {
						continue
					}
					ts := traceSpan{
						TraceID: id, SpanID: normID(s.SpanID), ParentID: normID(s.ParentSpanID),
						Name: s.Name, Service: service, Start: unixNano(s.Start), End: unixNano(s.End),
						Error: statusError(s.Status.Code), StatusMessage: s.Status.Message, Attrs: attrTexts(s.Attributes),
					}
					for _, e := range s.Events {
						ts.Events = append(ts.Events, traceEvent{Time: unixNano(e.Time), Name: e.Name, Attrs: attrTexts(e.Attributes)})
					}
					out[id] = append(out[id], ts)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return out, bad, fmt.Errorf("read traces: %w", err)
	}
	return out, bad, nil
}

// loadTraces opens the run's traces file and reads the wanted traces. The
// note says why there is nothing to draw, when there is not.
func loadTraces(d *RunData, want map[string]bool) (map[string][]traceSpan, string) {
	if d.TracesFile == "" {
		return nil, "Traces were not recorded in this run (no traces.json)."
	}
	f, err := os.Open(d.TracesFile)
	if err != nil {
		return nil, fmt.Sprintf("traces.json is missing: %v", err)
	}
	defer f.Close()
	spans, bad, err := readTraces(f, want)
	note := ""
	if err != nil {
		note = err.Error()
	}
	if bad > 0 {
		note = strings.TrimSpace(note + fmt.Sprintf(" %d lines of %s could not be decoded.", bad, d.TracesFile))
	}
	return spans, note
}
