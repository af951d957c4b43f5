package httpauth_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/sessiond/sessiond/clients/go/examples/httpauth"
	"github.com/sessiond/sessiond/clients/go/internal/sessiondtest"
	"github.com/sessiond/sessiond/clients/go/sessiond"
)

var server *sessiondtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = sessiondtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting sessiond:", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

func TestTheMiddlewareAuthenticatesEachRequestOnce(t *testing.T) {
	client, err := sessiond.New(server.Address, sessiond.Options{APIKey: server.Keys["acme"]})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", httpauth.Identity(r.Context()).UserID)
	})
	mux := http.NewServeMux()
	mux.Handle("/sales", httpauth.Require(client, "/login", "viewSales")(hello))
	mux.Handle("/api/sales", httpauth.Require(client, "", "viewSales")(hello))
	web := httptest.NewServer(mux)
	defer web.Close()
	noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) (int, string) {
		t.Helper()
		request, _ := http.NewRequest(http.MethodGet, web.URL+path, nil)
		if token != "" {
			request.AddCookie(&http.Cookie{Name: httpauth.Cookie, Value: token})
		}
		response, err := noRedirects.Do(request)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		body, _ := io.ReadAll(response.Body)
		return response.StatusCode, string(body)
	}
	ctx := context.Background()
	manager, err := client.CreateSession(ctx, sessiond.NewSession{Kind: sessiond.KindWebUser, UserID: "alice", Roles: []string{"Manager"}})
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := client.CreateSession(ctx, sessiond.NewSession{Kind: sessiond.KindWebUser, UserID: "bob", Roles: []string{"Viewer"}})
	if err != nil {
		t.Fatal(err)
	}

	if code, body := get("/sales", manager.Token); code != http.StatusOK || body != "hello alice" {
		t.Errorf("manager: %d %q", code, body)
	}
	if code, _ := get("/sales", viewer.Token); code != http.StatusForbidden {
		t.Errorf("viewer: %d", code)
	}
	if code, _ := get("/sales", ""); code != http.StatusSeeOther {
		t.Errorf("no cookie: %d", code)
	}
	if _, err := client.CloseSession(ctx, sessiond.Token(manager.Token)); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/sales", manager.Token); code != http.StatusSeeOther {
		t.Errorf("signed out: %d", code)
	}
	if code, _ := get("/api/sales", manager.Token); code != http.StatusUnauthorized {
		t.Errorf("signed out, no login page: %d", code)
	}
}
