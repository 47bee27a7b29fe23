// Package manager is Corral's reference stream manager: a pipeline table
// that supervises one worker per video pipeline, a handler chain that
// answers the wire protocol of manager/protocol, adaptive timeouts, health
// probes that never block clients, a warm pool, and a three-phase bounded
// shutdown.
//
// The core has no logger of its own beyond log/slog and imports no
// telemetry: instrumentation wraps it through three seams, a Handler
// Middleware chain, an EventHook receiving typed events, and Snapshot.
package manager
