package dev.sessiond.client;

import dev.sessiond.v1.EndReason;

/** closeSession's answer; logId is empty when the log policy kept no log. */
public record Closed(String sessionId, String logId, EndReason endReason) {}
