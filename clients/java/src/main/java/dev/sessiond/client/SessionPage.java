package dev.sessiond.client;

import java.util.List;

/** One page of listSessions; nextPageToken is empty on the last page. */
public record SessionPage(List<Session> sessions, String nextPageToken) {}
