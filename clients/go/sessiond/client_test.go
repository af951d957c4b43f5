package sessiond_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessiond/sessiond/clients/go/internal/sessiondtest"
	"github.com/sessiond/sessiond/clients/go/sessiond"
)

// forgedToken is well formed, but no session was ever given it.
var forgedToken = "sdt_" + strings.Repeat("A", 43)

// as checks that err is an E and answers it.
func as[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("got %T (%v), want %T", err, err, target)
	}
	return target
}

func TestAuthenticateAnswersTheIdentityAndEachPrivilegeAsked(t *testing.T) {
	client := connect(t, "acme")
	created := createWebUser(t, client, "bob", "Viewer")
	id, err := client.Authenticate(context.Background(), created.Token, "viewBasic", "editSales")
	if err != nil {
		t.Fatal(err)
	}
	if id.SessionID != created.Session.ID || id.UserID != "bob" || id.Tenant != "acme" || id.Kind != sessiond.KindWebUser {
		t.Errorf("identity %+v", id)
	}
	if !id.Holds("VIEWBASIC") || id.Holds("editSales") || id.AllGranted {
		t.Errorf("granted %v, all %v", id.Granted, id.AllGranted)
	}
	if len(id.Roles) != 1 || id.Roles[0] != "Viewer" && id.Roles[0] != "viewer" {
		t.Errorf("roles %v", id.Roles)
	}
	if time.Until(id.ExpiresAt) <= 0 {
		t.Errorf("expires at %v", id.ExpiresAt)
	}
}

func TestSessionsAreCreatedReadTouchedListedAndClosedByTokenOrID(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	created, err := client.CreateSession(ctx, sessiond.NewSession{
		Kind: sessiond.KindWebUser, UserID: "carol", IdleTimeout: 10 * time.Minute, Lifetime: sessiond.NoTimeout,
		Storage: map[string]any{"theme": "dark", "visits": 3},
		Labels:  sessiond.Labels{Endpoint: "shop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	byID := sessiond.ID(created.Session.ID).After(created.Sequence)
	session, err := client.GetSession(ctx, byID)
	if err != nil {
		t.Fatal(err)
	}
	if session.IdleTimeout != 10*time.Minute || session.Lifetime != 0 || session.Labels.Endpoint != "shop" || session.UserID != "carol" {
		t.Errorf("session %+v", session)
	}
	expires, err := client.TouchSession(ctx, sessiond.Token(created.Token))
	if err != nil || time.Until(expires) < 9*time.Minute {
		t.Errorf("touch: %v, %v", expires, err)
	}
	storage, err := client.GetStorage(ctx, byID)
	if err != nil || storage.Values["theme"] != "dark" || storage.Values["visits"] != 3.0 {
		t.Errorf("storage %+v, %v", storage, err)
	}
	page, err := client.ListSessions(ctx, sessiond.SessionFilter{UserID: "carol"})
	if err != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != created.Session.ID {
		t.Errorf("list %+v, %v", page, err)
	}
	closed, err := client.CloseSession(ctx, byID, sessiond.Failed("payment refused", ""))
	if err != nil || closed.EndReason != sessiond.EndFailed {
		t.Errorf("close %+v, %v", closed, err)
	}
}

func TestPrivilegesAreSetCheckedPromotedAndDemoted(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	ref := sessiond.Token(createWebUser(t, client, "dave", "Viewer").Token)
	if held, err := client.HasPrivilege(ctx, ref, "viewSales"); err != nil || held {
		t.Fatalf("has viewSales: %v, %v", held, err)
	}
	promotion, _, err := client.Promote(ctx, ref, "viewSales", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	check, err := client.CheckPrivileges(ctx, ref, sessiond.CheckAll, "viewBasic", "viewSales")
	if err != nil || !check.Granted || len(check.Held) != 2 {
		t.Errorf("check %+v, %v", check, err)
	}
	if _, err := client.Demote(ctx, ref, promotion.ID); err != nil {
		t.Fatal(err)
	}
	held, _, err := client.SetPrivileges(ctx, ref, []string{"editSales"}, nil)
	if err != nil || !contains(held, "viewsales") {
		t.Errorf("set: %v, %v", held, err)
	}
	got, err := client.GetPrivileges(ctx, ref)
	if err != nil || len(got.Promotions) != 0 || !contains(got.GrantedPrivileges, "editsales") {
		t.Errorf("get %+v, %v", got, err)
	}
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func TestUpdateStorageLosesNoIncrementUnderContention(t *testing.T) {
	const workers, increments = 8, 15
	client := connect(t, "acme", func(o *sessiond.Options) { o.UpdateAttempts = 1000 })
	ref := sessiond.Token(createWebUser(t, client, "erin").Token)
	ctx := context.Background()
	var wg sync.WaitGroup
	var attempts atomic.Int64 // more than workers*increments: writers met
	failures := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				_, err := client.UpdateStorage(ctx, ref, func(values map[string]any) error {
					attempts.Add(1)
					count, _ := values["counter"].(float64)
					values["counter"] = count + 1
					return nil
				})
				if err != nil {
					failures <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}
	storage, err := client.GetStorage(ctx, ref, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if storage.Values["counter"] != float64(workers*increments) {
		t.Errorf("counter %v, want %d", storage.Values["counter"], workers*increments)
	}
	if attempts.Load() <= workers*increments {
		t.Errorf("%d attempts for %d increments: the writers never conflicted", attempts.Load(), workers*increments)
	}
}

func TestUpdateStorageRemovesKeysAndGivesUpAfterItsAttempts(t *testing.T) {
	client := connect(t, "acme", func(o *sessiond.Options) { o.UpdateAttempts = 3 })
	ctx := context.Background()
	created, err := client.CreateSession(ctx, sessiond.NewSession{
		Kind: sessiond.KindWebUser, UserID: "frank", Storage: map[string]any{"a": 1, "b": 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := sessiond.Token(created.Token)
	if _, err := client.UpdateStorage(ctx, ref, func(v map[string]any) error { delete(v, "a"); v["c"] = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	storage, _ := client.GetStorage(ctx, ref)
	if _, held := storage.Values["a"]; held || storage.Values["c"] != 3.0 || storage.Values["b"] != 2.0 {
		t.Errorf("storage %v", storage.Values)
	}
	// Another writer comes first on every attempt.
	attempts := 0
	_, err = client.UpdateStorage(ctx, ref, func(v map[string]any) error {
		attempts++
		_, err := client.PutStorage(ctx, ref, map[string]any{"other": attempts})
		v["mine"] = true
		return err
	})
	conflict := as[*sessiond.VersionConflictError](t, err)
	if attempts != 3 || conflict.CurrentVersion == 0 || conflict.Reason != "VERSION_CONFLICT" {
		t.Errorf("attempts %d, conflict %+v", attempts, conflict)
	}
	// An error of the function stops it.
	stop := errors.New("no")
	if _, err := client.UpdateStorage(ctx, ref, func(map[string]any) error { return stop }); err != stop {
		t.Errorf("got %v", err)
	}
}

func TestEveryTokenTheUserCannotUseIsALoginRequired(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	for _, c := range []struct{ token, reason string }{
		{"", "TOKEN_MISSING"}, {"not-a-token", "TOKEN_MALFORMED"}, {forgedToken, "SESSION_NOT_FOUND"},
	} {
		_, err := client.Authenticate(ctx, c.token)
		login := as[*sessiond.LoginRequiredError](t, err)
		if login.Reason != c.reason || login.Code != codes.Unauthenticated {
			t.Errorf("%q: %v", c.token, err)
		}
	}
	_, err := client.Authenticate(ctx, forgedToken)
	as[*sessiond.SessionNotFoundError](t, err)

	revoked := createWebUser(t, client, "grace")
	if _, err := client.RevokeSessions(ctx, sessiond.RevokeFilter{UserID: "grace"}); err != nil {
		t.Fatal(err)
	}
	_, err = client.Authenticate(ctx, revoked.Token)
	ended := as[*sessiond.SessionEndedError](t, err)
	if ended.EndReason != "revoked" || ended.Reason != "SESSION_REVOKED" {
		t.Errorf("got %+v", ended)
	}
	as[*sessiond.LoginRequiredError](t, err)
	if as[*sessiond.Error](t, err).Code != codes.Unauthenticated || status.Code(err) != codes.Unauthenticated {
		t.Errorf("code %v", status.Code(err))
	}
}

func TestOtherCallsOnAnEndedOrUnknownSessionAreLoginRequiredToo(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	_, err := client.GetSession(ctx, sessiond.ID(strings.Repeat("0", 32)))
	if notFound := as[*sessiond.SessionNotFoundError](t, err); notFound.Code != codes.NotFound {
		t.Errorf("got %v", err)
	}
	created := createWebUser(t, client, "heidi")
	if _, err := client.CloseSession(ctx, sessiond.Token(created.Token)); err != nil {
		t.Fatal(err)
	}
	_, err = client.PutStorage(ctx, sessiond.Token(created.Token), map[string]any{"x": 1})
	ended := as[*sessiond.SessionEndedError](t, err)
	if ended.Code != codes.FailedPrecondition || ended.EndReason != "closed" || ended.Reason != "SESSION_CLOSED" {
		t.Errorf("got %+v", ended)
	}
	as[*sessiond.LoginRequiredError](t, err)
}

func TestEachDocumentedFailureIsItsType(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	ref := sessiond.Token(createWebUser(t, client, "ivan").Token)

	t.Run("VersionConflict", func(t *testing.T) {
		written, err := client.PutStorage(ctx, ref, map[string]any{"k": "v"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.PutStorage(ctx, ref, map[string]any{"k": "w"}, sessiond.IfVersion(written.Version-1))
		if conflict := as[*sessiond.VersionConflictError](t, err); conflict.CurrentVersion != written.Version {
			t.Errorf("current %d, want %d", conflict.CurrentVersion, written.Version)
		}
	})
	t.Run("PermissionDenied", func(t *testing.T) {
		_, err := client.QueryLogs(ctx, sessiond.LogFilter{})
		as[*sessiond.PermissionDeniedError](t, err)
	})
	t.Run("InvalidArgument", func(t *testing.T) {
		_, err := client.CheckPrivileges(ctx, ref, sessiond.CheckAny, "viewBasic", "noSuchPrivilege")
		invalid := as[*sessiond.InvalidArgumentError](t, err)
		if len(invalid.Violations) != 1 || invalid.Violations[0].Field != "privileges[1]" {
			t.Errorf("violations %+v", invalid.Violations)
		}
	})
	t.Run("ResourceExhausted", func(t *testing.T) {
		full := sessiond.Token(createWebUser(t, client, "ivan").Token)
		values := map[string]any{}
		for i := range sessiondtest.MaxStorageKeys {
			values[fmt.Sprint("key", i)] = i
		}
		if _, err := client.PutStorage(ctx, full, values); err != nil {
			t.Fatal(err)
		}
		_, err := client.PutStorage(ctx, full, map[string]any{"one more": true})
		as[*sessiond.ResourceExhaustedError](t, err)
	})
	t.Run("Unauthenticated", func(t *testing.T) {
		for _, c := range []struct{ key, reason string }{
			{"", "API_KEY_MISSING"}, {"sdk_" + strings.Repeat("B", 43), "API_KEY_INVALID"},
		} {
			stranger, err := sessiond.New(server.Address, sessiond.Options{APIKey: c.key})
			if err != nil {
				t.Fatal(err)
			}
			_, err = stranger.Authenticate(ctx, forgedToken)
			stranger.Close()
			if got := as[*sessiond.UnauthenticatedError](t, err); got.Reason != c.reason {
				t.Errorf("key %q: %v", c.key, err)
			}
			var login *sessiond.LoginRequiredError
			if errors.As(err, &login) {
				t.Errorf("a failing API key is not the user's sign-in: %v", err)
			}
		}
	})
	t.Run("Unavailable", func(t *testing.T) {
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		address := closed.Addr().String()
		closed.Close()
		nobody, err := sessiond.New(address, sessiond.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer nobody.Close()
		_, err = nobody.GetSession(ctx, ref)
		as[*sessiond.UnavailableError](t, err)
	})
}

func TestACallThatCannotMeetItsDeadlineIsDeadlineExceeded(t *testing.T) {
	client := connect(t, "acme", func(o *sessiond.Options) { o.Timeout = 300 * time.Millisecond })
	ctx := context.Background()
	created := createWebUser(t, client, "judy")
	if err := server.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			server.Resume()
		}
	}()
	// The client's default deadline, then the context's own.
	_, err := client.Authenticate(ctx, created.Token)
	as[*sessiond.DeadlineExceededError](t, err)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = connect(t, "acme").GetStorage(short, sessiond.Token(created.Token))
	if got := as[*sessiond.DeadlineExceededError](t, err); got.Code != codes.DeadlineExceeded {
		t.Errorf("got %v", err)
	}
	if err := server.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if _, err := client.Authenticate(ctx, created.Token); err != nil {
		t.Errorf("after SIGCONT: %v", err)
	}
}

func TestAnotherTenantsKeySeesNoSuchSession(t *testing.T) {
	acme, globex := connect(t, "acme"), connect(t, "globex")
	ctx := context.Background()
	created := createWebUser(t, acme, "kim")
	_, err := globex.Authenticate(ctx, created.Token)
	as[*sessiond.SessionNotFoundError](t, err)
	_, err = globex.GetSession(ctx, sessiond.ID(created.Session.ID))
	as[*sessiond.SessionNotFoundError](t, err)
	if id, err := acme.Authenticate(ctx, created.Token); err != nil || id.Tenant != "acme" {
		t.Errorf("acme: %+v, %v", id, err)
	}
}

func TestWatchSessionsStreamsEventsFromASequence(t *testing.T) {
	client := connect(t, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	created := createWebUser(t, client, "leo")
	if _, err := client.CloseSession(ctx, sessiond.Token(created.Token)); err != nil {
		t.Fatal(err)
	}
	after := created.Sequence - 1
	var types []sessiond.EventType
	for event, err := range client.WatchSessions(ctx, sessiond.WatchFilter{SessionID: created.Session.ID, AfterSequence: &after}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, event.Type)
		if event.Type == sessiond.EventClosed {
			break
		}
	}
	if len(types) != 2 || types[0] != sessiond.EventCreated {
		t.Errorf("events %v", types)
	}
	// A filter naming no session of the tenant fails the stream.
	for _, err := range client.WatchSessions(ctx, sessiond.WatchFilter{SessionID: strings.Repeat("0", 32)}) {
		as[*sessiond.SessionNotFoundError](t, err)
		break
	}
}
