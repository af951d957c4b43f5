package dev.sessiond.client;

/**
 * createSession's answer: the secret token (shown only here), the session,
 * and the sequence of its CREATED event (see {@link Ref#after}).
 */
public record Created(String token, Session session, long sequence) {}
