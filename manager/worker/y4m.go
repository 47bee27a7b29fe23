package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// YUV4MPEG2 is the only file format the worker reads: it is uncompressed,
// so a real decoder fits in a page and tests can write files with WriteY4M.

const (
	y4mMagic = "YUV4MPEG2"
	// y4mMaxLine bounds header lines, so a file without newlines cannot
	// make the reader buffer it whole.
	y4mMaxLine = 4096
	// maxSide bounds frame width and height (synthetic and file sources).
	maxSide = 4096
)

// y4mHeader is the part of a stream header the worker needs.
type y4mHeader struct {
	width, height int
	fps           float64
	// chromaBytes is the size of the chroma (and alpha) planes that
	// follow each luma plane; the model only reads luma.
	chromaBytes int
	// headerLen is the byte length of the stream header line.
	headerLen int
}

// parseY4MHeader parses the stream header line (without its newline).
func parseY4MHeader(line string) (y4mHeader, error) {
	fields := strings.Fields(line)
	if len(fields) == 0 || fields[0] != y4mMagic {
		return y4mHeader{}, errors.New("not a YUV4MPEG2 stream")
	}
	h := y4mHeader{fps: 30, headerLen: len(line) + 1}
	colour := "C420"
	for _, f := range fields[1:] {
		val := f[1:]
		var err error
		switch f[0] {
		case 'W':
			h.width, err = strconv.Atoi(val)
		case 'H':
			h.height, err = strconv.Atoi(val)
		case 'F':
			h.fps, err = parseRate(val)
		case 'C':
			colour = f
		}
		if err != nil {
			return y4mHeader{}, fmt.Errorf("bad header field %q", f)
		}
	}
	if h.width < 1 || h.width > maxSide || h.height < 1 || h.height > maxSide {
		return y4mHeader{}, fmt.Errorf("frame size %dx%d outside 1..%d", h.width, h.height, maxSide)
	}
	cw, ch := (h.width+1)/2, (h.height+1)/2
	switch colour {
	case "C420", "C420jpeg", "C420paldv", "C420mpeg2":
		h.chromaBytes = 2 * cw * ch
	case "C422":
		h.chromaBytes = 2 * cw * h.height
	case "C411":
		h.chromaBytes = 2 * ((h.width + 3) / 4) * h.height
	case "C444":
		h.chromaBytes = 2 * h.width * h.height
	case "C444alpha":
		h.chromaBytes = 3 * h.width * h.height
	case "Cmono":
		h.chromaBytes = 0
	default:
		return y4mHeader{}, fmt.Errorf("unsupported colour space %q", colour)
	}
	return h, nil
}

// parseRate parses "num:den" as frames per second.
func parseRate(s string) (float64, error) {
	num, den, ok := strings.Cut(s, ":")
	if !ok {
		den = "1"
	}
	n, err1 := strconv.Atoi(num)
	d, err2 := strconv.Atoi(den)
	if err1 != nil || err2 != nil || n <= 0 || d <= 0 {
		return 0, errors.New("bad frame rate")
	}
	return float64(n) / float64(d), nil
}

// y4mSource reads luma planes from an open YUV4MPEG2 file.
type y4mSource struct {
	file   *os.File
	r      *bufio.Reader
	header y4mHeader
	total  int
}

// openY4M opens path and parses its header.
func openY4M(path string) (*y4mSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	line, err := readLine(r)
	if err == nil {
		var h y4mHeader
		if h, err = parseY4MHeader(line); err == nil {
			src := &y4mSource{file: f, r: r, header: h, total: -1}
			if st, err := f.Stat(); err == nil {
				// Exact when frame headers carry no parameters, as
				// WriteY4M and most encoders write them.
				per := int64(len("FRAME\n") + h.width*h.height + h.chromaBytes)
				src.total = int((st.Size() - int64(h.headerLen)) / per)
			}
			return src, nil
		}
	}
	f.Close()
	return nil, err
}

// readLine reads one newline-terminated line of at most y4mMaxLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var buf bytes.Buffer
	for buf.Len() <= y4mMaxLine {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && buf.Len() > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if b == '\n' {
			return buf.String(), nil
		}
		buf.WriteByte(b)
	}
	return "", errors.New("header line too long")
}

func (s *y4mSource) live() bool { return false }

func (s *y4mSource) props() sourceProps {
	return sourceProps{width: s.header.width, height: s.header.height, fps: s.header.fps, total: s.total, isFile: true}
}

// read fills luma with the next frame's luma plane. It returns io.EOF at a
// clean end of file.
func (s *y4mSource) read(luma []byte, _ int) error {
	line, err := readLine(s.r)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "FRAME") {
		return fmt.Errorf("bad frame header %q", clipText(line))
	}
	if _, err := io.ReadFull(s.r, luma); err != nil {
		return fmt.Errorf("truncated frame: %w", err)
	}
	if _, err := s.r.Discard(s.header.chromaBytes); err != nil {
		return fmt.Errorf("truncated frame: %w", err)
	}
	return nil
}

func (s *y4mSource) close() error { return s.file.Close() }

// WriteY4M writes a small valid YUV4MPEG2 (4:2:0) stream of a moving pattern,
// the same one synthetic sources show, so that files have non-zero motion.
// Tests and demos use it to make sources.
func WriteY4M(w io.Writer, width, height, frames int, fps int) error {
	if width < 1 || width > maxSide || height < 1 || height > maxSide || frames < 0 || fps < 1 {
		return fmt.Errorf("worker: WriteY4M: bad size %dx%d, %d frames at %d fps", width, height, frames, fps)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s W%d H%d F%d:1 Ip A1:1 C420jpeg\n", y4mMagic, width, height, fps)
	luma := make([]byte, width*height)
	chroma := bytes.Repeat([]byte{128}, 2*((width+1)/2)*((height+1)/2))
	for i := 1; i <= frames; i++ {
		renderPattern(luma, width, height, i)
		bw.WriteString("FRAME\n")
		bw.Write(luma)
		bw.Write(chroma)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("worker: WriteY4M: %w", err)
	}
	return nil
}

// clipText shortens file or user text quoted in messages to its first and
// last 32 bytes: the end of a long path is its file name, the part a user
// needs (a long TMPDIR must not clip it away).
func clipText(s string) string {
	const half = 32
	if len(s) <= 2*half {
		return s
	}
	return s[:half] + "..." + s[len(s)-half:]
}
