package protocol_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// serveOnce answers one connection with handle's response.
func serveOnce(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestClientCall(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn) {
		body, err := protocol.ReadFrame(c, 0)
		if err != nil {
			return
		}
		req, err := protocol.ParseRequest(body)
		if err != nil || req.Type != protocol.TypeStatus || req.PipelineID != "p1" || req.Traceparent != "00-abc" {
			return
		}
		b, _ := json.Marshal(protocol.NewEnvelope("r", protocol.Response{Status: "failure", ErrorType: "not_found", PipelineID: "p1"}))
		_ = protocol.WriteFrame(c, b)
	})
	c := &protocol.Client{Addr: addr, Timeout: 5 * time.Second, Traceparent: func(context.Context) string { return "00-abc" }}
	resp, err := c.Status(t.Context(), "p1")
	if !errors.Is(err, &protocol.Error{Type: protocol.ErrTypeNotFound}) {
		t.Fatalf("err = %v, want not_found", err)
	}
	if resp.PipelineID != "p1" {
		t.Fatalf("pipeline id = %q", resp.PipelineID)
	}
}

func TestClientBoundedWhenServerStalls(t *testing.T) {
	release := make(chan struct{})
	addr := serveOnce(t, func(c net.Conn) { <-release })
	defer close(release)
	c := &protocol.Client{Addr: addr, Timeout: 200 * time.Millisecond}
	_, err := c.List(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}
