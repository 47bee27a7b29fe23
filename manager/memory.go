package manager

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/prometheus/procfs"

	"github.com/corral-dev/corral/manager/protocol"
)

// RAM admission (STREAM_MANAGER_MAX_RAM_MB) reserves; it does not only
// sample. Reading resident memory alone admits any number of concurrent
// inits, because none of their workers exists yet when the others read
// (issue 9: ten inits at once against 80 MiB admitted all ten). So an
// admission adds, under the table lock, what was measured (the manager and
// every worker) and what earlier admissions reserved and is not measured
// yet; it refuses when that total is at or above the limit, and otherwise
// reserves a predicted size for its own worker before releasing the lock.
// The reservation is released when the worker's real size is known (it is
// measured at its first good health probe, a probe interval after its init
// succeeded, when it has grown to its working size; until then it counts
// for the larger of the reservation and its measured size) or when it
// leaves the table. With
// predictions at least as large as the workers, the admitted total stays
// below the limit plus one worker.
//
// The prediction is the largest resident size seen for the same video
// configuration, or Config.WorkerRAMMB before one has been measured. An
// in-memory worker (pid 0) has no resident size of its own, so its
// reservation stands until it leaves the table.

// maxLearnedConfigs bounds the sizes remembered per video configuration; a
// configuration forgotten falls back to Config.WorkerRAMMB.
const maxLearnedConfigs = 1024

// ramBook is the admission ledger; guarded by Manager.mu.
type ramBook struct {
	pending  uint64 // bytes reserved by admissions whose worker is not in hand yet
	pendingN int    // how many such admissions
	learned  map[string]uint64
}

// ramClaim is one admission's reservation until attach hands it to the
// pipeline that serves it (or drop returns it).
type ramClaim struct {
	key   string // video configuration key, "" for a warm-pool worker
	bytes uint64
}

// admit reserves room for one new worker of video configuration key, or
// refuses with internal_error naming the numbers when the manager, its
// workers and the reservations of workers not measured yet reach MaxRAMMB.
// A granted claim must be attached or dropped.
func (m *Manager) admit(key string) (ramClaim, *protocol.Error) {
	if m.cfg.MaxRAMMB <= 0 {
		return ramClaim{}, nil
	}
	// Read /proc outside the lock; every value read is a real measurement,
	// and what was reserved after it is still counted under the lock below.
	m.mu.Lock()
	workers := make([]*pipeline, 0, len(m.table))
	for _, p := range m.table {
		if p.proc.Pid() > 0 {
			workers = append(workers, p)
		}
	}
	m.mu.Unlock()
	self, err := m.opts.MemoryUsage(os.Getpid())
	sizes := make([]uint64, len(workers))
	for i, p := range workers {
		if err != nil {
			break
		}
		sizes[i], err = m.opts.MemoryUsage(p.proc.Pid())
	}
	if err != nil {
		return ramClaim{}, protocol.InternalError(fmt.Sprintf("Cannot check memory for a new pipeline: %v.", err))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range workers {
		m.noteResidentLocked(p, sizes[i])
	}
	used, reserved, starting := self, m.ram.pending, m.ram.pendingN
	for _, p := range m.table {
		used += p.resident
		if p.reserved > p.resident {
			reserved += p.reserved - p.resident
			starting++
		}
	}
	limit := uint64(m.cfg.MaxRAMMB) << 20
	if used+reserved >= limit {
		return ramClaim{}, protocol.InternalError(fmt.Sprintf(
			"Cannot start a new pipeline: resident memory of the manager and its %d workers is %d MiB, and %d MiB more is reserved for %d starting workers; together at or above STREAM_MANAGER_MAX_RAM_MB=%d MiB.",
			len(m.table), used>>20, reserved>>20, starting, m.cfg.MaxRAMMB))
	}
	c := ramClaim{key: key, bytes: m.predictLocked(key)}
	m.ram.pending += c.bytes
	m.ram.pendingN++
	return c, nil
}

// predictLocked is the size to reserve for a worker of video
// configuration key.
func (m *Manager) predictLocked(key string) uint64 {
	if seen, ok := m.ram.learned[key]; ok && key != "" {
		return seen
	}
	return uint64(m.cfg.WorkerRAMMB) << 20
}

// claimWarm re-labels a warm worker taken by an init for video
// configuration key. Its room was reserved when the pool started it, so
// the init is not refused; the reservation becomes the prediction for key.
func (m *Manager) claimWarm(p *pipeline, key string) {
	if m.cfg.MaxRAMMB <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p.reserved, p.videoKey = m.predictLocked(key), key
}

// attachLocked moves c onto p, a new table entry: from now on p counts for
// at least c's bytes until settle or its exit.
func (m *Manager) attachLocked(c ramClaim, p *pipeline) {
	if c.bytes == 0 {
		return
	}
	m.dropLocked(c)
	p.reserved, p.videoKey = c.bytes, c.key
}

// drop returns a claim whose worker never came.
func (m *Manager) drop(c ramClaim) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropLocked(c)
}

func (m *Manager) dropLocked(c ramClaim) {
	if c.bytes == 0 {
		return
	}
	m.ram.pending -= c.bytes
	m.ram.pendingN--
}

// settle measures p once it has run for a while (its first good probe): its
// real size replaces its reservation and teaches the prediction for its
// video configuration. An
// in-memory worker, or one whose size cannot be read, keeps its
// reservation.
func (m *Manager) settle(p *pipeline) {
	pid := p.proc.Pid()
	if m.cfg.MaxRAMMB <= 0 || pid <= 0 {
		return
	}
	size, err := m.opts.MemoryUsage(pid)
	if err != nil || size == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p.reserved = 0
	m.noteResidentLocked(p, size)
}

// noteResidentLocked records a measurement of p, if p is still in the
// table, and raises the prediction for its video configuration when p is
// settled (a worker still starting would teach a size too small).
func (m *Manager) noteResidentLocked(p *pipeline, size uint64) {
	if m.table[p.id] != p {
		return
	}
	p.resident = size
	if p.videoKey == "" || p.reserved > 0 || size <= m.ram.learned[p.videoKey] {
		return
	}
	if _, ok := m.ram.learned[p.videoKey]; !ok && len(m.ram.learned) >= maxLearnedConfigs {
		for k := range m.ram.learned { // forget one at random
			delete(m.ram.learned, k)
			break
		}
	}
	m.ram.learned[p.videoKey] = size
}

// videoKey identifies an init's video configuration for the size
// prediction: a digest of its JSON with object keys sorted, so clients
// that order fields differently share one prediction. A request without
// one gets "" (the configured default size).
func videoKey(req *protocol.Request) string {
	raw, ok := req.Fields["video_configuration"]
	if !ok {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		if canon, err := json.Marshal(v); err == nil {
			raw = canon
		}
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// residentBytes reads the resident set size of pid from /proc; a process
// that is already gone counts as zero.
func residentBytes(pid int) (uint64, error) {
	fsys, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, err
	}
	p, err := fsys.Proc(pid)
	if err == nil {
		var statm procfs.ProcStatm
		if statm, err = p.Statm(); err == nil {
			return statm.Resident * uint64(os.Getpagesize()), nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, nil
	}
	return 0, err
}
