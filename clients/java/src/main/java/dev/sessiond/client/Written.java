package dev.sessiond.client;

/**
 * A storage write's answer: the storage's version after it, and the change's
 * event sequence (0 when nothing changed).
 */
public record Written(long version, long sequence) {}
