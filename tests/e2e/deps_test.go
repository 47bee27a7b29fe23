package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The core must stay free of telemetry, chaos and the harness: they wrap it
// through its seams, never the other way round.
func TestManagerImportsNoInstrumentation(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/corral-dev/corral/manager/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.opentelemetry.io/") ||
			strings.HasPrefix(pkg, "github.com/corral-dev/corral/chaos") ||
			strings.HasPrefix(pkg, "github.com/corral-dev/corral/scenarios") ||
			strings.HasPrefix(pkg, "github.com/corral-dev/corral/otel") {
			t.Errorf("manager/... depends on %s", pkg)
		}
	}
}
