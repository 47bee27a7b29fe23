package manager

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Handler answers one request. Implementations must return within their own
// bounds; the server never waits on a handler longer than that.
type Handler interface {
	Handle(ctx context.Context, req *protocol.Request) protocol.Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *protocol.Request) protocol.Response

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *protocol.Request) protocol.Response {
	return f(ctx, req)
}

// Middleware decorates a Handler; tracing, metrics and logging are middleware.
type Middleware func(Handler) Handler

// Chain wraps h so that the first middleware is outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Recover turns a panicking handler into an internal_error response, so a
// bug in one command never takes the manager down.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *protocol.Request) (resp protocol.Response) {
			defer func() {
				if v := recover(); v != nil {
					if log != nil {
						log.Error("handler panic", "type", req.Type, "panic", v, "stack", string(debug.Stack()))
					}
					resp = protocol.Failure(protocol.InternalError(fmt.Sprintf("internal error handling %s", req.Type)))
					resp.PipelineID = req.PipelineID
				}
			}()
			return next.Handle(ctx, req)
		})
	}
}

// LogRequests logs one line per request at debug level, failures at warn.
func LogRequests(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			start := time.Now()
			resp := next.Handle(ctx, req)
			level := slog.LevelDebug
			if !resp.OK() {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "request", "type", req.Type, "pipeline_id", resp.PipelineID,
				"status", resp.Status, "error_type", resp.ErrorType, "duration", time.Since(start))
			return resp
		})
	}
}
