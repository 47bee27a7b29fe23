package launch

import "sync"

// sharedScan lets concurrent callers share one read of /proc. A caller
// never gets a scan that began before it asked (one that could miss a
// process forked just before the call): it joins the next scan not yet
// started, or starts one. While a scan runs, every caller that arrives
// waits for the one after it, so n concurrent callers cost at most two
// scans, where each used to cost its own (a read of every process's stat:
// 64 workers signalled at shutdown were 64 scans of ~220 processes,
// ~15 ms each on a loaded machine). Each wait ends when a scan, which
// never blocks, ends.
type sharedScan struct {
	// read reads the process table; nil means all of /proc (tests count
	// and hold scans through it).
	read func() ([]ProcInfo, error)

	mu      sync.Mutex
	running bool      // a scan is reading /proc
	next    *scanTurn // the scan callers wait for, not started yet
}

// scanTurn is one scan and the callers that share it.
type scanTurn struct {
	start chan struct{} // closed when its first caller may run it
	done  chan struct{} // closed once procs and err are set
	procs []ProcInfo
	err   error
	// callers counts those sharing it, guarded by sharedScan.mu.
	callers int
}

// groupMembers is GroupMembers(pgid) from a shared scan.
func (s *sharedScan) groupMembers(pgid int) ([]ProcInfo, error) {
	all, err := s.scan()
	if err != nil {
		return nil, err
	}
	var out []ProcInfo
	for _, p := range all {
		if p.Pgid == pgid {
			out = append(out, p)
		}
	}
	return out, nil
}

// scan returns every process, from a scan that began after the call.
func (s *sharedScan) scan() ([]ProcInfo, error) {
	s.mu.Lock()
	t := s.next
	first := t == nil
	if first {
		t = &scanTurn{start: make(chan struct{}), done: make(chan struct{})}
		s.next = t
		if !s.running {
			s.running, s.next = true, nil
			close(t.start)
		}
	}
	t.callers++
	s.mu.Unlock()
	if first {
		<-t.start // the scan before it has ended and handed over
		if s.read != nil {
			t.procs, t.err = s.read()
		} else {
			t.procs, t.err = scanProc(nil, nil)
		}
		s.mu.Lock()
		if n := s.next; n != nil {
			s.next = nil
			close(n.start) // running stays true: n's first caller scans now
		} else {
			s.running = false
		}
		s.mu.Unlock()
		close(t.done)
	}
	<-t.done
	return t.procs, t.err
}
