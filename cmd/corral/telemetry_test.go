package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeTelemetryFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-addr", "9464"}, "--metrics-addr"},
		{[]string{"--metrics-addr", "127.0.0.1:http"}, "--metrics-addr"},
		{[]string{"--trace-file", filepath.Join(dir, "missing", "traces.json")}, "--trace-file"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"serve"}, tc.args...), &stdout, &stderr); code != 2 {
			t.Errorf("serve %v: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("serve %v: stderr %q does not name %s", tc.args, stderr.String(), tc.want)
		}
	}
}

func TestServeHelpListsTelemetryFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--metrics-addr", "--trace-file", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if !strings.Contains(stdout.String()+stderr.String(), want) {
			t.Errorf("help does not mention %s", want)
		}
	}
}
