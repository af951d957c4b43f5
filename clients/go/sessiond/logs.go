package sessiond

import (
	"context"
	"time"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// LogLevel is a log entry's severity.
type LogLevel = pb.LogLevel

// The log levels, in increasing order.
const (
	LevelDebug   = pb.LogLevel_LOG_LEVEL_DEBUG
	LevelInfo    = pb.LogLevel_LOG_LEVEL_INFO
	LevelWarning = pb.LogLevel_LOG_LEVEL_WARNING
	LevelError   = pb.LogLevel_LOG_LEVEL_ERROR
	LevelFatal   = pb.LogLevel_LOG_LEVEL_FATAL
)

// LogEntry is one entry to log; a zero Time is sessiond's time.
type LogEntry struct {
	Level                          LogLevel
	Message, Exception, StackTrace string
	Time                           time.Time
}

// Info is an info-level entry with message.
func Info(message string) LogEntry { return LogEntry{Level: LevelInfo, Message: message} }

// LogFilter selects QueryLogs' records; zero fields match all.
type LogFilter struct {
	SessionID, UserID    string
	Kind                 Kind
	Start, End           time.Time
	MinLevel             LogLevel
	FailedOnly, SlowOnly bool
	PageSize             int32
	PageToken            string
}

// LogRecord is a stored entry of a kept session log.
type LogRecord struct {
	LogID, SessionID, UserID       string
	Kind                           Kind
	Level                          LogLevel
	Message, Exception, StackTrace string
	ClientTime, LoggedAt           time.Time
	// Sequence is the entry's number within its session's log.
	Sequence uint64
}

// LogPage is one page of QueryLogs.
type LogPage struct {
	Records []LogRecord
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// Log appends entries to the session's log once they are committed, and
// answers how many were kept (entries under the policy's level are not).
func (c *Client) Log(ctx context.Context, ref Ref, entries ...LogEntry) (uint32, error) {
	request := &pb.LogRequest{Session: ref.proto()}
	for _, e := range entries {
		request.Entries = append(request.Entries, &pb.LogEntry{
			Level: e.Level, Message: e.Message, Exception: e.Exception, StackTrace: e.StackTrace,
			ClientTime: timeProto(e.Time),
		})
	}
	answer, err := c.logs.Log(ctx, request)
	if err != nil {
		return 0, fromStatus(err)
	}
	return answer.GetAccepted(), nil
}

// QueryLogs searches kept logs (an admin key's call).
func (c *Client) QueryLogs(ctx context.Context, f LogFilter) (*LogPage, error) {
	answer, err := c.logs.QueryLogs(ctx, &pb.QueryLogsRequest{
		SessionId: f.SessionID, UserId: f.UserID, Kind: f.Kind,
		StartTime: timeProto(f.Start), EndTime: timeProto(f.End), MinLevel: f.MinLevel,
		FailedOnly: f.FailedOnly, SlowOnly: f.SlowOnly, PageSize: f.PageSize, PageToken: f.PageToken,
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	page := &LogPage{NextPageToken: answer.GetNextPageToken()}
	for _, r := range answer.GetRecords() {
		page.Records = append(page.Records, LogRecord{
			LogID: r.GetLogId(), SessionID: r.GetSessionId(), UserID: r.GetUserId(), Kind: r.GetKind(),
			Level: r.GetLevel(), Message: r.GetMessage(), Exception: r.GetException(), StackTrace: r.GetStackTrace(),
			ClientTime: timeFrom(r.GetClientTime()), LoggedAt: timeFrom(r.GetLoggedAt()), Sequence: r.GetSequence(),
		})
	}
	return page, nil
}
