package otel

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/corral-dev/corral/manager/protocol"
)

// Attribute keys. rpc.*, error.type, process.* and server.* follow the
// OpenTelemetry semantic conventions; corral.* are this project's.
const (
	keyRPCSystem      = attribute.Key("rpc.system")
	keyRPCMethod      = attribute.Key("rpc.method")
	keyErrorType      = attribute.Key("error.type")
	keyPipelineID     = attribute.Key("pipeline.id")
	keyPipelineState  = attribute.Key("pipeline.state")
	keyOutcome        = attribute.Key("corral.outcome")
	keyCommand        = attribute.Key("corral.command")
	keyRequestID      = attribute.Key("corral.request_id")
	keyTimedOut       = attribute.Key("corral.probe.timed_out")
	keyFailures       = attribute.Key("corral.health.consecutive_failures")
	keyNextInterval   = attribute.Key("corral.probe.next_interval")
	keyTimeout        = attribute.Key("corral.timeout")
	keyTimeoutBefore  = attribute.Key("corral.timeout.before")
	keyTimeoutAfter   = attribute.Key("corral.timeout.after")
	keyGarbage        = attribute.Key("corral.garbage")
	keyExitReason     = attribute.Key("corral.exit.reason")
	keyExitSignal     = attribute.Key("corral.exit.signal")
	keyExitKilled     = attribute.Key("corral.exit.killed")
	keyProcessPID     = attribute.Key("process.pid")
	keyExitCode       = attribute.Key("process.exit.code")
	keyStateFrom      = attribute.Key("corral.state.from")
	keyStateTo        = attribute.Key("corral.state.to")
	keyPhase          = attribute.Key("corral.shutdown.phase")
	keyPhaseNumber    = attribute.Key("corral.shutdown.phase_number")
	keyPipelines      = attribute.Key("corral.shutdown.pipelines")
	keySurvivors      = attribute.Key("corral.shutdown.survivors")
	keyOp             = attribute.Key("corral.op")
	keyFault          = attribute.Key("corral.fault")
	keyFrameID        = attribute.Key("corral.frame.id")
	keyServiceName    = attribute.Key("service.name")
	keyServerAddress  = attribute.Key("server.address")
	outcomeSuccess    = "success"
	outcomeFailure    = "failure"
	rpcSystemCorral   = "corral"
	methodUnknownType = "unknown"
)

func rpcSystem() attribute.KeyValue { return keyRPCSystem.String(rpcSystemCorral) }

// methodName bounds span names and metric attributes to the protocol's
// command types.
func methodName(typ string) string {
	if protocol.KnownType(typ) {
		return typ
	}
	return methodUnknownType
}

func outcomeOf(resp protocol.Response) string {
	if resp.OK() {
		return outcomeSuccess
	}
	return outcomeFailure
}

// endWithResponse records resp's outcome on span: error.type and an Error
// status only on failure, status left unset on success.
func endWithResponse(span trace.Span, resp protocol.Response) {
	if !span.IsRecording() {
		return
	}
	if resp.OK() {
		span.SetAttributes(keyOutcome.String(outcomeSuccess))
		return
	}
	errType := resp.ErrorType
	if errType == "" {
		errType = "_OTHER"
	}
	span.SetAttributes(keyOutcome.String(outcomeFailure), keyErrorType.String(errType))
	msg := resp.ErrorMessage
	if msg == "" {
		msg = resp.PublicErrorMessage
	}
	span.SetStatus(codes.Error, msg)
}
