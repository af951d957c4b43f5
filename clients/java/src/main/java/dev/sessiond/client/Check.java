package dev.sessiond.client;

import java.util.List;

/** checkPrivileges' answer: the combined answer, and held per privilege in order. */
public record Check(boolean granted, List<Boolean> held) {}
