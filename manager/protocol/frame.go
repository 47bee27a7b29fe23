package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxFrameBytes is the frame-size cap used when none is configured.
const DefaultMaxFrameBytes = 16 << 20

// smallFrame is the largest frame ReadFrame allocates in full before its
// bytes arrive: a stalled peer holds at most this much.
const smallFrame = 64 << 10

// HeaderSize is the width of the length prefix.
const HeaderSize = 4

var (
	// ErrEmptyFrame is returned for a header announcing zero bytes.
	ErrEmptyFrame = errors.New("protocol: empty frame")
	// ErrTruncated is returned when the peer closes before the announced body arrived.
	ErrTruncated = errors.New("protocol: truncated frame")
)

// FrameTooLargeError reports a header that announces more than the cap.
// The body is never allocated.
type FrameTooLargeError struct {
	Size, Limit uint64
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("protocol: frame of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// ReadFrame reads one frame from r. It never allocates more than limit bytes
// (DefaultMaxFrameBytes when limit <= 0). A clean EOF before any header byte
// is returned as io.EOF.
func ReadFrame(r io.Reader, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxFrameBytes
	}
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	switch {
	case size == 0:
		return nil, ErrEmptyFrame
	case uint64(size) > uint64(limit):
		return nil, &FrameTooLargeError{Size: uint64(size), Limit: uint64(limit)}
	}
	if size <= smallFrame {
		// Small frames (every request, most replies) in one exact
		// allocation.
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, ErrTruncated
			}
			return nil, err
		}
		return body, nil
	}
	// Grow with the data actually received, so a peer that announces a
	// large frame and stalls costs little memory.
	var buf bytes.Buffer
	buf.Grow(smallFrame)
	if n, err := io.CopyN(&buf, r, int64(size)); err != nil {
		if errors.Is(err, io.EOF) && n < int64(size) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// AppendFrame appends the header and body of one frame to dst.
func AppendFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// WriteFrame writes header and body with a single Write call: the upstream
// client reads the header with one short-tolerant read(4), so the two must
// not be split across writes.
func WriteFrame(w io.Writer, body []byte) error {
	if uint64(len(body)) > 1<<32-1 {
		return &FrameTooLargeError{Size: uint64(len(body)), Limit: 1<<32 - 1}
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderSize+len(body)), body))
	return err
}
