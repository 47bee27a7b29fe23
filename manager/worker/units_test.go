package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

func ExampleWriteY4M() {
	var buf bytes.Buffer
	if err := WriteY4M(&buf, 4, 2, 3, 25); err != nil {
		panic(err)
	}
	header, _, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
	fmt.Println(string(header))
	fmt.Println(bytes.Count(buf.Bytes(), []byte("FRAME\n")), "frames")
	// Output:
	// YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C420jpeg
	// 3 frames
}

func TestY4MHeaders(t *testing.T) {
	tests := []struct {
		line   string
		chroma int // bytes after luma; -1 means the header is refused
		fps    float64
	}{
		{"YUV4MPEG2 W4 H4 F30:1", 8, 30},
		{"YUV4MPEG2 W5 H3 F30000:1001 C420mpeg2", 2 * 3 * 2, 30000.0 / 1001},
		{"YUV4MPEG2 W4 H4 F25:1 C444", 32, 25},
		{"YUV4MPEG2 W4 H4 C422", 16, 30},
		{"YUV4MPEG2 W4 H4 Cmono", 0, 30},
		{"YUV4MPEG2 W4 H4 C420p10", -1, 0},
		{"YUV4MPEG2 W0 H4", -1, 0},
		{"YUV4MPEG2 W4 H4 F0:1", -1, 0},
		{"YUV4MPEG W4 H4", -1, 0},
	}
	for _, tt := range tests {
		h, err := parseY4MHeader(tt.line)
		switch {
		case tt.chroma < 0 && err == nil:
			t.Errorf("%q accepted", tt.line)
		case tt.chroma >= 0 && err != nil:
			t.Errorf("%q: %v", tt.line, err)
		case tt.chroma >= 0 && (h.chromaBytes != tt.chroma || h.fps != tt.fps):
			t.Errorf("%q: chroma %d fps %v, want %d %v", tt.line, h.chromaBytes, h.fps, tt.chroma, tt.fps)
		}
	}
}

func TestY4MRoundTrip(t *testing.T) {
	path := writeY4M(t, 7, 5, 4, 10)
	src, err := openY4M(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	if p := src.props(); p.width != 7 || p.height != 5 || p.total != 4 || p.fps != 10 || !p.isFile {
		t.Fatalf("props = %+v", p)
	}
	want := make([]byte, 35)
	got := make([]byte, 35)
	for id := 1; id <= 4; id++ {
		if err := src.read(got, id); err != nil {
			t.Fatalf("frame %d: %v", id, err)
		}
		renderPattern(want, 7, 5, id)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d luma differs from the pattern", id)
		}
	}
	if err := src.read(got, 5); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if err := WriteY4M(io.Discard, 0, 5, 1, 10); err == nil {
		t.Error("WriteY4M accepted width 0")
	}
}

func TestAnalyse(t *testing.T) {
	flat := bytes.Repeat([]byte{100}, 100)
	if a := analyse(flat, nil); a.brightness != 100 || a.contrast != 0 || a.motion != 0 {
		t.Errorf("flat frame: %+v", a)
	}
	half := slices.Concat(bytes.Repeat([]byte{0}, 50), bytes.Repeat([]byte{200}, 50))
	a := analyse(half, flat)
	if a.brightness != 100 || a.contrast != 100 {
		t.Errorf("half frame brightness %v contrast %v, want 100 100", a.brightness, a.contrast)
	}
	if a.motion != 100 || a.motionFraction != 1 {
		t.Errorf("motion %v fraction %v, want 100 1", a.motion, a.motionFraction)
	}
	near := bytes.Repeat([]byte{110}, 100)
	if a := analyse(near, flat); a.motion != 10 || a.motionFraction != 0 {
		t.Errorf("small change: motion %v fraction %v, want 10 0 (below threshold)", a.motion, a.motionFraction)
	}
}

func TestFrameBufferWaitHonoursContext(t *testing.T) {
	b := newFrameBuffer(1, protocol.FillWait, protocol.ConsumeLazy, make(chan struct{}, 1))
	if err := b.put(t.Context(), frame{id: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.put(ctx, frame{id: 2}) }()
	select {
	case err := <-done:
		t.Fatalf("put into a full WAIT buffer returned %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("put = %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("put ignored its context")
	}
	if f, ok, _ := b.take(); !ok || f.id != 1 {
		t.Fatalf("take = %v %v", f.id, ok)
	}
}

// The filling strategy decides what a put into a full buffer does, the
// consumption strategy what a take returns (upstream's VideoSource).
func TestFrameBufferStrategies(t *testing.T) {
	tests := []struct {
		filling, consumption string
		want                 []int
	}{
		{protocol.FillDropOldest, protocol.ConsumeLazy, []int{3, 4, 5}},
		{protocol.FillAdaptiveDropOldest, protocol.ConsumeLazy, []int{3, 4, 5}},
		{protocol.FillDropLatest, protocol.ConsumeLazy, []int{1, 2, 3}},
		{protocol.FillAdaptiveDropLatest, protocol.ConsumeLazy, []int{1, 2, 3}},
		{protocol.FillDropOldest, protocol.ConsumeEager, []int{5}},
		{protocol.FillDropLatest, protocol.ConsumeEager, []int{3}},
	}
	for _, tt := range tests {
		b := newFrameBuffer(3, tt.filling, tt.consumption, make(chan struct{}, 1))
		for id := 1; id <= 5; id++ {
			if err := b.put(t.Context(), frame{id: id}); err != nil {
				t.Fatal(err)
			}
		}
		b.close()
		var got []int
		for {
			f, ok, done := b.take()
			if done {
				break
			}
			if !ok {
				t.Fatalf("%s/%s: empty but not done", tt.filling, tt.consumption)
			}
			got = append(got, f.id)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s/%s: took %v, want %v", tt.filling, tt.consumption, got, tt.want)
		}
	}
}

// The results sink keeps the newest results_buffer_size entries.
func TestResultsKeepNewest(t *testing.T) {
	s := newResults(3)
	for id := 1; id <= 5; id++ {
		s.put(batch{{frameID: id}})
	}
	var got []int
	for b, ok := s.pop(); ok; b, ok = s.pop() {
		got = append(got, b[0].frameID)
	}
	if want := []int{3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
}

// Numbers that are floats upstream stay floats in Python; timestamps are
// what datetime.isoformat() writes for a naive datetime.
func TestWireFormats(t *testing.T) {
	for v, want := range map[pyFloat]string{25: "25.0", 0: "0.0", 0.5: "0.5", -3: "-3.0", 1e21: "1e+21"} {
		b, err := v.MarshalJSON()
		if err != nil || string(b) != want {
			t.Errorf("pyFloat(%v) = %s, %v; want %s", float64(v), b, err, want)
		}
	}
	at := time.Date(2026, 11, 29, 13, 28, 41, 340322999, time.Local)
	if got, want := pyTime(at), "2026-11-29T13:28:41.340322"; got != want {
		t.Errorf("pyTime = %q, want %q", got, want)
	}
	if got := pyTime(at.Truncate(time.Second)); !strings.HasSuffix(got, ":41.000000") {
		t.Errorf("pyTime of a whole second = %q, want six zero digits", got)
	}
}
