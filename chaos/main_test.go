package chaos_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestMain(m *testing.M) {
	// Real-process tests start this test binary as their worker.
	testkit.WorkerTestMain(m)
}

// wait bounds every wait in these tests.
const wait = testkit.Wait

func testConfig() manager.Config {
	cfg := testkit.Config()
	cfg.Chaos = true
	cfg.HealthCheckInterval = time.Hour // faults here must not be healed by the manager
	return cfg
}

// start runs a manager with real worker processes and its server on a free
// loopback port; cleanup shuts both down.
func start(t *testing.T, cfg manager.Config, mws ...manager.Middleware) *testkit.Rig {
	t.Helper()
	return testkit.StartManager(t, cfg, testkit.ProcessLauncher(t), testkit.WithMiddleware(mws...))
}

// procState returns the state letter of pid, or "" once it is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0]
}

// eventually polls cond, bounded by wait: no signal exists for another
// process's state changes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rejectInspect plays a foreign server that does not know inspect.
func rejectInspect(next manager.Handler) manager.Handler {
	return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
		if req.Type == protocol.TypeInspect {
			return protocol.Failure(protocol.InvalidPayload(`unknown request type "inspect"`))
		}
		return next.Handle(ctx, req)
	})
}

func isErr(err, target error) bool { return errors.Is(err, target) }
