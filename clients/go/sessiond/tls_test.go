package sessiond_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sessiond/sessiond/clients/go/internal/sessiondtest"
	"github.com/sessiond/sessiond/clients/go/sessiond"
)

func TestTLSWithAnAPIKeyOrAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	certs, err := sessiondtest.MakeCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsServer, err := sessiondtest.StartWith(sessiondtest.Options{
		Env: []string{
			"SESSIOND_TLS_CERT=" + certs.ServerCert, "SESSIOND_TLS_KEY=" + certs.ServerKey,
			"SESSIOND_TLS_CLIENT_CA=" + certs.CA,
		},
		KeyLines: []string{`{name: checkout-cert, tenant: globex, role: service, cert_sha256: "` + certs.ClientSHA256 + `"}`},
		Health:   grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsServer.Stop()
	ctx := context.Background()
	dial := func(key string, options sessiond.TLSOptions) *sessiond.Client {
		client, err := sessiond.New(tlsServer.Address, sessiond.Options{APIKey: key, TLS: &options})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return client
	}

	// Server authentication by the CA file, the caller by its API key.
	withKey := dial(tlsServer.Keys["acme"], sessiond.TLSOptions{CAFile: certs.CA})
	created := createWebUser(t, withKey, "mallory")
	if id, err := withKey.Authenticate(ctx, created.Token); err != nil || id.Tenant != "acme" {
		t.Fatalf("over TLS with a key: %+v, %v", id, err)
	}
	// Mutual TLS: the certificate is the caller, of tenant globex.
	withCert := dial("", sessiond.TLSOptions{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey})
	created = createWebUser(t, withCert, "niaj")
	if id, err := withCert.Authenticate(ctx, created.Token); err != nil || id.Tenant != "globex" {
		t.Fatalf("over mutual TLS: %+v, %v", id, err)
	}
	// A certificate of the CA that no key entry names is the service's
	// failure, not the user's.
	stranger := dial("", sessiond.TLSOptions{CAFile: certs.CA, CertFile: certs.StrangerCert, KeyFile: certs.StrangerKey})
	_, err = stranger.Authenticate(ctx, created.Token)
	if unknown := as[*sessiond.UnauthenticatedError](t, err); unknown.Reason != "CLIENT_CERTIFICATE_UNKNOWN" {
		t.Errorf("got %v", err)
	}
	// The system roots do not trust the test CA: no connection.
	system := dial(tlsServer.Keys["acme"], sessiond.TLSOptions{})
	_, err = system.Authenticate(ctx, created.Token)
	as[*sessiond.UnavailableError](t, err)
}
