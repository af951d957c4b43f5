package dev.sessiond.client;

import java.util.List;

/**
 * What a session holds: expanded privileges (lower case, sorted), those
 * granted directly, roles, promotions in force, and whether it is trusted.
 */
public record Privileges(
    List<String> privileges,
    List<String> grantedPrivileges,
    List<String> roles,
    List<Promotion> promotions,
    boolean trusted) {}
