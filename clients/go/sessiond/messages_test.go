package sessiond_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/sessiond/sessiond/clients/go/sessiond"
)

// channelName is a channel no other test follows.
func channelName(t *testing.T) string {
	return fmt.Sprintf("test/%s-%d", t.Name(), time.Now().UnixNano())
}

func TestASubscriberReceivesPostsAndASessionChannelEndsWithItsSession(t *testing.T) {
	client := connect(t, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	channel := channelName(t)
	subscription, err := client.Subscribe(ctx, []string{channel})
	if err != nil {
		t.Fatal(err)
	}
	defer subscription.Close()
	payload := map[string]any{"from": "alice", "n": 3.0, "tags": []any{"a", nil, true}}
	posted, err := client.Post(ctx, channel, payload, sessiond.WithTypeName("chat.Line"))
	if err != nil || *posted != (sessiond.Posted{Sequence: 1, LocalDeliveries: 1}) {
		t.Fatalf("Post: %+v, %v", posted, err)
	}
	item, err := subscription.Recv()
	if err != nil || item.Message == nil {
		t.Fatalf("Recv: %+v, %v", item, err)
	}
	m := item.Message
	if m.Channel != channel || m.Sequence != 1 || m.TypeName != "chat.Line" || m.Scope != sessiond.ScopeGlobal ||
		!reflect.DeepEqual(m.Payload, payload) || m.PostedAt.IsZero() {
		t.Errorf("message %+v", m)
	}

	// Replay after 0, then a cursor beyond the last message.
	replay, err := client.Subscribe(ctx, []string{channel}, sessiond.After(0))
	if err != nil {
		t.Fatal(err)
	}
	if item, err := replay.Recv(); err != nil || item.Message == nil || item.Message.Sequence != 1 {
		t.Errorf("replayed %+v, %v", item, err)
	}
	replay.Close()
	if _, err := replay.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after Close: %v", err)
	}
	_, err = client.Subscribe(ctx, []string{channel}, sessiond.After(5))
	ahead := as[*sessiond.CursorError](t, err)
	if ahead.Expired() || ahead.Channel != channel || ahead.Oldest != 1 || ahead.Latest != 1 {
		t.Errorf("cursor error %+v", ahead)
	}

	// A session channel ends with a final SessionEnd when the session closes.
	created := createWebUser(t, client, "go-messages")
	sessionChannel := "session:" + created.Session.ID
	ending, err := client.Subscribe(ctx, []string{sessionChannel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CloseSession(ctx, sessiond.Token(created.Token)); err != nil {
		t.Fatal(err)
	}
	item, err = ending.Recv()
	want := sessiond.SessionEnd{Channel: sessionChannel, SessionID: created.Session.ID, EndReason: sessiond.EndClosed, Final: true}
	if err != nil || item.SessionEnd == nil || *item.SessionEnd != want {
		t.Fatalf("Recv: %+v, %v", item.SessionEnd, err)
	}
	if _, err := ending.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the final item: %v", err)
	}
}
