package chaos

import (
	"context"
	"maps"
	"sync"
	"time"
)

// stopWait bounds the wait for a background fault after it was cancelled:
// its sockets' deadlines were forced into the past, so it ends at once.
const stopWait = 5 * time.Second

// injection is the one Injection implementation. heal runs at most once;
// a background goroutine (client faults) is waited for on every Heal.
type injection struct {
	fault string

	mu  sync.Mutex
	obs map[string]any

	heal     func(ctx context.Context) error // nil: nothing to undo
	healOnce sync.Once
	healErr  error

	// Background work, nil for synchronous faults.
	cancel     context.CancelFunc
	done       chan struct{}
	stopOnHeal bool // Heal ends the work (a stall) instead of awaiting it
}

func newInjection(fault string, obs map[string]any) *injection {
	if obs == nil {
		obs = map[string]any{}
	}
	return &injection{fault: fault, obs: obs}
}

// set records one observation.
func (in *injection) set(key string, v any) {
	in.mu.Lock()
	in.obs[key] = v
	in.mu.Unlock()
}

// Observed returns a copy of what was seen so far.
func (in *injection) Observed() map[string]any {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.obs)
}

// background runs work in a goroutine owned by the injection; ctx (the
// Inject context) or Heal cancels it.
func (in *injection) background(ctx context.Context, stopOnHeal bool, work func(ctx context.Context)) {
	ctx, in.cancel = context.WithCancel(ctx)
	in.done = make(chan struct{})
	in.stopOnHeal = stopOnHeal
	in.set("done", false)
	go func() {
		defer close(in.done)
		defer in.set("done", true)
		work(ctx)
	}()
}

// Heal undoes the fault. It is safe to call twice (and concurrently): the
// undo runs once, and every call waits for background work. If ctx ends
// first, the work is cancelled and waited for at most stopWait.
func (in *injection) Heal(ctx context.Context) error {
	if in.done != nil {
		if in.stopOnHeal {
			in.cancel()
		}
		select {
		case <-in.done:
		case <-ctx.Done():
			in.cancel()
			select {
			case <-in.done:
			case <-time.After(stopWait):
				return errorf(in.fault, ctx.Err(), nil, "heal: still running %s after cancel", stopWait)
			}
		}
		in.cancel() // releases the context's resources
	}
	in.healOnce.Do(func() {
		if in.heal != nil {
			in.healErr = in.heal(ctx)
		}
	})
	return in.healErr
}
