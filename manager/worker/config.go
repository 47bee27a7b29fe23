package worker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// spec is a validated init request.
type spec struct {
	sources []sourceSpec // one per video_reference element, by source_id
	// maxFPS caps each source's rate (0: no cap).
	maxFPS              float64
	filling             string
	consumption         string
	resultsSize         int
	decodingSize        int
	predictionsSize     int
	cost                time.Duration // extra busy work per frame
	consumptionTimeout  time.Duration
	hasConsumptionLimit bool
	// stallTimeout is the frame watchdog's base timeout (0: off).
	stallTimeout time.Duration
}

// parseInit validates the client's init request (upstream field names, see
// protocol.InitConfig). Every error is invalid_payload; sources are opened
// later, by the pipeline.
func parseInit(request map[string]json.RawMessage, host hostSettings) (*spec, error) {
	body, err := json.Marshal(request)
	if err != nil {
		return nil, protocol.InvalidPayload(err.Error())
	}
	var cfg protocol.InitConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, protocol.InvalidPayload(fmt.Sprintf("malformed init request: %v", err))
	}
	// Defaults turns an explicit 0 into 64; the raw value tells them apart.
	var raw struct {
		Sink struct {
			ResultsBufferSize *int `json:"results_buffer_size"`
		} `json:"sink_configuration"`
	}
	_ = json.Unmarshal(body, &raw) // shape already checked above
	cfg = cfg.Defaults()
	v := cfg.VideoConfiguration

	s := &spec{
		filling:         v.SourceBufferFillingStrategy,
		consumption:     v.SourceBufferConsumptionStrategy,
		resultsSize:     cfg.SinkConfiguration.ResultsBufferSize,
		decodingSize:    cfg.DecodingBufferSize,
		predictionsSize: cfg.PredictionsQueueSize,
	}
	switch s.filling {
	case protocol.FillDropOldest, protocol.FillWait, protocol.FillAdaptiveDropOldest,
		protocol.FillDropLatest, protocol.FillAdaptiveDropLatest:
	default:
		return nil, protocol.InvalidPayload(fmt.Sprintf("unknown source_buffer_filling_strategy %q", clipText(s.filling)))
	}
	switch s.consumption {
	case protocol.ConsumeEager, protocol.ConsumeLazy:
	default:
		return nil, protocol.InvalidPayload(fmt.Sprintf("unknown source_buffer_consumption_strategy %q", clipText(s.consumption)))
	}
	if n := raw.Sink.ResultsBufferSize; n != nil && *n < 1 || s.resultsSize < 1 {
		return nil, protocol.InvalidPayload("results_buffer_size must be at least 1")
	}
	if s.decodingSize < 1 || s.predictionsSize < 1 {
		return nil, protocol.InvalidPayload("decoding_buffer_size and predictions_queue_size must be at least 1")
	}
	var maxFPS float64
	if v.MaxFPS != nil {
		if !(*v.MaxFPS > 0) {
			return nil, protocol.InvalidPayload("max_fps must be positive")
		}
		maxFPS = *v.MaxFPS
	}
	if t := cfg.ConsumptionTimeout; t != nil {
		if !(*t >= 0) {
			return nil, protocol.InvalidPayload("consumption_timeout must not be negative")
		}
		s.consumptionTimeout = seconds(*t)
		s.hasConsumptionLimit = true
	}
	if s.cost, err = costParameter(cfg.ProcessingConfiguration); err != nil {
		return nil, err
	}
	s.maxFPS, s.stallTimeout = maxFPS, host.stallTimeout
	if s.sources, err = parseReferences(v.VideoReference, maxFPS, host.decoding); err != nil {
		return nil, protocol.InvalidPayload(err.Error())
	}
	return s, nil
}

// hostSettings are the worker's own settings that apply to every pipeline.
type hostSettings struct {
	decoding     decoding
	stallTimeout time.Duration
}

// costParameter reads processing_configuration.workflows_parameters.cost_ms.
func costParameter(processing map[string]any) (time.Duration, error) {
	params, _ := processing["workflows_parameters"].(map[string]any)
	raw, ok := params["cost_ms"]
	if !ok || raw == nil {
		return 0, nil
	}
	ms, ok := raw.(float64)
	if !ok || !(ms >= 0) || ms > 60_000 {
		return 0, protocol.InvalidPayload("workflows_parameters.cost_ms must be a number of milliseconds in 0..60000")
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// seconds converts a protocol duration in seconds, saturating instead of
// overflowing.
func seconds(s float64) time.Duration {
	const limit = float64(1<<63-1) / float64(time.Second)
	if s >= limit {
		return 1<<63 - 1
	}
	return time.Duration(s * float64(time.Second))
}
