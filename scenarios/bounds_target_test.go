package scenarios

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// An external Corral that reports its limits is judged by them: the
// scenario's manager: section did not configure it (a `corral serve` with
// default settings must not be held to smoke's shortened probe interval),
// while bounds: and --bounds still override.
func TestBoundsFromTargetLimits(t *testing.T) {
	cfg := manager.DefaultConfig()
	cfg.HealthCheckInterval = 500 * time.Millisecond // as the manager: section set it
	sc := &Scenario{
		Manager: map[string]string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL": "0.5"},
		Bounds:  &BoundsSpec{Join: Duration(9 * time.Second)},
	}
	p := Profile{Limits: &protocol.Limits{TerminationGracePeriod: 5, ProcessJoinTimeout: 30, QueueTimeout: 10,
		HealthCheckInterval: 2, HealthCheckTimeout: 5, MaxHealthFailures: 3, ProbeTimeoutFloor: 0.25, MaxConnections: 64}}
	b := resolveBounds(cfg, sc, BoundsSpec{}, p)
	want := map[string]BoundValue{
		"health_interval": {"2s", BoundFromTarget},
		"health_timeout":  {"5s", BoundFromTarget},
		"grace":           {"5s", BoundFromTarget},
		"join":            {"9s", BoundFromScenario},
	}
	got := b.Declared()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if b.MaxConnections != 64 || b.ProbeTimeoutFloor != 250*time.Millisecond {
		t.Errorf("limits not taken from the target: %+v", b)
	}
}
