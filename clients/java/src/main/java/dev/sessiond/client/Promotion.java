package dev.sessiond.client;

import java.time.Instant;

/** A time-limited elevation; sequence is the event promote recorded (0 when read). */
public record Promotion(String id, String privilege, Instant expiresAt, long sequence) {

  static Promotion from(dev.sessiond.v1.Promotion p, long sequence) {
    return new Promotion(p.getPromotionId(), p.getPrivilege(), Model.instant(p.hasExpiresAt(), p.getExpiresAt()), sequence);
  }
}
