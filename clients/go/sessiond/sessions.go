package sessiond

import (
	"context"
	"iter"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// Kind is what a session stands for (README "Sessions and their kinds").
type Kind = pb.SessionKind

// The session kinds.
const (
	KindMethodCall      = pb.SessionKind_SESSION_KIND_METHOD_CALL
	KindWebCall         = pb.SessionKind_SESSION_KIND_WEB_CALL
	KindMethodStream    = pb.SessionKind_SESSION_KIND_METHOD_STREAM
	KindStreaming       = pb.SessionKind_SESSION_KIND_STREAMING
	KindFutureCall      = pb.SessionKind_SESSION_KIND_FUTURE_CALL
	KindInternal        = pb.SessionKind_SESSION_KIND_INTERNAL
	KindWebUser         = pb.SessionKind_SESSION_KIND_WEB_USER
	KindRemoteUser      = pb.SessionKind_SESSION_KIND_REMOTE_USER
	KindStoredProcedure = pb.SessionKind_SESSION_KIND_STORED_PROCEDURE
	KindStandalone      = pb.SessionKind_SESSION_KIND_STANDALONE
)

// State, EndReason and EventType are the generated enums.
type (
	State     = pb.SessionState
	EndReason = pb.EndReason
	EventType = pb.EventType
)

// The session states.
const (
	StateOpen  = pb.SessionState_SESSION_STATE_OPEN
	StateEnded = pb.SessionState_SESSION_STATE_ENDED
)

// The reasons a session ends.
const (
	EndClosed          = pb.EndReason_END_REASON_CLOSED
	EndFailed          = pb.EndReason_END_REASON_FAILED
	EndIdleTimeout     = pb.EndReason_END_REASON_IDLE_TIMEOUT
	EndLifetimeReached = pb.EndReason_END_REASON_LIFETIME_REACHED
	EndRevoked         = pb.EndReason_END_REASON_REVOKED
	EndServerShutdown  = pb.EndReason_END_REASON_SERVER_SHUTDOWN
	EndServerCrashed   = pb.EndReason_END_REASON_SERVER_CRASHED
)

// The event types WatchSessions streams.
const (
	EventCreated           = pb.EventType_EVENT_TYPE_CREATED
	EventClosed            = pb.EventType_EVENT_TYPE_CLOSED
	EventExpired           = pb.EventType_EVENT_TYPE_EXPIRED
	EventRevoked           = pb.EventType_EVENT_TYPE_REVOKED
	EventPrivilegesChanged = pb.EventType_EVENT_TYPE_PRIVILEGES_CHANGED
	EventStorageChanged    = pb.EventType_EVENT_TYPE_STORAGE_CHANGED
)

// NoTimeout, as NewSession.IdleTimeout or Lifetime, asks for none.
const NoTimeout time.Duration = -1

// NewSession is what CreateSession starts.
type NewSession struct {
	Kind   Kind
	UserID string
	Labels Labels
	// IdleTimeout and Lifetime: 0 takes the kind's default, NoTimeout none.
	IdleTimeout, Lifetime time.Duration
	Privileges, Roles     []string
	// Storage is the initial storage: values are what structpb.NewValue
	// takes (nil, bool, numbers, string, []any, map[string]any).
	Storage map[string]any
	// Trusted holds every privilege (STORED_PROCEDURE and STANDALONE only).
	Trusted bool
	// RequestID is an optional idempotency key (a random UUID).
	RequestID string
}

// Labels describe a session; all optional.
type Labels struct {
	Endpoint, Method, FutureCall, ClientAddress, UserAgent string
}

// Session is a session as sessiond knows it; unset times are zero.
type Session struct {
	ID                                        string
	Kind                                      Kind
	UserID                                    string
	Labels                                    Labels
	CreatedAt, LastActiveAt, ExpiresAt        time.Time
	EndedAt                                   time.Time
	IdleTimeout, Lifetime, Duration, TimeLeft time.Duration
	State                                     State
	EndReason                                 EndReason
	Trusted                                   bool
}

// Created is CreateSession's answer.
type Created struct {
	// Token is the session's secret, shown only here.
	Token   string
	Session Session
	// Sequence is the CREATED event's number (see Ref.After).
	Sequence uint64
}

// Identity is Authenticate's answer: who the token's session acts for and
// whether it holds the privileges asked.
type Identity struct {
	SessionID, UserID, Tenant string
	Kind                      Kind
	Roles                     []string
	ExpiresAt                 time.Time
	// Privileges are the ones asked, Granted the answer for each, in order.
	Privileges []string
	Granted    []bool
	AllGranted bool
	Trusted    bool
}

// Holds answers whether privilege was asked and granted (names are
// case-insensitive).
func (id *Identity) Holds(privilege string) bool {
	for i, asked := range id.Privileges {
		if strings.EqualFold(asked, privilege) && i < len(id.Granted) {
			return id.Granted[i]
		}
	}
	return false
}

// Closed is CloseSession's answer.
type Closed struct {
	SessionID string
	// LogID names the kept log; empty when the log policy kept none.
	LogID     string
	EndReason EndReason
}

// SessionFilter selects sessions for ListSessions; zero fields match all.
type SessionFilter struct {
	UserID    string
	Kind      Kind
	State     State
	PageSize  int32
	PageToken string
}

// SessionPage is one page of ListSessions.
type SessionPage struct {
	Sessions []Session
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// RevokeFilter selects the sessions RevokeSessions ends; at least one field.
type RevokeFilter struct {
	UserID     string
	Kind       Kind
	SessionIDs []string
}

// Revoked is RevokeSessions' answer.
type Revoked struct {
	SessionIDs []string
	Sequence   uint64
}

// WatchFilter selects WatchSessions' events. AfterSequence nil: events
// from now on; 0: every retained event; n: those after event n.
type WatchFilter struct {
	SessionID, UserID string
	Kind              Kind
	AfterSequence     *uint64
}

// Event is one session event.
type Event struct {
	Sequence          uint64
	Type              EventType
	SessionID, UserID string
	Kind              Kind
	EndReason         EndReason
	At                time.Time
}

// CloseOption adds to CloseSession.
type CloseOption func(*pb.CloseSessionRequest)

// Failed closes the session as failed (END_REASON_FAILED) with this error.
func Failed(message, stackTrace string) CloseOption {
	return func(r *pb.CloseSessionRequest) { r.Error, r.StackTrace = message, stackTrace }
}

// CreateSession starts a session and answers its token.
func (c *Client) CreateSession(ctx context.Context, s NewSession) (*Created, error) {
	storage, err := toValues(s.Storage)
	if err != nil {
		return nil, err
	}
	answer, err := c.sessions.CreateSession(ctx, &pb.CreateSessionRequest{
		Kind:        s.Kind,
		UserId:      s.UserID,
		Labels:      s.Labels.proto(),
		IdleTimeout: timeoutProto(s.IdleTimeout),
		Lifetime:    timeoutProto(s.Lifetime),
		Privileges:  s.Privileges,
		Roles:       s.Roles,
		Storage:     storage,
		Trusted:     s.Trusted,
		RequestId:   s.RequestID,
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Created{Token: answer.GetToken(), Session: sessionFrom(answer.GetSession()), Sequence: answer.GetSequence()}, nil
}

// Authenticate is the one call per request: whose session the token is, and
// whether it holds privileges. A token to sign in again with is a
// *LoginRequiredError (or its SessionNotFoundError, SessionEndedError).
func (c *Client) Authenticate(ctx context.Context, token string, privileges ...string) (*Identity, error) {
	answer, err := c.sessions.Authenticate(ctx, &pb.AuthenticateRequest{Token: token, Privileges: privileges})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Identity{
		SessionID:  answer.GetSessionId(),
		UserID:     answer.GetUserId(),
		Tenant:     answer.GetTenant(),
		Kind:       answer.GetKind(),
		Roles:      answer.GetRoles(),
		ExpiresAt:  timeFrom(answer.GetExpiresAt()),
		Privileges: privileges,
		Granted:    answer.GetGranted(),
		AllGranted: answer.GetAllGranted(),
		Trusted:    answer.GetTrusted(),
	}, nil
}

// GetSession looks a session up. Counts as activity.
func (c *Client) GetSession(ctx context.Context, ref Ref) (*Session, error) {
	answer, err := c.sessions.GetSession(ctx, &pb.GetSessionRequest{Session: ref.proto()})
	if err != nil {
		return nil, fromStatus(err)
	}
	s := sessionFrom(answer.GetSession())
	return &s, nil
}

// TouchSession marks activity and answers the new expiry (zero: none).
func (c *Client) TouchSession(ctx context.Context, ref Ref) (time.Time, error) {
	answer, err := c.sessions.TouchSession(ctx, &pb.TouchSessionRequest{Session: ref.proto()})
	if err != nil {
		return time.Time{}, fromStatus(err)
	}
	return timeFrom(answer.GetExpiresAt()), nil
}

// CloseSession ends a session; closing again answers the same.
func (c *Client) CloseSession(ctx context.Context, ref Ref, opts ...CloseOption) (*Closed, error) {
	request := &pb.CloseSessionRequest{Session: ref.proto()}
	for _, opt := range opts {
		opt(request)
	}
	answer, err := c.sessions.CloseSession(ctx, request)
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Closed{SessionID: answer.GetSessionId(), LogID: answer.GetLogId(), EndReason: answer.GetEndReason()}, nil
}

// ListSessions answers one page of sessions, newest first.
func (c *Client) ListSessions(ctx context.Context, f SessionFilter) (*SessionPage, error) {
	answer, err := c.sessions.ListSessions(ctx, &pb.ListSessionsRequest{
		UserId: f.UserID, Kind: f.Kind, State: f.State, PageSize: f.PageSize, PageToken: f.PageToken,
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	page := &SessionPage{NextPageToken: answer.GetNextPageToken()}
	for _, s := range answer.GetSessions() {
		page.Sessions = append(page.Sessions, sessionFrom(s))
	}
	return page, nil
}

// RevokeSessions ends every open session matching f (END_REASON_REVOKED).
func (c *Client) RevokeSessions(ctx context.Context, f RevokeFilter) (*Revoked, error) {
	answer, err := c.sessions.RevokeSessions(ctx, &pb.RevokeSessionsRequest{
		UserId: f.UserID, Kind: f.Kind, SessionIds: f.SessionIDs,
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Revoked{SessionIDs: answer.GetSessionIds(), Sequence: answer.GetSequence()}, nil
}

// WatchSessions streams events until ctx ends or the stream fails; the
// failure is the last item (a cancelled ctx ends the loop without one).
//
//	for event, err := range client.WatchSessions(ctx, sessiond.WatchFilter{}) { ... }
func (c *Client) WatchSessions(ctx context.Context, f WatchFilter) iter.Seq2[*Event, error] {
	return func(yield func(*Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.sessions.WatchSessions(ctx, &pb.WatchSessionsRequest{
			SessionId: f.SessionID, UserId: f.UserID, Kind: f.Kind, AfterSequence: f.AfterSequence,
		})
		for err == nil {
			var event *pb.WatchSessionsResponse
			if event, err = stream.Recv(); err == nil && !yield(eventFrom(event), nil) {
				return
			}
		}
		if ctx.Err() == nil {
			yield(nil, fromStatus(err))
		}
	}
}

func (l Labels) proto() *pb.SessionLabels {
	if l == (Labels{}) {
		return nil
	}
	return &pb.SessionLabels{
		Endpoint: l.Endpoint, Method: l.Method, FutureCall: l.FutureCall,
		ClientAddress: l.ClientAddress, UserAgent: l.UserAgent,
	}
}

func sessionFrom(s *pb.Session) Session {
	l := s.GetLabels()
	return Session{
		ID:     s.GetSessionId(),
		Kind:   s.GetKind(),
		UserID: s.GetUserId(),
		Labels: Labels{
			Endpoint: l.GetEndpoint(), Method: l.GetMethod(), FutureCall: l.GetFutureCall(),
			ClientAddress: l.GetClientAddress(), UserAgent: l.GetUserAgent(),
		},
		CreatedAt:    timeFrom(s.GetCreatedAt()),
		LastActiveAt: timeFrom(s.GetLastActiveAt()),
		ExpiresAt:    timeFrom(s.GetExpiresAt()),
		EndedAt:      timeFrom(s.GetEndedAt()),
		IdleTimeout:  durationFrom(s.GetIdleTimeout()),
		Lifetime:     durationFrom(s.GetLifetime()),
		Duration:     durationFrom(s.GetDuration()),
		TimeLeft:     durationFrom(s.GetTimeLeft()),
		State:        s.GetState(),
		EndReason:    s.GetEndReason(),
		Trusted:      s.GetTrusted(),
	}
}

func eventFrom(e *pb.WatchSessionsResponse) *Event {
	return &Event{
		Sequence: e.GetSequence(), Type: e.GetType(), SessionID: e.GetSessionId(), UserID: e.GetUserId(),
		Kind: e.GetKind(), EndReason: e.GetEndReason(), At: timeFrom(e.GetAt()),
	}
}

// timeoutProto: 0 is unset (the default), NoTimeout is zero (none).
func timeoutProto(d time.Duration) *durationpb.Duration {
	switch {
	case d == 0:
		return nil
	case d < 0:
		return durationpb.New(0)
	}
	return durationpb.New(d)
}

func timeFrom(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func durationFrom(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}
