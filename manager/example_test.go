package manager_test

import (
	"context"
	"fmt"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// A manager with in-memory workers, driven directly through its Handler
// (a Server puts the same Handler on TCP).
func Example() {
	cfg := manager.DefaultConfig()
	m, err := manager.New(cfg, manager.Options{Launcher: launch.NewMemory(launch.MemoryConfig{})})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Shutdown(context.Background())
	h := manager.Chain(m, manager.Recover(nil))
	ctx := context.Background()

	init, _ := protocol.ParseRequest([]byte(`{"type":"init","video_configuration":{"video_reference":"synthetic://64x48"}}`))
	resp := h.Handle(ctx, init)
	fmt.Println("init:", resp.Status)

	status := &protocol.Request{Type: protocol.TypeStatus, PipelineID: resp.PipelineID}
	fmt.Println("status:", h.Handle(ctx, status).Status)

	missing := &protocol.Request{Type: protocol.TypeStatus, PipelineID: "nope"}
	fmt.Println("unknown:", h.Handle(ctx, missing).ErrorType)

	fmt.Println("pipelines:", m.Snapshot().CountByState()[protocol.StateRunning])
	// Output:
	// init: success
	// status: success
	// unknown: not_found
	// pipelines: 1
}
