package dev.sessiond.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CancellationException;

/**
 * Any error sessiond answered, or a failure to reach it: the gRPC status
 * code, the google.rpc.ErrorInfo reason and metadata (domain {@value
 * #DOMAIN}), and the message. Each documented failure is a subclass.
 */
public class SessiondException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The google.rpc.ErrorInfo domain of sessiond's reasons. */
  public static final String DOMAIN = "sessiond.dev";

  private static final Set<String> ENDED = Set.of("SESSION_CLOSED", "SESSION_EXPIRED", "SESSION_REVOKED");
  private static final Set<String> TOKEN = Set.of("TOKEN_MISSING", "TOKEN_MALFORMED");

  /** What a failed call answered. */
  record Failure(
      Status.Code code,
      String reason,
      String message,
      Map<String, String> metadata,
      List<InvalidArgumentException.FieldViolation> violations,
      Throwable cause) {}

  private final transient Failure failure;

  SessiondException(Failure failure) {
    super(failure.reason().isEmpty()
            ? failure.code() + ": " + failure.message()
            : failure.code() + " (" + failure.reason() + "): " + failure.message(),
        failure.cause());
    this.failure = failure;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return failure.code();
  }

  /** The ErrorInfo reason (e.g. SESSION_EXPIRED); empty when none. */
  public String reason() {
    return failure.reason();
  }

  /** The status message. */
  public String statusMessage() {
    return failure.message();
  }

  /** The ErrorInfo metadata (e.g. end_reason, current_version). */
  public Map<String, String> metadata() {
    return failure.metadata();
  }

  Failure failure() {
    return failure;
  }

  /** The typed exception for a failed call's throwable. */
  static SessiondException from(Throwable thrown) {
    if (thrown instanceof SessiondException known) {
      return known;
    }
    Status status = Status.fromThrowable(thrown);
    if (thrown instanceof CancellationException) {
      status = Status.CANCELLED.withCause(thrown);
    }
    String reason = "";
    Map<String, String> metadata = Map.of();
    List<InvalidArgumentException.FieldViolation> violations = new ArrayList<>();
    com.google.rpc.Status details = StatusProto.fromThrowable(thrown);
    if (details != null) {
      for (Any detail : details.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            if (DOMAIN.equals(info.getDomain())) {
              reason = info.getReason();
              metadata = Map.copyOf(info.getMetadataMap());
            }
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
              violations.add(new InvalidArgumentException.FieldViolation(v.getField(), v.getDescription()));
            }
          }
        } catch (InvalidProtocolBufferException e) {
          // A detail that does not parse is left out.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    Failure failure = new Failure(status.getCode(), reason, message, metadata, List.copyOf(violations), thrown);
    return of(failure);
  }

  static SessiondException of(Failure failure) {
    Status.Code code = failure.code();
    String reason = failure.reason();
    if (reason.equals("SESSION_NOT_FOUND") && (code == Status.Code.UNAUTHENTICATED || code == Status.Code.NOT_FOUND)) {
      return new SessionNotFoundException(failure);
    }
    if (ENDED.contains(reason) && (code == Status.Code.UNAUTHENTICATED || code == Status.Code.FAILED_PRECONDITION)) {
      return new SessionEndedException(failure);
    }
    if (code == Status.Code.UNAUTHENTICATED) {
      return TOKEN.contains(reason) ? new LoginRequiredException(failure) : new UnauthenticatedException(failure);
    }
    if (code == Status.Code.ABORTED && reason.equals("VERSION_CONFLICT")) {
      return new VersionConflictException(failure);
    }
    if (code == Status.Code.OUT_OF_RANGE && (reason.equals("CURSOR_EXPIRED") || reason.equals("CURSOR_AHEAD"))) {
      return new CursorOutOfRangeException(failure);
    }
    if (code == Status.Code.RESOURCE_EXHAUSTED && reason.equals("SUBSCRIBER_TOO_SLOW")) {
      return new SubscriberTooSlowException(failure);
    }
    return switch (code) {
      case PERMISSION_DENIED -> new PermissionDeniedException(failure);
      case INVALID_ARGUMENT -> new InvalidArgumentException(failure);
      case RESOURCE_EXHAUSTED -> new ResourceExhaustedException(failure);
      case UNAVAILABLE -> new UnavailableException(failure);
      case DEADLINE_EXCEEDED -> new DeadlineExceededException(failure);
      default -> new SessiondException(failure);
    };
  }
}
