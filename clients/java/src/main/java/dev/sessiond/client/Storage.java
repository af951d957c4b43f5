package dev.sessiond.client;

import java.util.Map;

/** A session's storage values (see {@link Values}) and its version. */
public record Storage(Map<String, Object> values, long version) {}
