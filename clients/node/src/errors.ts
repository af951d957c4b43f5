/**
 * sessiond's failures as error classes.
 *
 * Every call rejects with a `SessiondError` subclass, never a bare grpc-js
 * `ServiceError` (the original is the error's `cause`). Each carries the gRPC
 * `code`, the `google.rpc.ErrorInfo` `reason` and `metadata` (domain
 * sessiond.dev) when the answer had one, and the server's `message`:
 *
 *     SessiondError
 *     ├── LoginRequired          the user must sign in again (reason says why)
 *     │   ├── SessionNotFound    no such session (for this tenant)
 *     │   └── SessionEnded       closed, expired or revoked (endReason)
 *     ├── VersionConflict        storage moved on (currentVersion)
 *     ├── PermissionDenied       the API key's role may not do this
 *     ├── Unauthenticated        the API key (or client certificate) was refused
 *     ├── InvalidArgument        a field was invalid (violations)
 *     ├── ResourceExhausted      a limit was reached
 *     │   └── SubscriberTooSlow  a subscription fell too far behind and was cut off
 *     ├── CursorOutOfRange       a subscription's afterSequence cannot be served
 *     │   ├── CursorExpired      messages after it are no longer kept
 *     │   └── CursorAhead        it is beyond the channel's last message
 *     ├── Unavailable            sessiond or its store cannot answer now; retry
 *     └── DeadlineExceeded       no answer within the call's deadline
 */

import { status as Code, type ServiceError } from '@grpc/grpc-js';

import { BadRequest, ErrorInfo } from './gen/google/rpc/error_details.js';
import { Status } from './gen/google/rpc/status.js';

export { status as Code } from '@grpc/grpc-js';

/** One invalid field of a request (google.rpc.BadRequest). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A call failed. Every sessiond error is one of these. */
export class SessiondError extends Error {
  /** The gRPC status code (`Code.NOT_FOUND`, …). */
  readonly code: Code;
  /** The google.rpc.ErrorInfo reason, e.g. "SESSION_EXPIRED"; "" when none. */
  readonly reason: string;
  /** The ErrorInfo metadata, e.g. `{ end_reason: 'expired' }`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** google.rpc.BadRequest's field violations. */
  readonly violations: readonly FieldViolation[];

  constructor(
    code: Code,
    message: string,
    reason = '',
    metadata: Record<string, string> = {},
    violations: FieldViolation[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
    this.metadata = metadata;
    this.violations = violations;
  }
}

/**
 * The token cannot be used: the user must sign in again. `reason` says why:
 * TOKEN_MISSING, TOKEN_MALFORMED, SESSION_NOT_FOUND, SESSION_CLOSED,
 * SESSION_EXPIRED or SESSION_REVOKED.
 */
export class LoginRequired extends SessiondError {}

/** No session of the caller's tenant has that token or id. */
export class SessionNotFound extends LoginRequired {}

/** The session has ended; `endReason` says how ("closed", "expired", "revoked", …). */
export class SessionEnded extends LoginRequired {
  get endReason(): string {
    return this.metadata.end_reason ?? '';
  }
}

/** A storage write named an expected version that is no longer current. */
export class VersionConflict extends SessiondError {
  get currentVersion(): number | undefined {
    const value = this.metadata.current_version;
    return value === undefined ? undefined : Number(value);
  }
}

/** The calling service's role may not do this (e.g. queryLogs needs an admin key). */
export class PermissionDenied extends SessiondError {}

/**
 * The calling service's own credentials were refused: reason API_KEY_MISSING,
 * API_KEY_INVALID or CLIENT_CERTIFICATE_UNKNOWN.
 */
export class Unauthenticated extends SessiondError {}

/** The request was invalid; `violations` names each field. */
export class InvalidArgument extends SessiondError {}

/** A limit was reached (a session's storage full, too many calls). */
export class ResourceExhausted extends SessiondError {}

/**
 * A subscription fell more than --message-subscriber-buffer messages behind
 * and was cut off (reason SUBSCRIBER_TOO_SLOW); subscribe again from the
 * last sequence received.
 */
export class SubscriberTooSlow extends ResourceExhausted {}

function optionalNumber(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/**
 * OUT_OF_RANGE for a subscription's afterSequence: `channel`, and the
 * channel's `oldestSequence` (the oldest kept) and `latestSequence`.
 */
export class CursorOutOfRange extends SessiondError {
  get channel(): string {
    return this.metadata.channel ?? '';
  }

  get oldestSequence(): number | undefined {
    return optionalNumber(this.metadata.oldest_sequence);
  }

  get latestSequence(): number | undefined {
    return optionalNumber(this.metadata.latest_sequence);
  }
}

/**
 * Messages after the cursor are no longer kept (CURSOR_EXPIRED): messages
 * were missed; read the state needed and subscribe again from `latestSequence`.
 */
export class CursorExpired extends CursorOutOfRange {}

/** The cursor is beyond the channel's last message (CURSOR_AHEAD). */
export class CursorAhead extends CursorOutOfRange {}

/** sessiond or its store could not answer; the call may be retried. */
export class Unavailable extends SessiondError {}

/** No answer within the call's deadline. */
export class DeadlineExceeded extends SessiondError {}

const TOKEN_REASONS = new Set(['TOKEN_MISSING', 'TOKEN_MALFORMED']);
const ENDED_REASONS = new Set(['SESSION_CLOSED', 'SESSION_EXPIRED', 'SESSION_REVOKED']);

const BY_CODE: Partial<Record<Code, typeof SessiondError>> = {
  [Code.PERMISSION_DENIED]: PermissionDenied,
  [Code.INVALID_ARGUMENT]: InvalidArgument,
  [Code.RESOURCE_EXHAUSTED]: ResourceExhausted,
  [Code.UNAVAILABLE]: Unavailable,
  [Code.DEADLINE_EXCEEDED]: DeadlineExceeded,
};

function errorClass(code: Code, reason: string): typeof SessiondError {
  if (reason === 'SESSION_NOT_FOUND' && (code === Code.UNAUTHENTICATED || code === Code.NOT_FOUND)) {
    return SessionNotFound;
  }
  if (ENDED_REASONS.has(reason) && (code === Code.UNAUTHENTICATED || code === Code.FAILED_PRECONDITION)) {
    return SessionEnded;
  }
  if (code === Code.UNAUTHENTICATED) return TOKEN_REASONS.has(reason) ? LoginRequired : Unauthenticated;
  if (code === Code.ABORTED && reason === 'VERSION_CONFLICT') return VersionConflict;
  if (code === Code.OUT_OF_RANGE && reason === 'CURSOR_EXPIRED') return CursorExpired;
  if (code === Code.OUT_OF_RANGE && reason === 'CURSOR_AHEAD') return CursorAhead;
  if (code === Code.RESOURCE_EXHAUSTED && reason === 'SUBSCRIBER_TOO_SLOW') return SubscriberTooSlow;
  return BY_CODE[code] ?? SessiondError;
}

const TYPE_URL = 'type.googleapis.com/';

/** The typed error for a failed grpc-js call. */
export function fromServiceError(error: ServiceError): SessiondError {
  let reason = '';
  let metadata: Record<string, string> = {};
  let violations: FieldViolation[] = [];
  const [encoded] = error.metadata?.get('grpc-status-details-bin') ?? [];
  if (encoded instanceof Buffer) {
    for (const detail of Status.decode(encoded).details) {
      if (detail.typeUrl === `${TYPE_URL}google.rpc.ErrorInfo`) {
        const info = ErrorInfo.decode(detail.value);
        reason = info.reason;
        metadata = { ...info.metadata };
      } else if (detail.typeUrl === `${TYPE_URL}google.rpc.BadRequest`) {
        violations = BadRequest.decode(detail.value).fieldViolations.map(({ field, description }) => ({
          field,
          description,
        }));
      }
    }
  }
  const ErrorClass = errorClass(error.code, reason);
  return new ErrorClass(error.code, error.details || error.message, reason, metadata, violations, { cause: error });
}
