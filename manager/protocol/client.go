package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultClientTimeout bounds a whole request when the context has no deadline.
const DefaultClientTimeout = 30 * time.Second

// Client talks to a stream manager, one connection per request as the
// upstream client does. The zero value is not usable: set Addr.
type Client struct {
	// Addr is host:port of the manager.
	Addr string
	// Timeout bounds each request (dial, write, read) when ctx has no
	// earlier deadline; 0 means DefaultClientTimeout.
	Timeout time.Duration
	// Traceparent, if set, returns the W3C traceparent to send with a
	// request; tracing wraps the client through this seam.
	Traceparent func(ctx context.Context) string
	// MaxFrameBytes caps response frames; 0 means DefaultMaxFrameBytes.
	MaxFrameBytes int
}

// Do sends one request and returns the decoded envelope. A failure response
// is not a Go error here; transport and decoding problems are.
func (c *Client) Do(ctx context.Context, req *Request) (Envelope, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultClientTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if c.Traceparent != nil && req.Traceparent == "" {
		req = req.Clone()
		req.Traceparent = c.Traceparent(ctx)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Envelope{}, fmt.Errorf("protocol: encode request: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return Envelope{}, fmt.Errorf("protocol: dial %s: %w", c.Addr, err)
	}
	defer conn.Close()
	// The deadline bounds every step; closing on cancel unblocks it early.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := WriteFrame(conn, body); err != nil {
		return Envelope{}, c.wrap(ctx, "send", err)
	}
	frame, err := ReadFrame(conn, c.MaxFrameBytes)
	if err != nil {
		return Envelope{}, c.wrap(ctx, "receive", err)
	}
	var env Envelope
	if err := json.Unmarshal(frame, &env); err != nil {
		return Envelope{}, fmt.Errorf("protocol: decode response: %w", err)
	}
	if env.PipelineID != nil {
		env.Response.PipelineID = *env.PipelineID
	}
	return env, nil
}

func (c *Client) wrap(ctx context.Context, step string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("protocol: %s: %w", step, ctx.Err())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// The connection deadline is the context's; it may fire first.
		return fmt.Errorf("protocol: %s: %w (%v)", step, context.DeadlineExceeded, err)
	}
	return fmt.Errorf("protocol: %s: %w", step, err)
}

// Call sends one request and returns its response; a failure response is
// returned as an *Error alongside the response.
func (c *Client) Call(ctx context.Context, typ, pipelineID string, fields map[string]any) (Response, error) {
	req := &Request{Type: typ, PipelineID: pipelineID, Fields: map[string]json.RawMessage{}}
	for k, v := range fields {
		raw, err := json.Marshal(v)
		if err != nil {
			return Response{}, fmt.Errorf("protocol: encode %q: %w", k, err)
		}
		req.Fields[k] = raw
	}
	env, err := c.Do(ctx, req)
	if err != nil {
		return Response{}, err
	}
	return env.Response, env.Response.Err()
}

// List returns the ids of the non-idle pipelines.
func (c *Client) List(ctx context.Context) ([]string, error) {
	resp, err := c.Call(ctx, TypeListPipelines, "", nil)
	if err != nil {
		return nil, err
	}
	raw, _ := resp.Fields["pipelines"].([]any)
	ids := make([]string, 0, len(raw))
	for _, v := range raw {
		if s, ok := v.(string); ok {
			ids = append(ids, s)
		}
	}
	return ids, nil
}

// Init starts a pipeline and returns its id. The id is returned on failure
// too, as upstream does.
func (c *Client) Init(ctx context.Context, cfg InitConfig) (string, error) {
	fields, err := cfg.fields()
	if err != nil {
		return "", err
	}
	resp, err := c.Call(ctx, TypeInit, "", fields)
	return resp.PipelineID, err
}

// Status returns the pipeline's status report.
func (c *Client) Status(ctx context.Context, id string) (Response, error) {
	return c.Call(ctx, TypeStatus, id, nil)
}

// Pause mutes a pipeline (the upstream client's name for "mute").
func (c *Client) Pause(ctx context.Context, id string) error {
	_, err := c.Call(ctx, TypeMute, id, nil)
	return err
}

// Resume resumes a muted pipeline.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.Call(ctx, TypeResume, id, nil)
	return err
}

// Consume pops one buffered result.
func (c *Client) Consume(ctx context.Context, id string, excludedFields ...string) (Response, error) {
	if excludedFields == nil {
		excludedFields = []string{}
	}
	return c.Call(ctx, TypeConsumeResult, id, map[string]any{"excluded_fields": excludedFields})
}

// Terminate stops a pipeline; it returns after the worker process exited.
func (c *Client) Terminate(ctx context.Context, id string) error {
	_, err := c.Call(ctx, TypeTerminate, id, nil)
	return err
}

// Inspect returns the manager's own view of its pipelines.
func (c *Client) Inspect(ctx context.Context) (Response, error) {
	return c.Call(ctx, TypeInspect, "", nil)
}

// Chaos injects a fault into one worker (managers started with chaos only).
func (c *Client) Chaos(ctx context.Context, id, fault string, params map[string]any) error {
	fields := map[string]any{ChaosFieldFault: fault}
	for k, v := range params {
		fields[k] = v
	}
	_, err := c.Call(ctx, TypeChaos, id, fields)
	return err
}
