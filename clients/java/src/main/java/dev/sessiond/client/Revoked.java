package dev.sessiond.client;

import java.util.List;

/** revokeSessions' answer: the sessions it ended, its last event's sequence. */
public record Revoked(List<String> sessionIds, long sequence) {}
