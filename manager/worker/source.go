package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// syntheticScheme prefixes references to generated video, so pipelines can
// run anywhere without cameras or files.
const syntheticScheme = "synthetic://"

// defaultFPS is the synthetic frame rate when neither ?fps= nor max_fps says.
const defaultFPS = 30

// maxSources bounds the elements of a video_reference list: every source
// has a reader goroutine and, for decoded media, an ffmpeg child.
const maxSources = 16

// source produces luma planes, one per call, in frame order.
type source interface {
	props() sourceProps
	// live reports that read blocks until the source's next frame exists
	// (a camera, a stream, a decoder paced at the media's rate); the
	// reader paces the other sources at their rate itself.
	live() bool
	// read fills luma (width*height bytes) with frame number id (from
	// 1); io.EOF means the source ended cleanly.
	read(luma []byte, id int) error
	close() error
}

// sourceProps are the source_properties of a status report.
type sourceProps struct {
	width, height int
	fps           float64
	total         int // -1 when endless or unknown
	isFile        bool
}

// sourceSpec is one validated element of video_reference. Opening is left
// to the source's reader goroutine: a camera or a stream may take long to
// connect or never answer, and init must not wait for it (upstream answers
// init first and reports a source that cannot be opened in status).
type sourceSpec struct {
	reference string // source_reference in reports
	// reconnectable sources (network streams, cameras) are reopened with
	// backoff when they end, fail or stall after having delivered frames.
	reconnectable bool
	isFile        bool
	// open opens the source; ctx ends when the pipeline stops or the
	// watchdog gives up on the attempt.
	open func(ctx context.Context) (source, error)
}

// decoding is how the worker decodes media that is neither synthetic nor
// YUV4MPEG2: through an ffmpeg child scaled to a fixed size.
type decoding struct {
	ffmpeg        string // executable name or path; "" means "ffmpeg"
	width, height int
}

// syntheticSource renders the moving pattern; it never ends.
type syntheticSource struct{ p sourceProps }

func (s *syntheticSource) props() sourceProps { return s.p }

func (s *syntheticSource) live() bool { return false }

func (s *syntheticSource) read(luma []byte, id int) error {
	renderPattern(luma, s.p.width, s.p.height, id)
	return nil
}

func (s *syntheticSource) close() error { return nil }

// renderPattern draws frame i of a diagonal gradient that scrolls by 3 levels
// per frame under a bright box that moves by 2 pixels per frame: the gradient
// gives every pixel a small difference, the box a large one, so motion and
// motion_fraction are both non-zero.
func renderPattern(luma []byte, width, height, i int) {
	for y := range height {
		row := luma[y*width : (y+1)*width]
		for x := range row {
			row[x] = byte((x + y + 3*i) & 0x7f)
		}
	}
	side := max(1, min(width, height)/4)
	x0 := (2 * i) % max(1, width-side+1)
	y0 := (i) % max(1, height-side+1)
	for y := y0; y < y0+side && y < height; y++ {
		for x := x0; x < x0+side && x < width; x++ {
			luma[y*width+x] = 235
		}
	}
}

// parseReferences validates a video_reference as upstream's model types it
// (str, int or a list of them; one source per element, source_id by
// position). Only malformed references are errors (they become
// invalid_payload): a file that is missing or a stream that refuses is
// reported later, in status, as upstream does. maxFPS caps generated
// sources' rate (0: no cap).
func parseReferences(raw any, maxFPS float64, dec decoding) ([]sourceSpec, error) {
	list, isList := raw.([]any)
	if !isList {
		list = []any{raw}
	}
	if len(list) == 0 || len(list) > maxSources {
		return nil, fmt.Errorf("video_reference must name 1..%d sources, got %d", maxSources, len(list))
	}
	specs := make([]sourceSpec, 0, len(list))
	for _, el := range list {
		spec, err := parseReference(el, maxFPS, dec)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func parseReference(raw any, maxFPS float64, dec decoding) (sourceSpec, error) {
	switch ref := raw.(type) {
	case float64: // a JSON number: a camera device id
		if ref != math.Trunc(ref) || ref < 0 || ref > 1<<16 {
			return sourceSpec{}, fmt.Errorf("video_reference %v is not a device id (a non-negative integer)", ref)
		}
		id := int(ref)
		return sourceSpec{
			reference: strconv.Itoa(id), reconnectable: true,
			open: func(ctx context.Context) (source, error) {
				return openFFmpeg(ctx, dec, []string{"-f", "v4l2"}, fmt.Sprintf("/dev/video%d", id), false)
			},
		}, nil
	case string:
		return parseStringReference(ref, maxFPS, dec)
	}
	b, _ := json.Marshal(raw)
	return sourceSpec{}, fmt.Errorf("unsupported video_reference %s: want a URL, a file path, a device id, %sWxH[?fps=N], or a list of them", clipText(string(b)), syntheticScheme)
}

// networkSchemes are the URL schemes of streams: reconnectable, and paced
// by the sender rather than by ffmpeg's -re.
var networkSchemes = []string{"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "mms", "hls"}

func parseStringReference(ref string, maxFPS float64, dec decoding) (sourceSpec, error) {
	if ref == "" {
		return sourceSpec{}, errors.New("video_reference is empty")
	}
	if strings.HasPrefix(ref, syntheticScheme) {
		p, err := parseSynthetic(ref)
		if err != nil {
			return sourceSpec{}, fmt.Errorf("bad video_reference %q: %v", clipText(ref), err)
		}
		if p.fps == 0 {
			p.fps = maxFPS
		}
		if p.fps == 0 {
			p.fps = defaultFPS
		}
		return sourceSpec{reference: ref, open: func(context.Context) (source, error) {
			return &syntheticSource{p: p}, nil
		}}, nil
	}
	scheme, _, hasScheme := strings.Cut(ref, "://")
	scheme = strings.ToLower(scheme)
	if hasScheme && slices.Contains(networkSchemes, scheme) {
		return sourceSpec{reference: ref, reconnectable: true, open: func(ctx context.Context) (source, error) {
			return openFFmpeg(ctx, dec, nil, ref, false)
		}}, nil
	}
	path := ref
	if hasScheme && scheme == "file" {
		path = strings.TrimPrefix(ref[len("file"):], "://")
	}
	if !hasScheme || scheme == "file" {
		if strings.HasSuffix(strings.ToLower(path), ".y4m") {
			return sourceSpec{reference: ref, isFile: true, open: func(context.Context) (source, error) {
				return openY4M(path)
			}}, nil
		}
		// Any other container: ffmpeg reads it at its own rate (-re),
		// as a camera would deliver it.
		return sourceSpec{reference: ref, isFile: true, open: func(ctx context.Context) (source, error) {
			return openFFmpeg(ctx, dec, []string{"-re"}, path, true)
		}}, nil
	}
	// An unknown scheme is handed to ffmpeg, as upstream hands it to
	// OpenCV: a protocol ffmpeg does not know fails in status.
	return sourceSpec{reference: ref, open: func(ctx context.Context) (source, error) {
		return openFFmpeg(ctx, dec, nil, ref, false)
	}}, nil
}

// parseSynthetic parses "synthetic://WxH[?fps=N]"; fps 0 means unset.
func parseSynthetic(ref string) (sourceProps, error) {
	rest := strings.TrimPrefix(ref, syntheticScheme)
	size, query, _ := strings.Cut(rest, "?")
	ws, hs, ok := strings.Cut(size, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w < 1 || w > maxSide || h < 1 || h > maxSide {
		return sourceProps{}, fmt.Errorf("size must be WxH with both in 1..%d", maxSide)
	}
	p := sourceProps{width: w, height: h, total: -1}
	q, err := url.ParseQuery(query)
	if err != nil {
		return sourceProps{}, fmt.Errorf("bad query: %v", err)
	}
	for k, vs := range q {
		if k != "fps" || len(vs) != 1 {
			return sourceProps{}, fmt.Errorf("unknown or repeated parameter %q (only fps)", k)
		}
		fps, err := strconv.ParseFloat(vs[0], 64)
		if err != nil || !(fps > 0) || fps > 1000 {
			return sourceProps{}, fmt.Errorf("fps must be a number in (0, 1000]")
		}
		p.fps = fps
	}
	return p, nil
}
