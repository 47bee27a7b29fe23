package protocol

import (
	"encoding/json"
	"fmt"
)

// Video buffer filling strategies accepted in source_buffer_filling_strategy.
const (
	FillDropOldest         = "DROP_OLDEST"
	FillWait               = "WAIT"
	FillAdaptiveDropOldest = "ADAPTIVE_DROP_OLDEST"
	FillDropLatest         = "DROP_LATEST"
	FillAdaptiveDropLatest = "ADAPTIVE_DROP_LATEST"
)

// Video buffer consumption strategies accepted in
// source_buffer_consumption_strategy: EAGER takes the newest decoded frame
// and drops the older ones, LAZY takes the oldest.
const (
	ConsumeEager = "EAGER"
	ConsumeLazy  = "LAZY"
)

// Type tags of upstream's init payload model (inference 1.5.0): pydantic
// discriminated unions that refuse a payload without them. See
// PROTOCOL.md, section Request.
const (
	InitTypeVideo      = "VideoConfiguration"
	InitTypeWorkflow   = "WorkflowConfiguration"
	InitTypeMemorySink = "MemorySinkConfiguration"
)

// MinimalWorkflow returns the smallest workflow_specification upstream's
// WorkflowConfiguration accepts: one image input, no steps, no outputs.
// Corral's worker ignores the specification (its model stage is fixed).
func MinimalWorkflow() map[string]any {
	return map[string]any{
		"version": "1.0",
		"inputs":  []any{map[string]any{"type": "InferenceImage", "name": "image"}},
		"steps":   []any{},
		"outputs": []any{},
	}
}

// InitConfig is the payload of an init request, with upstream field names.
// Absent fields take the upstream defaults (see Defaults).
type InitConfig struct {
	VideoConfiguration      VideoConfiguration `json:"video_configuration"`
	ProcessingConfiguration map[string]any     `json:"processing_configuration,omitempty"`
	SinkConfiguration       SinkConfiguration  `json:"sink_configuration"`
	// ConsumptionTimeout is seconds without a non-empty consume after
	// which the worker ends itself; nil means never.
	ConsumptionTimeout   *float64 `json:"consumption_timeout,omitempty"`
	APIKey               string   `json:"api_key,omitempty"`
	PredictionsQueueSize int      `json:"predictions_queue_size,omitempty"`
	DecodingBufferSize   int      `json:"decoding_buffer_size,omitempty"`
}

// VideoConfiguration names the source. VideoReference is a string, an int
// or a list upstream; Corral's worker accepts "synthetic://WxH[?fps=N]" and
// paths to .y4m files.
type VideoConfiguration struct {
	Type                            string   `json:"type,omitempty"`
	VideoReference                  any      `json:"video_reference"`
	MaxFPS                          *float64 `json:"max_fps,omitempty"`
	SourceBufferFillingStrategy     string   `json:"source_buffer_filling_strategy,omitempty"`
	SourceBufferConsumptionStrategy string   `json:"source_buffer_consumption_strategy,omitempty"`
}

// SinkConfiguration is the in-memory results sink.
type SinkConfiguration struct {
	Type              string `json:"type,omitempty"`
	ResultsBufferSize int    `json:"results_buffer_size,omitempty"`
}

// Defaults returns cfg with every absent field set to the upstream default,
// and an absent processing_configuration set to a WorkflowConfiguration
// with MinimalWorkflow: the result is the full shape upstream's model
// requires, which Corral accepts too.
func (cfg InitConfig) Defaults() InitConfig {
	v := &cfg.VideoConfiguration
	if v.Type == "" {
		v.Type = InitTypeVideo
	}
	if cfg.ProcessingConfiguration == nil {
		// Upstream requires processing_configuration; without it its model
		// answers invalid_payload and no pipeline starts.
		cfg.ProcessingConfiguration = map[string]any{"type": InitTypeWorkflow, "workflow_specification": MinimalWorkflow()}
	}
	if v.SourceBufferFillingStrategy == "" {
		v.SourceBufferFillingStrategy = FillDropOldest
	}
	if v.SourceBufferConsumptionStrategy == "" {
		v.SourceBufferConsumptionStrategy = ConsumeEager
	}
	if cfg.SinkConfiguration.Type == "" {
		cfg.SinkConfiguration.Type = InitTypeMemorySink
	}
	if cfg.SinkConfiguration.ResultsBufferSize == 0 {
		cfg.SinkConfiguration.ResultsBufferSize = 64
	}
	if cfg.PredictionsQueueSize == 0 {
		cfg.PredictionsQueueSize = 512
	}
	if cfg.DecodingBufferSize == 0 {
		cfg.DecodingBufferSize = 64
	}
	return cfg
}

func (cfg InitConfig) fields() (map[string]any, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode init: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("protocol: encode init: %w", err)
	}
	return m, nil
}
