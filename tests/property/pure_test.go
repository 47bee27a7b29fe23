package property

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/scenarios"
)

// Properties of the pure parts: no manager, no clock.

// pureChecks is the count of each pure property in `make test`.
const pureChecks = 300

// TestFrameRoundTrip: any body up to the limit comes back byte for byte,
// several frames in a row keep their boundaries, and a header announcing
// more than the limit, zero bytes, or a body cut short is refused with its
// own error (PROTOCOL.md: 4-byte big-endian length, then the body).
func TestFrameRoundTrip(t *testing.T) {
	setChecks(t, "CORRAL_PURE_CHECKS", pureChecks)
	rapid.Check(t, func(t *rapid.T) {
		limit := rapid.IntRange(1, 1<<17).Draw(t, "limit")
		bodies := rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 1, min(limit, 1<<12)), 1, 4).Draw(t, "bodies")
		var stream bytes.Buffer
		for _, b := range bodies {
			if err := protocol.WriteFrame(&stream, b); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
		}
		for i, want := range bodies {
			got, err := protocol.ReadFrame(&stream, limit)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("frame %d: got %d bytes (err %v), want %d", i, len(got), err, len(want))
			}
		}
		if _, err := protocol.ReadFrame(&stream, limit); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, want io.EOF", err)
		}
		// Too large: refused from the header alone.
		size := uint32(rapid.IntRange(limit+1, limit+1<<20).Draw(t, "oversize"))
		var hdr [protocol.HeaderSize]byte
		binary.BigEndian.PutUint32(hdr[:], size)
		var big *protocol.FrameTooLargeError
		if _, err := protocol.ReadFrame(bytes.NewReader(hdr[:]), limit); !errors.As(err, &big) || big.Size != uint64(size) {
			t.Fatalf("header of %d bytes over a limit of %d: %v", size, limit, err)
		}
		// Empty and truncated frames.
		if _, err := protocol.ReadFrame(bytes.NewReader(make([]byte, protocol.HeaderSize)), limit); !errors.Is(err, protocol.ErrEmptyFrame) {
			t.Fatalf("empty frame: %v", err)
		}
		whole := protocol.AppendFrame(nil, bodies[0])
		cut := rapid.IntRange(1, len(whole)-1).Draw(t, "cut")
		if _, err := protocol.ReadFrame(bytes.NewReader(whole[:cut]), limit); !errors.Is(err, protocol.ErrTruncated) {
			t.Fatalf("frame cut at %d of %d bytes: %v, want ErrTruncated", cut, len(whole), err)
		}
	})
}

// requestTypes are the request types of PROTOCOL.md, and some that are not.
var requestTypes = []string{protocol.TypeInit, protocol.TypeListPipelines, protocol.TypeStatus, protocol.TypeMute,
	protocol.TypeResume, protocol.TypeConsumeResult, protocol.TypeTerminate, protocol.TypeInspect, protocol.TypeChaos,
	protocol.TypeWebRTC, "", "INIT", "shutdown", "status "}

// TestParseRequest: ParseRequest never panics, and it refuses with an
// invalid_payload *protocol.Error exactly what PROTOCOL.md refuses: a
// body that is not one JSON object, a missing or unknown type, a missing
// pipeline_id where the type needs one, a type, pipeline_id or traceparent
// that is not a string. Everything else is accepted with its fields.
func TestParseRequest(t *testing.T) {
	setChecks(t, "CORRAL_PURE_CHECKS", pureChecks)
	jsonValue := rapid.OneOf(rapid.Just[any](nil), rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Map(rapid.Float64(), func(f float64) any { return f }), rapid.Map(rapid.String(), func(s string) any { return s }),
		rapid.Just[any]([]any{1, "x"}), rapid.Just[any](map[string]any{"k": "v"}))
	rapid.Check(t, func(t *rapid.T) {
		if rapid.Bool().Draw(t, "raw_bytes") {
			body := rapid.SliceOf(rapid.Byte()).Draw(t, "body")
			req, err := protocol.ParseRequest(body) // must not panic
			checkParse(t, body, req, err)
			return
		}
		obj := map[string]any{}
		if rapid.Bool().Draw(t, "has_type") {
			if rapid.IntRange(0, 4).Draw(t, "type_kind") == 0 {
				obj["type"] = jsonValue.Draw(t, "type_value")
			} else {
				obj["type"] = rapid.SampledFrom(requestTypes).Draw(t, "type")
			}
		}
		if rapid.Bool().Draw(t, "has_pipeline_id") {
			if rapid.IntRange(0, 4).Draw(t, "id_kind") == 0 {
				obj["pipeline_id"] = jsonValue.Draw(t, "id_value")
			} else {
				obj["pipeline_id"] = rapid.StringMatching(`[0-9a-f-]{0,12}`).Draw(t, "pipeline_id")
			}
		}
		if rapid.Bool().Draw(t, "has_traceparent") {
			obj["traceparent"] = jsonValue.Draw(t, "traceparent")
		}
		obj[rapid.StringMatching(`[a-z_]{1,8}`).Draw(t, "extra_key")] = jsonValue.Draw(t, "extra_value")
		body, err := json.Marshal(obj)
		if err != nil {
			t.Skip("not encodable")
		}
		if rapid.Bool().Draw(t, "trailing") {
			body = append(body, rapid.SampledFrom([]string{" ", "\n", "{}", "x"}).Draw(t, "suffix")...)
		}
		req, perr := protocol.ParseRequest(body)
		checkParse(t, body, req, perr)
	})
}

// checkParse is the oracle of TestParseRequest, from PROTOCOL.md's rules.
func checkParse(t *rapid.T, body []byte, req *protocol.Request, err error) {
	t.Helper()
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	valid := dec.Decode(&obj) == nil && obj != nil
	if valid {
		var rest any
		valid = dec.Decode(&rest) == io.EOF
	}
	str := func(k string) (string, bool) {
		v, ok := obj[k]
		if !ok || v == nil {
			return "", true
		}
		s, isStr := v.(string)
		return s, isStr
	}
	typ, typOK := str("type")
	id, idOK := str("pipeline_id")
	_, tpOK := str("traceparent")
	want := valid && typOK && typ != "" && protocol.KnownType(typ) && idOK && tpOK &&
		!(protocol.NeedsPipelineID(typ) && id == "")
	if !want {
		var pe *protocol.Error
		if err == nil || !errors.As(err, &pe) || pe.Type != protocol.ErrTypeInvalidPayload {
			t.Fatalf("ParseRequest(%q) = %+v, %v; want an invalid_payload error", body, req, err)
		}
		return
	}
	if err != nil || req == nil || req.Type != typ || req.PipelineID != id {
		t.Fatalf("ParseRequest(%q) = %+v, %v; want type %q pipeline_id %q", body, req, err, typ, id)
	}
}

// TestConfigNamesVariable: a bad value of any setting, from the
// environment or in a Config, is refused by an error naming its variable.
func TestConfigNamesVariable(t *testing.T) {
	setChecks(t, "CORRAL_PURE_CHECKS", pureChecks)
	settings := manager.Settings()
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.SampledFrom(settings).Draw(t, "setting")
		v := rapid.OneOf(rapid.SampledFrom([]string{"", "-1", "0", "x", "1e9", "NaN", "-0.5", "70000", "true", "2.5", "500ms", " 3 "}),
			rapid.String()).Draw(t, "value")
		cfg := manager.DefaultConfig()
		err := cfg.FromEnv(func(name string) (string, bool) {
			if name == s.Env {
				return v, true
			}
			return "", false
		})
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil && !strings.Contains(err.Error(), s.Env) {
			t.Fatalf("%s=%q refused without naming the variable: %v", s.Env, v, err)
		}
	})
}

// TestPlanner: the same scenario and seed give the same plan; every planned
// fault but the final shutdown falls inside the chaos phase; the plan is in
// time order.
func TestPlanner(t *testing.T) {
	setChecks(t, "CORRAL_PURE_CHECKS", pureChecks/10) // a plan of the soak scenario is long
	names := scenarios.BuiltinNames()
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.SampledFrom(names).Draw(t, "scenario")
		seed := rapid.Int64().Draw(t, "seed")
		sc, err := scenarios.Builtin(name)
		if err != nil {
			t.Fatalf("builtin %s: %v", name, err)
		}
		a, b := scenarios.PlanRun(sc, seed), scenarios.PlanRun(sc, seed)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("%s seed %d: two plans differ", name, seed)
		}
		tl := scenarios.TimelineOf(sc)
		for i, e := range a {
			if i > 0 && e.At < a[i-1].At {
				t.Fatalf("%s seed %d: entry %d at %s before entry %d at %s", name, seed, i, time.Duration(e.At), i-1, time.Duration(a[i-1].At))
			}
			if e.Kind != scenarios.KindFault || e.F == protocol.FaultManagerSigterm || e.F == protocol.FaultManagerSigkill {
				continue
			}
			if at := time.Duration(e.At); at < tl.Chaos || at >= tl.Heal {
				t.Fatalf("%s seed %d: fault %s at %s, outside the chaos phase [%s, %s)", name, seed, e.F, at, tl.Chaos, tl.Heal)
			}
		}
	})
}
