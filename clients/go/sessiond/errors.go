package sessiond

import (
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of sessiond's reasons.
const ErrorDomain = "sessiond.dev"

// Error is any error sessiond answered, or a failure to reach it. Every
// typed error below wraps one, so errors.As(err, new(*Error)) matches
// them all.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason (e.g. SESSION_EXPIRED); empty when
	// the answer had none.
	Reason string
	// Message is the status message.
	Message string
	// Metadata is the ErrorInfo metadata (e.g. end_reason,
	// current_version); nil when none.
	Metadata map[string]string
	status   *status.Status
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("sessiond: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("sessiond: %s: %s", e.Code, e.Message)
}

// GRPCStatus lets status.FromError and status.Code read the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// base embeds *Error in the typed errors below, promoting its fields (Code,
// Reason, Message, Metadata) and methods; their Unwrap answers the *Error.
type base = Error

// LoginRequiredError means the user must sign in again: the token is
// missing, malformed, unknown, or its session has ended. Reason tells
// which. SessionNotFoundError and SessionEndedError wrap it.
type LoginRequiredError struct{ *base }

func (e *LoginRequiredError) Unwrap() error { return e.base }

// SessionNotFoundError: no session has that token or id (in the caller's
// tenant). Also a LoginRequiredError.
type SessionNotFoundError struct{ *LoginRequiredError }

func (e *SessionNotFoundError) Unwrap() error { return e.LoginRequiredError }

// SessionEndedError: the session has ended (closed, expired or revoked).
// Also a LoginRequiredError.
type SessionEndedError struct {
	*LoginRequiredError
	// EndReason is why it ended: closed, failed, idle_timeout,
	// lifetime_reached, revoked, server_shutdown or server_crashed.
	EndReason string
}

func (e *SessionEndedError) Unwrap() error { return e.LoginRequiredError }

// VersionConflictError: a storage write named an expected version that is
// no longer current (or UpdateStorage ran out of attempts).
type VersionConflictError struct {
	*base
	// CurrentVersion is the storage's version when the write was refused.
	CurrentVersion uint64
}

func (e *VersionConflictError) Unwrap() error { return e.base }

// PermissionDeniedError: the caller's key may not make this call.
type PermissionDeniedError struct{ *base }

func (e *PermissionDeniedError) Unwrap() error { return e.base }

// UnauthenticatedError: the calling service's own credentials failed
// (API_KEY_MISSING, API_KEY_INVALID, CLIENT_CERTIFICATE_UNKNOWN) — not
// the user's token.
type UnauthenticatedError struct{ *base }

func (e *UnauthenticatedError) Unwrap() error { return e.base }

// FieldViolation is one invalid field of a request.
type FieldViolation struct {
	// Field is the field's path, e.g. `values[cart]` or `privileges[1]`.
	Field, Description string
}

// InvalidArgumentError: the request was invalid; Violations names the
// fields.
type InvalidArgumentError struct {
	*base
	Violations []FieldViolation
}

func (e *InvalidArgumentError) Unwrap() error { return e.base }

// ResourceExhaustedError: a limit was reached (a full session storage,
// too many calls).
type ResourceExhaustedError struct{ *base }

func (e *ResourceExhaustedError) Unwrap() error { return e.base }

// UnavailableError: sessiond or its store could not be reached; the call
// may be retried.
type UnavailableError struct{ *base }

func (e *UnavailableError) Unwrap() error { return e.base }

// DeadlineExceededError: the call's deadline passed before its answer.
type DeadlineExceededError struct{ *base }

func (e *DeadlineExceededError) Unwrap() error { return e.base }

// The reasons that mean the user must sign in again.
var (
	endedReasons   = map[string]bool{"SESSION_CLOSED": true, "SESSION_EXPIRED": true, "SESSION_REVOKED": true}
	tokenReasons   = map[string]bool{"TOKEN_MISSING": true, "TOKEN_MALFORMED": true}
	notFoundReason = "SESSION_NOT_FOUND"
)

// fromStatus turns a gRPC error into the matching typed error; nil stays
// nil.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	failure := &Error{Code: st.Code(), Message: st.Message(), status: st}
	var violations []FieldViolation
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				failure.Reason, failure.Metadata = d.GetReason(), d.GetMetadata()
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				violations = append(violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	login := func() *LoginRequiredError { return &LoginRequiredError{failure} }
	switch code, reason := failure.Code, failure.Reason; {
	case reason == notFoundReason && (code == codes.Unauthenticated || code == codes.NotFound):
		return &SessionNotFoundError{login()}
	case endedReasons[reason] && (code == codes.Unauthenticated || code == codes.FailedPrecondition):
		return &SessionEndedError{LoginRequiredError: login(), EndReason: failure.Metadata["end_reason"]}
	case code == codes.Unauthenticated && tokenReasons[reason]:
		return login()
	case code == codes.Unauthenticated:
		return &UnauthenticatedError{failure}
	case code == codes.Aborted && reason == "VERSION_CONFLICT":
		current, _ := strconv.ParseUint(failure.Metadata["current_version"], 10, 64)
		return &VersionConflictError{base: failure, CurrentVersion: current}
	case code == codes.PermissionDenied:
		return &PermissionDeniedError{failure}
	case code == codes.InvalidArgument:
		return &InvalidArgumentError{base: failure, Violations: violations}
	case code == codes.OutOfRange && (reason == "CURSOR_EXPIRED" || reason == "CURSOR_AHEAD"):
		return cursorError(failure)
	case code == codes.ResourceExhausted && reason == "SUBSCRIBER_TOO_SLOW":
		return &SubscriberTooSlowError{&ResourceExhaustedError{failure}}
	case code == codes.ResourceExhausted:
		return &ResourceExhaustedError{failure}
	case code == codes.Unavailable:
		return &UnavailableError{failure}
	case code == codes.DeadlineExceeded:
		return &DeadlineExceededError{failure}
	}
	return failure
}
