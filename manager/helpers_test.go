package manager_test

import (
	"errors"
	"testing"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestMain(m *testing.M) {
	// Real-process tests start this test binary as their worker.
	testkit.WorkerTestMain(m)
}

// wait bounds every wait in these tests.
const wait = testkit.Wait

func testConfig() manager.Config { return testkit.Config() }

func memory(t testing.TB) launch.Launcher { return launch.NewMemory(launch.MemoryConfig{}) }

func synthetic() protocol.InitConfig {
	return protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48?fps=50"}}
}

func isType(err error, typ string) bool {
	return errors.Is(err, &protocol.Error{Type: typ})
}
