package sessiond_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/sessiond/sessiond/clients/go/internal/sessiondtest"
	"github.com/sessiond/sessiond/clients/go/sessiond"
)

// server is the sessiond every test of the package calls.
var server *sessiondtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = sessiondtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting sessiond:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- sessiond log ----\n%s\n", server.LogTail())
	}
	server.Stop()
	os.Exit(code)
}

// connect is a client with the named key of the test server.
func connect(t *testing.T, key string, opts ...func(*sessiond.Options)) *sessiond.Client {
	t.Helper()
	options := sessiond.Options{APIKey: server.Keys[key]}
	for _, opt := range opts {
		opt(&options)
	}
	client, err := sessiond.New(server.Address, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// createWebUser starts a WEB_USER session for user with roles.
func createWebUser(t *testing.T, client *sessiond.Client, user string, roles ...string) *sessiond.Created {
	t.Helper()
	created, err := client.CreateSession(context.Background(), sessiond.NewSession{
		Kind: sessiond.KindWebUser, UserID: user, Roles: roles,
	})
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return created
}
