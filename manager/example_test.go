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

// A manager served on TCP as one Service: the way `corral serve` runs it.
func ExampleStartService() {
	cfg := manager.DefaultConfig()
	cfg.Port = 0 // a free port
	svc, err := manager.StartService(cfg, manager.Options{Launcher: launch.NewMemory(launch.MemoryConfig{})})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := &protocol.Client{Addr: svc.Addr()}
	ctx := context.Background()
	id, err := c.Init(ctx, protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: "synthetic://64x48"}})
	fmt.Println("init:", err == nil && id != "")
	ids, _ := c.List(ctx)
	fmt.Println("pipelines:", len(ids))
	// Shutdown stops accepting, stops every pipeline and waits for both.
	fmt.Println("shutdown:", svc.Shutdown(ctx))
	// Output:
	// init: true
	// pipelines: 1
	// shutdown: <nil>
}
