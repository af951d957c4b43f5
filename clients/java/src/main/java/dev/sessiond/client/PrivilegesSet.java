package dev.sessiond.client;

import java.util.List;

/** setPrivileges' answer: the expanded privileges now held, the change's event sequence. */
public record PrivilegesSet(List<String> privileges, long sequence) {}
