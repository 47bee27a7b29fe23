package chaos

import (
	"context"
	"os"
	"syscall"
)

// injectManagerSignal signals the manager through Target.Signal, else with
// kill(2) on Target.ManagerPid. Neither the harness itself nor pid 1 is
// ever killed: an embedded manager must be reached through Target.Signal.
func injectManagerSignal(sig string) func(context.Context, *fault, Target, Spec) (Injection, error) {
	num := map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGKILL": syscall.SIGKILL}[sig]
	return func(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
		obs := map[string]any{"signal": sig}
		switch {
		case t.Signal != nil:
			obs["via"] = "hook"
			if t.ManagerPid > 0 {
				obs["pid"] = t.ManagerPid
			}
			if err := t.Signal(sig); err != nil {
				return nil, errorf(f.name, nil, err, "signal %s", sig)
			}
		case t.ManagerPid <= 0:
			return nil, errorf(f.name, ErrNoManagerPid, nil, "no Target.Signal and no manager pid")
		case t.ManagerPid == 1 || t.ManagerPid == os.Getpid():
			return nil, errorf(f.name, ErrUnsafeSignal, nil, "manager pid %d is this process or init; set Target.Signal", t.ManagerPid)
		default:
			obs["via"], obs["pid"] = "kill", t.ManagerPid
			if err := syscall.Kill(t.ManagerPid, num); err != nil {
				return nil, errorf(f.name, nil, err, "kill %d with %s", t.ManagerPid, sig)
			}
		}
		return newInjection(f.name, obs), nil
	}
}
