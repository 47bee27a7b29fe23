package chaos

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// procStat is the part of /proc/<pid>/stat the faults need.
type procStat struct {
	pid, ppid, pgid int
	state           string
}

// readStat parses /proc/<pid>/stat; comm may hold spaces and parentheses,
// so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	closing := bytes.LastIndexByte(b, ')')
	if closing < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[closing+1:]))
	if len(fields) < 3 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	st := procStat{pid: pid, state: fields[0]}
	if st.ppid, err = strconv.Atoi(fields[1]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if st.pgid, err = strconv.Atoi(fields[2]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// liveChildren lists the children of ppid that have not exited, sorted by
// pid. Processes that vanish during the scan are skipped.
func liveChildren(ppid int) ([]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != ppid || st.state == "Z" || st.state == "X" {
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b procStat) int { return a.pid - b.pid })
	return out, nil
}
