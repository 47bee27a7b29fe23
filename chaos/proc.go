package chaos

import (
	"slices"

	"github.com/corral-dev/corral/manager/launch"
)

// liveChildren lists the children of ppid that have not exited, sorted by
// pid. Processes that vanish during the scan are skipped.
func liveChildren(ppid int) ([]launch.ProcInfo, error) {
	out, err := launch.Scan(func(p launch.ProcInfo) bool { return p.PPid == ppid && !p.Zombie() })
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b launch.ProcInfo) int { return a.Pid - b.Pid })
	return out, nil
}
