package manager

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAdaptiveTimeout(t *testing.T) {
	a := newAdaptiveTimeout(100*time.Millisecond, 5*time.Second)
	if got := a.Timeout(); got != 5*time.Second {
		t.Fatalf("no samples: %s, want the ceiling", got)
	}
	for range 20 {
		a.Observe(2 * time.Millisecond)
	}
	if got := a.Timeout(); got != 100*time.Millisecond {
		t.Fatalf("fast worker: %s, want the floor", got)
	}
	for range 30 {
		a.Observe(800 * time.Millisecond)
	}
	slow := a.Timeout()
	if slow < 800*time.Millisecond || slow >= 5*time.Second {
		t.Fatalf("slow but healthy worker: %s, want above its latency and below the ceiling", slow)
	}
	_, after := a.TimedOut()
	if after != min(2*slow, 5*time.Second) {
		t.Fatalf("after a timeout: %s, want doubled %s", after, 2*slow)
	}
	for range 10 {
		a.TimedOut()
	}
	if got := a.Timeout(); got != 5*time.Second {
		t.Fatalf("backed off: %s, want the ceiling", got)
	}
	a.Observe(800 * time.Millisecond)
	if got := a.Timeout(); got >= 5*time.Second {
		t.Fatalf("success after backoff: %s, want the backoff cleared", got)
	}
	if got := newAdaptiveTimeout(time.Second, 300*time.Millisecond); got.floor != 300*time.Millisecond {
		t.Fatalf("floor above ceiling not clamped: %s", got.floor)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"STREAM_MANAGER_QUEUE_TIMEOUT":            "1",
		"STREAM_MANAGER_TERMINATION_GRACE_PERIOD": "250ms",
		"STREAM_MANAGER_PORT":                     "9000",
		"STREAM_MANAGER_CHAOS":                    "true",
	}
	cfg := DefaultConfig()
	if err := cfg.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.QueueTimeout != time.Second || cfg.TerminationGracePeriod != 250*time.Millisecond || cfg.Port != 9000 || !cfg.Chaos {
		t.Fatalf("cfg = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	tests := []struct{ env, value, rule string }{
		{"STREAM_MANAGER_PORT", "seventy", "integer"},
		{"STREAM_MANAGER_PORT", "70000", "0..65535"},
		{"STREAM_MANAGER_QUEUE_TIMEOUT", "soon", "positive duration"},
		{"STREAM_MANAGER_QUEUE_TIMEOUT", "0", "positive duration"},
		{"STREAM_MANAGER_SOCKET_TIMEOUT", "-1", "positive duration"},
		{"STREAM_MANAGER_MAX_HEALTH_FAILURES", "0", ">= 1"},
		{"STREAM_API_PRELOADED_PROCESSES", "-2", "0..256"},
		{"STREAM_MANAGER_MAX_RAM_MB", "lots", ">= 0"},
		{"STREAM_MANAGER_MAX_QUEUED_PER_PIPELINE", "0", ">= 1"},
		{"STREAM_MANAGER_MAX_QUEUED_PER_PIPELINE", "many", ">= 1"},
		{"STREAM_MANAGER_WORKER_RAM_MB", "0", "1..1048576"},
		{"STREAM_MANAGER_MAX_WORKER_FRAME_BYTES", "512", "1024..4294967295"},
		{"STREAM_MANAGER_CHAOS", "maybe", "true or false"},
		{"STREAM_MANAGER_SOURCE_STALL_TIMEOUT", "soon", "0..86400"},
		{"STREAM_MANAGER_SOURCE_STALL_TIMEOUT", "-1", "0..86400"},
		{"STREAM_MANAGER_DECODE_SIZE", "640", "WxH"},
		{"STREAM_MANAGER_DECODE_SIZE", "8x8", "16..4096"},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			cfg := DefaultConfig()
			err := cfg.FromEnv(func(k string) (string, bool) { return tt.value, k == tt.env })
			if err == nil {
				err = cfg.Validate()
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Name != tt.env || !strings.Contains(err.Error(), tt.rule) {
				t.Fatalf("err = %v, want a ConfigError naming %s with rule %q", err, tt.env, tt.rule)
			}
		})
	}
}
