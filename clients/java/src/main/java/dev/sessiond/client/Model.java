package dev.sessiond.client;

import com.google.protobuf.Timestamp;
import java.time.Duration;
import java.time.Instant;

/** Conversions of the generated messages' times. */
final class Model {
  private Model() {}

  /** A timestamp, or null when unset. */
  static Instant instant(boolean set, Timestamp t) {
    return set ? Instant.ofEpochSecond(t.getSeconds(), t.getNanos()) : null;
  }

  static Timestamp timestamp(Instant t) {
    return Timestamp.newBuilder().setSeconds(t.getEpochSecond()).setNanos(t.getNano()).build();
  }

  /** A duration, or null when unset. */
  static Duration duration(boolean set, com.google.protobuf.Duration d) {
    return set ? Duration.ofSeconds(d.getSeconds(), d.getNanos()) : null;
  }

  static com.google.protobuf.Duration duration(Duration d) {
    return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
  }
}
