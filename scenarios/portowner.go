package scenarios

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// tcpListen is the st value of a listening socket in /proc/net/tcp.
const tcpListen = 0x0A

// ErrNotPortOwner matches checkPortOwner's refusal (errors.Is): the pid
// given as the target's does not listen on the target's port.
var ErrNotPortOwner = errors.New("scenarios: --target-pid does not own the target's port")

// notOwnerError is a refusal with its own message, matching ErrNotPortOwner.
type notOwnerError struct{ msg string }

func (e *notOwnerError) Error() string        { return e.msg }
func (e *notOwnerError) Is(target error) bool { return target == ErrNotPortOwner }

func notOwner(format string, args ...any) error {
	return &notOwnerError{msg: fmt.Sprintf(format, args...)}
}

// checkPortOwner verifies that pid holds a listening TCP socket on addr's
// port: the listening sockets of that port come from the pid's own network
// namespace (/proc/<pid>/net/tcp and tcp6), and one of their inodes must be
// among the pid's file descriptors (/proc/<pid>/fd, "socket:[inode]").
// Without this, a wrong pid makes the harness signal an unrelated process
// and judge its children. The error names the process that does own the
// port when one is visible.
func checkPortOwner(pid int, addr string) error {
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--target %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("--target %q: port %q is not a number", addr, portText)
	}
	inodes, err := listeningInodes(pid, uint64(port))
	if err != nil {
		return notOwner("--target-pid %d: cannot read its sockets: %v", pid, err)
	}
	if len(inodes) == 0 {
		return notOwner("--target-pid %d (%s): nothing listens on TCP port %d in its network namespace", pid, procName(pid), port)
	}
	owned, err := socketInodes(pid)
	if err != nil {
		return notOwner("--target-pid %d: cannot read its file descriptors to confirm it owns port %d: %v", pid, port, err)
	}
	for _, in := range inodes {
		if owned[in] {
			return nil
		}
	}
	return notOwner("--target-pid %d (%s) does not listen on port %d; %s", pid, procName(pid), port, portOwners(inodes, port))
}

// listeningInodes returns the inodes of the sockets listening on port,
// as pid's network namespace lists them.
func listeningInodes(pid int, port uint64) ([]uint64, error) {
	fs, err := procfs.NewFS("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return nil, err
	}
	var out []uint64
	var errs []error
	for _, read := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
		lines, err := read()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range lines {
			if l.St == tcpListen && l.LocalPort == port {
				out = append(out, l.Inode)
			}
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// socketInodes returns the socket inodes among pid's file descriptors.
func socketInodes(pid int) (map[uint64]bool, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, err
	}
	targets, err := p.FileDescriptorTargets()
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, t := range targets {
		if in, ok := strings.CutPrefix(t, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(in, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out, nil
}

// portOwners names the processes holding one of inodes, as far as this
// user may see their file descriptors.
func portOwners(inodes []uint64, port int) string {
	procs, err := procfs.AllProcs()
	if err != nil {
		return fmt.Sprintf("its owner could not be found (%v)", err)
	}
	var owners []string
	for _, p := range procs {
		owned, err := socketInodes(p.PID)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(inodes, func(in uint64) bool { return owned[in] }) {
			owners = append(owners, fmt.Sprintf("%d (%s)", p.PID, procName(p.PID)))
		}
	}
	if len(owners) == 0 {
		return fmt.Sprintf("port %d is held by a process whose file descriptors this user cannot see", port)
	}
	return fmt.Sprintf("port %d is owned by pid %s; pass that pid", port, strings.Join(owners, ", pid "))
}

// procName is a process's comm, or "?" when it cannot be read.
func procName(pid int) string {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return "?"
	}
	c, err := p.Comm()
	if err != nil {
		return "?"
	}
	return c
}
