package worker

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// syntheticScheme prefixes references to generated video, so pipelines can
// run anywhere without cameras or files.
const syntheticScheme = "synthetic://"

// defaultFPS is the synthetic frame rate when neither ?fps= nor max_fps says.
const defaultFPS = 30

// source produces luma planes, one per call, in frame order.
type source interface {
	props() sourceProps
	// read fills luma (width*height bytes) with frame number id (from
	// 1); io.EOF means the source ended cleanly.
	read(luma []byte, id int) error
	close() error
}

// sourceProps are the source_properties of a status report.
type sourceProps struct {
	width, height int
	fps           float64
	total         int // -1 when endless
	isFile        bool
}

// syntheticSource renders the moving pattern; it never ends.
type syntheticSource struct{ p sourceProps }

func (s *syntheticSource) props() sourceProps { return s.p }

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

// openSource validates a video_reference and opens it. maxFPS caps the rate
// (0 means no cap). Errors name the reference: they become invalid_payload.
func openSource(raw any, maxFPS float64) (source, string, error) {
	ref, ok := raw.(string)
	if !ok {
		b, _ := json.Marshal(raw)
		return nil, "", fmt.Errorf("unsupported video_reference %s: want %sWxH[?fps=N] or a path to a .y4m file", clipText(string(b)), syntheticScheme)
	}
	switch {
	case strings.HasPrefix(ref, syntheticScheme):
		p, err := parseSynthetic(ref)
		if err != nil {
			return nil, ref, fmt.Errorf("bad video_reference %q: %v", clipText(ref), err)
		}
		if p.fps == 0 {
			p.fps = maxFPS
		}
		if p.fps == 0 {
			p.fps = defaultFPS
		}
		return &syntheticSource{p: p}, ref, nil
	case strings.HasSuffix(strings.ToLower(ref), ".y4m"):
		src, err := openY4M(ref)
		if err != nil {
			return nil, ref, fmt.Errorf("cannot read video_reference %q: %v", clipText(ref), err)
		}
		return src, ref, nil
	}
	return nil, ref, fmt.Errorf("unsupported video_reference %q: want %sWxH[?fps=N] or a path to a .y4m file", clipText(ref), syntheticScheme)
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
