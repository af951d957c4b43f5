package sessiond_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sessiond/sessiond/clients/go/sessiond"
)

// webLogin is the web-login flow of the README, as a user writes it.
func webLogin(ctx context.Context, client *sessiond.Client) (string, error) {
	// Login: a WEB_USER session for alice, a Manager.
	created, err := client.CreateSession(ctx, sessiond.NewSession{
		Kind: sessiond.KindWebUser, UserID: "alice", Roles: []string{"Manager"},
	})
	if err != nil {
		return "", err
	}
	token := created.Token // goes into alice's cookie
	// Every request: who is it, may they view sales?
	id, err := client.Authenticate(ctx, token, "viewSales")
	if err != nil || !id.AllGranted {
		return "", fmt.Errorf("not allowed: %v", err)
	}
	// Add to the cart: compare-and-set, retried on conflict.
	_, err = client.UpdateStorage(ctx, sessiond.Token(token), func(values map[string]any) error {
		cart, _ := values["cart"].([]any)
		values["cart"] = append(cart, "book")
		return nil
	})
	if err != nil {
		return "", err
	}
	client.Log(ctx, sessiond.Token(token), sessiond.Info(id.UserID+" added a book"))
	// Logout, then the token asks for a new login.
	client.CloseSession(ctx, sessiond.Token(token))
	_, err = client.Authenticate(ctx, token)
	var ended *sessiond.SessionEndedError
	if errors.As(err, &ended) {
		return ended.EndReason, nil
	}
	return "", fmt.Errorf("still signed in: %v", err)
}

func TestTheWebLoginFlowEndsWithASignInAgain(t *testing.T) {
	client := connect(t, "acme")
	ctx := context.Background()
	endReason, err := webLogin(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if endReason != "closed" {
		t.Errorf("end reason %q, want closed", endReason)
	}
	// The flow's log was kept and is found by the admin key.
	page, err := connect(t, "acme-admin").QueryLogs(ctx, sessiond.LogFilter{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, record := range page.Records {
		found = found || record.Message == "alice added a book"
	}
	if !found {
		t.Errorf("no logged entry in %+v", page.Records)
	}
}
