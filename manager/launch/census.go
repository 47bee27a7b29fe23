package launch

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/corral-dev/corral/manager/protocol"
)

// ProcInfo is one row of the process table, as read from /proc.
type ProcInfo struct {
	Pid, PPid, Pgid, Sid int
	// State is the one-letter state from /proc/<pid>/stat: R, S, D, T, Z...
	State string
	// Comm is the executable name, as the kernel reports it (at most 15 bytes).
	Comm string
	// Start is the process's start time in clock ticks after boot (stat
	// field 22): with Pid it names one process, even after pid reuse.
	Start uint64
	// RSS is the resident set size in bytes (stat's rss field times the
	// page size); 0 for zombies and kernel threads.
	RSS uint64 `json:",omitempty"`
}

// Zombie reports whether the process has exited but not been reaped.
func (p ProcInfo) Zombie() bool { return p.State == "Z" || p.State == "X" }

// Census lists every process whose environment holds protocol.EnvManagerMarker=marker,
// whatever its parent: a launcher's workers and every descendant that
// inherited their environment, including those that left the worker's
// process group or session. Zombies are listed only while their
// environment is still readable, which in practice means they are not:
// use it to find live leaks, and GroupMembers or /proc/<pid> for zombies.
func Census(marker string) ([]ProcInfo, error) {
	want := []byte(protocol.EnvManagerMarker + "=" + marker)
	return scanProc(func(pid int) bool {
		return hasEnv(pid, want)
	}, nil)
}

// GroupMembers lists every process in process group pgid, zombies included.
func GroupMembers(pgid int) ([]ProcInfo, error) {
	return scanProc(nil, func(p ProcInfo) bool { return p.Pgid == pgid })
}

// Scan lists every process for which keep returns true (all when keep is
// nil), in /proc order; processes that vanish during the scan are skipped.
func Scan(keep func(ProcInfo) bool) ([]ProcInfo, error) {
	return scanProc(nil, keep)
}

// scanProc reads /proc once. pre filters by pid before stat is read (it is
// the expensive environ check); post filters on the parsed stat line.
// Processes that vanish during the scan are skipped, not errors.
func scanProc(pre func(pid int) bool, post func(ProcInfo) bool) ([]ProcInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("launch: read /proc: %w", err)
	}
	var out []ProcInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if pre != nil && !pre(pid) {
			continue
		}
		info, err := Stat(pid)
		if err != nil {
			continue
		}
		if post != nil && !post(info) {
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

// Stat reads one process's /proc/<pid>/stat. comm sits in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func Stat(pid int) (ProcInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcInfo{}, err
	}
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return ProcInfo{}, fmt.Errorf("launch: malformed stat for pid %d", pid)
	}
	// After ") ": state ppid pgrp session ...
	fields := strings.Fields(string(b[closing+1:]))
	if len(fields) < 4 {
		return ProcInfo{}, fmt.Errorf("launch: short stat for pid %d", pid)
	}
	info := ProcInfo{Pid: pid, State: fields[0], Comm: string(b[open+1 : closing])}
	for i, dst := range []*int{&info.PPid, &info.Pgid, &info.Sid} {
		if *dst, err = strconv.Atoi(fields[i+1]); err != nil {
			return ProcInfo{}, fmt.Errorf("launch: stat for pid %d: %w", pid, err)
		}
	}
	// starttime is field 22 of stat(5); fields[0] is field 3 (state).
	if len(fields) > 19 {
		if info.Start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
			return ProcInfo{}, fmt.Errorf("launch: stat for pid %d: starttime: %w", pid, err)
		}
	}
	// rss is field 24, the 22nd after the comm's ')'.
	if len(fields) > 21 {
		if pages, err := strconv.ParseUint(fields[21], 10, 64); err == nil {
			info.RSS = pages * uint64(os.Getpagesize())
		}
	}
	return info, nil
}

// hasEnv reports whether /proc/<pid>/environ holds the exact entry want
// ("KEY=value"). It reads false for zombies (their environ is empty), for
// processes that are gone and for those we may not inspect.
func hasEnv(pid int, want []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for entry := range bytes.SplitSeq(b, []byte{0}) {
		if bytes.Equal(entry, want) {
			return true
		}
	}
	return false
}
