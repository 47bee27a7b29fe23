package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// corral serve --metrics-addr serves Prometheus metrics, and --trace-file
// keeps every span of the manager and its workers, one command one trace.
func TestServeMetricsAndTraceFile(t *testing.T) {
	t.Parallel()
	traces := filepath.Join(t.TempDir(), "traces.json")
	metrics := freeAddr(t)
	srv := startServer(t, []string{"GORACE=atexit_sleep_ms=0"}, "--metrics-addr", metrics, "--trace-file", traces)
	id := srv.initPipeline(t, "synthetic://64x48?fps=30")
	c := srv.client()
	resp, err := c.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TraceID == "" {
		t.Fatal("status answered without a trace_id")
	}

	hc := &http.Client{Timeout: 5 * time.Second}
	r, err := hc.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	for _, want := range []string{"corral_pipelines", "corral_command_duration_seconds", `rpc_method="status"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := c.Terminate(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	srv.signal(t, syscall.SIGTERM)
	if code, ok := srv.waitExit(10 * time.Second); !ok || code != 0 {
		t.Fatalf("serve exit %d (exited %v)", code, ok)
	}

	// The status command's trace holds spans of the manager and the worker.
	f, err := os.Open(traces)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	services := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []struct {
						Key   string
						Value struct{ StringValue string }
					}
				}
				ScopeSpans []struct {
					Spans []struct{ TraceID string }
				}
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("traces.json line is not OTLP JSON: %v", err)
		}
		for _, rs := range line.ResourceSpans {
			svc := ""
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					svc = a.Value.StringValue
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if s.TraceID == resp.TraceID {
						services[svc] = true
					}
				}
			}
		}
	}
	if !services["corral"] || !services["corral-worker"] {
		t.Fatalf("trace %s has spans of %v, want corral and corral-worker", resp.TraceID, services)
	}
}
