package testkit

import (
	"context"
	"sync"

	"github.com/corral-dev/corral/manager/protocol"
)

// ConcurrentInits releases n inits of video at once through c (each bounded
// by c.Timeout) and returns the ids admitted and the errors of those
// refused, in completion order.
func ConcurrentInits(ctx context.Context, c *protocol.Client, n int, video string) (ids []string, refused []error) {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, err := c.Init(ctx, protocol.InitConfig{
				VideoConfiguration: protocol.VideoConfiguration{VideoReference: video}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused = append(refused, err)
			} else {
				ids = append(ids, id)
			}
		}()
	}
	close(start)
	wg.Wait()
	return ids, refused
}
