package manager

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/corral-dev/corral/manager/protocol"
)

// admit refuses init while resident memory is at or above MaxRAMMB.
func (m *Manager) admit() *protocol.Error {
	if m.cfg.MaxRAMMB <= 0 {
		return nil
	}
	pids := []int{os.Getpid()}
	m.mu.Lock()
	for _, p := range m.table {
		if pid := p.proc.Pid(); pid > 0 {
			pids = append(pids, pid)
		}
	}
	m.mu.Unlock()
	used, err := m.opts.MemoryUsage(pids)
	if err != nil {
		return protocol.InternalError(fmt.Sprintf("Cannot check memory for a new pipeline: %v.", err))
	}
	limit := uint64(m.cfg.MaxRAMMB) << 20
	if used >= limit {
		return protocol.InternalError(fmt.Sprintf(
			"Cannot start a new pipeline: resident memory of the manager and its %d workers is %d MiB, at or above STREAM_MANAGER_MAX_RAM_MB=%d MiB.",
			len(pids)-1, used>>20, m.cfg.MaxRAMMB))
	}
	return nil
}

// residentBytes sums the resident set of pids from /proc; pids that are
// already gone count as zero.
func residentBytes(pids []int) (uint64, error) {
	var total uint64
	page := uint64(os.Getpagesize())
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, err
		}
		total += n * page
	}
	return total, nil
}
