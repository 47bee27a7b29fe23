package launch

import (
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// While one scan runs, callers that arrive share the next one: ten callers
// behind a held scan cost one more scan, and none of them gets the scan
// that began before it asked.
func TestSharedScanFreshAndShared(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	scans := 0
	s := &sharedScan{read: func() ([]ProcInfo, error) {
		mu.Lock()
		scans++
		n := scans
		mu.Unlock()
		if n == 1 {
			<-release // the first scan is held until the others wait
		}
		return []ProcInfo{{Pid: n, Pgid: 7}}, nil
	}}
	first := make(chan []ProcInfo, 1)
	go func() {
		got, _ := s.groupMembers(7)
		first <- got
	}()
	waitCallers := func(want int, running bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			n := 0
			if s.next != nil {
				n = s.next.callers
			}
			ok := s.running == running && n == want
			s.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d callers waiting for the next scan, want %d", n, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitCallers(0, true) // the first scan runs
	const n = 10
	got := make([][]ProcInfo, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], _ = s.groupMembers(7) })
	}
	waitCallers(n, true)
	close(release)
	wg.Wait()
	if g := <-first; len(g) != 1 || g[0].Pid != 1 {
		t.Errorf("first caller got %v, want scan 1", g)
	}
	for i, g := range got {
		if len(g) != 1 || g[0].Pid != 2 {
			t.Errorf("caller %d got %v, want scan 2 (begun after it asked)", i, g)
		}
	}
	if scans != 2 {
		t.Errorf("%d scans for %d callers, want 2", scans, n+1)
	}
	if others, _ := s.groupMembers(8); len(others) != 0 {
		t.Errorf("group 8: %v, want none", others)
	}
}

// The real scan finds this test's own process group.
func TestSharedScanReadsProc(t *testing.T) {
	var s sharedScan
	members, err := s.groupMembers(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Pid == os.Getpid() {
			return
		}
	}
	t.Fatalf("own pid %d not among its group's members %v", os.Getpid(), members)
}
