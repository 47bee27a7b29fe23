package logsink_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/logsink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

func closeSink(t *testing.T, s *logsink.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// A reader that went away: every line fails with EPIPE, counted, and
// nothing blocks or panics.
func TestClosedOutputCountsFailures(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	s := logsink.New(w, 0)
	for range 100 {
		if n, err := s.Write([]byte("line\n")); n != 5 || err != nil {
			t.Fatalf("Write = %d, %v; want 5, nil", n, err)
		}
	}
	closeSink(t, s)
	st := s.Stats()
	if st.Lost() != 100 || !errors.Is(st.LastError, os.ErrClosed) && !strings.Contains(st.LastError.Error(), "broken pipe") {
		t.Fatalf("stats = %+v, want 100 lines lost to a broken pipe", st)
	}
}

// A reader that stalls: writes never block (the queue drops what does not
// fit); once the reader drains, the lines come through, followed by one
// warning with the counts.
func TestStalledOutputNeverBlocksAndWarnsOnce(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := logsink.New(w, 4096)
	line := strings.Repeat("x", 1000) + "\n"
	start := time.Now()
	const lines = 2000 // 2 MB: far more than the pipe and the queue hold
	for range lines {
		_, _ = s.Write([]byte(line))
	}
	t.Logf("%d writes of %d bytes to a stalled pipe took %v", lines, len(line), time.Since(start))
	if s.Stats().Dropped == 0 {
		t.Fatal("nothing dropped although the output is stalled")
	}
	lines2 := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		lines2 <- got
	}()
	_, _ = s.Write([]byte("after\n"))
	closeSink(t, s)
	w.Close()
	var got []string
	select {
	case got = <-lines2:
	case <-time.After(wait):
		t.Fatal("reader did not finish")
	}
	st := s.Stats()
	warnings, last := 0, ""
	for _, l := range got {
		if strings.Contains(l, "log output lost lines") {
			warnings++
			last = l
		}
	}
	// One when it caught up, maybe one more at Close for later losses.
	if warnings == 0 || warnings > 2 {
		t.Fatalf("%d loss warnings in the output, want one per stall", warnings)
	}
	if want := fmt.Sprintf("dropped=%d failed=%d", st.Dropped, st.Failed); !strings.Contains(last, want) {
		t.Fatalf("last warning %q does not report the totals %s", last, want)
	}
	if delivered := int64(len(got) - warnings); delivered+st.Lost() != lines+1 {
		t.Fatalf("delivered %d + lost %d != written %d", delivered, st.Lost(), lines+1)
	}
}

func TestWriteAfterCloseIsCounted(t *testing.T) {
	var b strings.Builder
	s := logsink.New(&b, 0)
	closeSink(t, s)
	closeSink(t, s) // twice is safe
	_, _ = s.Write([]byte("late\n"))
	if st := s.Stats(); st.Failed != 1 || b.Len() != 0 {
		t.Fatalf("stats = %+v, output %q", st, b.String())
	}
}
