package dev.sessiond.client;

import java.util.List;

/** The request was invalid; {@link #violations()} names the fields. */
public class InvalidArgumentException extends SessiondException {
  private static final long serialVersionUID = 1L;

  InvalidArgumentException(Failure failure) {
    super(failure);
  }

  /** One invalid field: its path (e.g. {@code privileges[1]}) and why. */
  public record FieldViolation(String field, String description) {}

  /** The invalid fields, from the answer's google.rpc.BadRequest. */
  public List<FieldViolation> violations() {
    return failure().violations();
  }
}
