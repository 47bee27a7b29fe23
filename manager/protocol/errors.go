package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Error types of the upstream protocol.
const (
	ErrTypeInvalidPayload = "invalid_payload"
	ErrTypeAuthorisation  = "authorisation_error"
	ErrTypeNotFound       = "not_found"
	ErrTypeOperation      = "operation_error"
	ErrTypeInternal       = "internal_error"
)

// Error is a failure response as a Go error.
type Error struct {
	Type    string // one of the ErrType constants
	Class   string // the error class upstream would name, if known
	Message string
	Public  string // public_error_message
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Public
	}
	if e.Class == ClassNotAllowed {
		// Kept in the text (histories keep only the text): it marks an
		// answer by upstream's state rule (IsNotAllowedText).
		return fmt.Sprintf("%s: %s: %s", e.Type, e.Class, msg)
	}
	return fmt.Sprintf("%s: %s", e.Type, msg)
}

// Is matches another *Error of the same Type, so callers can write
// errors.Is(err, &protocol.Error{Type: protocol.ErrTypeNotFound}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Type == e.Type && (t.Message == "" || t.Message == e.Message)
}

// InvalidPayload returns an invalid_payload error.
func InvalidPayload(msg string) *Error {
	return &Error{Type: ErrTypeInvalidPayload, Class: "InvalidPayload", Message: msg, Public: msg}
}

// NotFound returns the upstream not_found error for a pipeline id.
func NotFound(pipelineID string) *Error {
	msg := fmt.Sprintf("Could not find InferencePipeline with id=%s.", pipelineID)
	return &Error{Type: ErrTypeNotFound, Class: "NotFound", Message: msg, Public: msg}
}

// OperationError returns an operation_error.
func OperationError(msg string) *Error {
	return &Error{Type: ErrTypeOperation, Class: "OperationError", Message: msg, Public: msg}
}

// InternalError returns an internal_error.
func InternalError(msg string) *Error {
	return &Error{Type: ErrTypeInternal, Class: "InternalError", Message: msg, Public: msg}
}

// Failure turns err into a failure response; errors that are not *Error
// become internal_error.
func Failure(err error) Response {
	var e *Error
	if !errors.As(err, &e) {
		e = InternalError(err.Error())
	}
	return Response{
		Status:             StatusFailure,
		ErrorType:          e.Type,
		ErrorClass:         e.Class,
		ErrorMessage:       e.Message,
		PublicErrorMessage: e.Public,
	}
}

// ClassNotAllowed is upstream's error_class when its stream refuses mute
// (allowed only while RUNNING) or resume (only while PAUSED or MUTED).
const ClassNotAllowed = "StreamOperationNotAllowedError"

// notAllowedText is the part of a state-rule refusal's message that names
// the state, as upstream's VideoSource words it.
const notAllowedText = " stream in state: StreamState."

// NotAllowed returns upstream's refusal of operation op ("MUTE",
// "RESUME") in source state state (inference 1.5.0: the manager answers
// operation_error with this public message and the stream's own message).
func NotAllowed(op, state string) *Error {
	return &Error{
		Type:    ErrTypeOperation,
		Class:   ClassNotAllowed,
		Message: "Could not " + op + notAllowedText + state,
		Public:  "Cannot get pipeline status in the current state of InferencePipeline.",
	}
}

// IsNotAllowedText reports whether an error text (an *Error's Error(), as
// histories keep it) is a refusal by upstream's state rule (error_class
// ClassNotAllowed, from Corral or any upstream-like server): a correct
// answer, not a failure of the manager.
func IsNotAllowedText(s string) bool {
	return strings.HasPrefix(s, ErrTypeOperation+": "+ClassNotAllowed+": ")
}
