package dev.sessiond.client;

import java.util.List;

/** One page of queryLogs; nextPageToken is empty on the last page. */
public record LogPage(List<LogRecord> records, String nextPageToken) {}
