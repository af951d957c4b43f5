package sessiond

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// Scope is how far a posted message reaches: the generated enum.
type Scope = pb.MessageScope

const (
	// ScopeGlobal (the default): every subscriber on every replica sharing
	// the store; numbered and kept for replay.
	ScopeGlobal = pb.MessageScope_MESSAGE_SCOPE_GLOBAL
	// ScopeLocal: only the subscribers on the replica that took the post;
	// not numbered (sequence 0), not kept.
	ScopeLocal = pb.MessageScope_MESSAGE_SCOPE_LOCAL
)

// Posted is Post's answer.
type Posted struct {
	// Sequence is the message's number in its channel (1, 2, …); 0 for a
	// local message.
	Sequence uint64
	// LocalDeliveries counts the subscriptions of the replica that took the
	// post it was handed to.
	LocalDeliveries uint32
}

// PostOption adds to Post.
type PostOption func(*pb.PostRequest)

// WithScope sets how far the message reaches (default ScopeGlobal).
func WithScope(scope Scope) PostOption { return func(r *pb.PostRequest) { r.Scope = scope } }

// WithTypeName names what the payload is, for subscribers to tell
// messages apart (e.g. chat.Line).
func WithTypeName(name string) PostOption { return func(r *pb.PostRequest) { r.TypeName = name } }

// Post sends payload (any value structpb.NewValue takes: maps, slices,
// strings, numbers, bools, nil) to channel: a name of the tenant's own
// (chat/room-42), session:ID or user:ID.
func (c *Client) Post(ctx context.Context, channel string, payload any, opts ...PostOption) (*Posted, error) {
	value, err := structpb.NewValue(payload)
	if err != nil {
		st := status.New(codes.InvalidArgument, fmt.Sprintf("a payload of type %T: %v", payload, err))
		return nil, &InvalidArgumentError{base: &Error{Code: st.Code(), Message: st.Message(), status: st}}
	}
	request := &pb.PostRequest{Channel: channel, Payload: value}
	for _, opt := range opts {
		opt(request)
	}
	answer, err := c.messages.Post(ctx, request)
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Posted{Sequence: answer.GetSequence(), LocalDeliveries: answer.GetLocalDeliveries()}, nil
}

// Message is a message as a subscription receives it.
type Message struct {
	Channel string
	// Sequence is its number in the channel, for resuming with After; 0
	// for a local message.
	Sequence uint64
	// Payload is the payload as posted, as structpb.Value.AsInterface
	// gives it (numbers as float64).
	Payload  any
	TypeName string
	// PostedAt is when sessiond accepted the post (millisecond precision).
	PostedAt time.Time
	Scope    Scope
}

// SessionEnd says a session of a followed session: or user: channel
// ended. A Final one (a session: channel) is the subscription's last item.
type SessionEnd struct {
	Channel, SessionID string
	EndReason          EndReason
	Final              bool
}

// Item is one item of a subscription: a Message or a SessionEnd, the other
// nil.
type Item struct {
	Message    *Message
	SessionEnd *SessionEnd
}

// SubscribeOption adds to Subscribe.
type SubscribeOption func(*pb.SubscribeRequest)

// After replays, on every channel, the kept messages after sequence first
// (0: every kept message); without it the subscription is live only.
func After(sequence uint64) SubscribeOption {
	return func(r *pb.SubscribeRequest) {
		for _, channel := range r.Channels {
			channel.AfterSequence = &sequence
		}
	}
}

// Subscription is an open Subscribe stream. Cancel Subscribe's context
// (or call Close) to end it.
type Subscription struct {
	// Channels are the channels followed, as named.
	Channels []string
	stream   pb.MessageService_SubscribeClient
	cancel   context.CancelFunc
	closed   atomic.Bool
}

// Subscribe follows channels; it returns once sessiond has put the
// subscription in place, so every message posted after it returns reaches
// it. A cursor that cannot be served is a *CursorError.
func (c *Client) Subscribe(ctx context.Context, channels []string, opts ...SubscribeOption) (*Subscription, error) {
	request := &pb.SubscribeRequest{}
	for _, channel := range channels {
		request.Channels = append(request.Channels, &pb.ChannelSubscription{Channel: channel})
	}
	for _, opt := range opts {
		opt(request)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.messages.Subscribe(ctx, request)
	var first *pb.SubscribeResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	return &Subscription{Channels: first.GetSubscribed().GetChannels(), stream: stream, cancel: cancel}, nil
}

// Recv waits for the next item. It answers io.EOF once the subscription
// has ended (after a final SessionEnd) or was closed, and the typed error
// (*SubscriberTooSlowError, …) when sessiond ended it.
func (s *Subscription) Recv() (Item, error) {
	for {
		if s.closed.Load() {
			return Item{}, io.EOF
		}
		answer, err := s.stream.Recv()
		if errors.Is(err, io.EOF) || (err != nil && s.closed.Load()) {
			s.Close()
			return Item{}, io.EOF
		}
		if err != nil {
			s.Close()
			return Item{}, fromStatus(err)
		}
		if m := answer.GetMessage(); m != nil {
			return Item{Message: &Message{
				Channel: m.GetChannel(), Sequence: m.GetSequence(), Payload: m.GetPayload().AsInterface(),
				TypeName: m.GetTypeName(), PostedAt: timeFrom(m.GetPostedAt()), Scope: m.GetScope(),
			}}, nil
		}
		if e := answer.GetSessionEnded(); e != nil {
			return Item{SessionEnd: &SessionEnd{
				Channel: e.GetChannel(), SessionID: e.GetSessionId(), EndReason: e.GetEndReason(),
				Final: e.GetEndsSubscription(),
			}}, nil
		}
	}
}

// Close cancels the stream; Recv answers io.EOF from then on. It may be
// called from another goroutine than Recv's.
func (s *Subscription) Close() {
	s.closed.Store(true)
	s.cancel()
}

// CursorError: OUT_OF_RANGE for a subscription's After, reason
// CURSOR_EXPIRED (messages after it are no longer kept: resynchronise,
// then subscribe after Latest) or CURSOR_AHEAD (beyond the channel's last
// message).
type CursorError struct {
	*base
	// Channel is the channel whose cursor was refused.
	Channel string
	// Oldest is the oldest kept sequence, Latest the channel's last.
	Oldest, Latest uint64
}

func (e *CursorError) Unwrap() error { return e.base }

// Expired is whether messages after the cursor are no longer kept.
func (e *CursorError) Expired() bool { return e.Reason == "CURSOR_EXPIRED" }

// SubscriberTooSlowError: a subscription fell too far behind and was cut
// off (RESOURCE_EXHAUSTED, SUBSCRIBER_TOO_SLOW); resubscribe after the
// last sequence received. Also a ResourceExhaustedError.
type SubscriberTooSlowError struct{ *ResourceExhaustedError }

func (e *SubscriberTooSlowError) Unwrap() error { return e.ResourceExhaustedError }

func cursorError(failure *Error) *CursorError {
	oldest, _ := strconv.ParseUint(failure.Metadata["oldest_sequence"], 10, 64)
	latest, _ := strconv.ParseUint(failure.Metadata["latest_sequence"], 10, 64)
	return &CursorError{base: failure, Channel: failure.Metadata["channel"], Oldest: oldest, Latest: latest}
}
