// Package sessiond is a Go client of sessiond: sessions, privileges,
// storage, logs and channel messages over gRPC, with native Go values (maps, time.Duration,
// time.Time) and errors to match with errors.As.
//
//	client, err := sessiond.New("localhost:50051", sessiond.Options{APIKey: key})
//	id, err := client.Authenticate(ctx, token, "viewSales")
//	var login *sessiond.LoginRequiredError
//	if errors.As(err, &login) { /* the user must sign in again */ }
//
// The generated stubs are in package sessiondv1; Client.Conn gives them a
// connection that already sends the API key.
package sessiond

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// DefaultTimeout is the deadline of a call whose context has none, unless
// Options.Timeout says otherwise.
const DefaultTimeout = 10 * time.Second

// DefaultUpdateAttempts bounds UpdateStorage's read-modify-write loop.
const DefaultUpdateAttempts = 10

// Options configure a Client. The zero value is a plaintext client without
// an API key, as a sessiond on loopback without --api-keys-file accepts.
type Options struct {
	// APIKey is sent on every call as `authorization: Bearer <key>`.
	APIKey string
	// TLS, when set, connects over TLS; nil connects in plaintext.
	TLS *TLSOptions
	// Timeout is the deadline of each unary call whose context has no
	// deadline: 0 means DefaultTimeout, a negative value none. Streams
	// (WatchSessions) get none.
	Timeout time.Duration
	// UpdateAttempts bounds UpdateStorage's attempts; 0 means
	// DefaultUpdateAttempts.
	UpdateAttempts int
	// DialOptions are passed to grpc.NewClient after the client's own.
	DialOptions []grpc.DialOption
}

// TLSOptions select the server's trust roots and, for mutual TLS, the
// client's certificate.
type TLSOptions struct {
	// CAFile is a PEM file of the CAs that sign sessiond's certificate;
	// empty: the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (PEM) for
	// mutual TLS; both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
}

// Client calls one sessiond. It is safe for concurrent use; Close it when
// done.
type Client struct {
	conn           *grpc.ClientConn
	sessions       pb.SessionServiceClient
	privileges     pb.PrivilegeServiceClient
	storage        pb.StorageServiceClient
	logs           pb.LogServiceClient
	messages       pb.MessageServiceClient
	updateAttempts int
}

// New connects to sessiond at address (host:port). Connecting is lazy: the
// first call dials.
func New(address string, opts Options) (*Client, error) {
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		config, err := opts.TLS.config()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(config)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(unaryInterceptor(opts.APIKey, timeout)),
		grpc.WithChainStreamInterceptor(streamInterceptor(opts.APIKey)),
	}
	conn, err := grpc.NewClient(address, append(dial, opts.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("sessiond: %w", err)
	}
	attempts := opts.UpdateAttempts
	if attempts <= 0 {
		attempts = DefaultUpdateAttempts
	}
	return &Client{
		conn:           conn,
		sessions:       pb.NewSessionServiceClient(conn),
		privileges:     pb.NewPrivilegeServiceClient(conn),
		storage:        pb.NewStorageServiceClient(conn),
		logs:           pb.NewLogServiceClient(conn),
		messages:       pb.NewMessageServiceClient(conn),
		updateAttempts: attempts,
	}, nil
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the client's connection, for the generated stubs of package
// sessiondv1 (the API key and default deadline apply to them too).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

func (t *TLSOptions) config() (*tls.Config, error) {
	config := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sessiond: reading the CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sessiond: no PEM certificate in %s", t.CAFile)
		}
		config.RootCAs = roots
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("sessiond: TLS needs both CertFile and KeyFile, or neither")
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sessiond: loading the client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

func withKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

func unaryInterceptor(key string, timeout time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, set := ctx.Deadline(); !set && timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		return invoker(withKey(ctx, key), method, req, reply, cc, opts...)
	}
}

func streamInterceptor(key string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withKey(ctx, key), desc, cc, method, opts...)
	}
}

// Ref names a session: by its secret token (Token) or its public id (ID).
type Ref struct {
	token, id   string
	minSequence uint64
}

// Token names a session by the secret token CreateSession answered.
func Token(token string) Ref { return Ref{token: token} }

// ID names a session by its public id.
func ID(sessionID string) Ref { return Ref{id: sessionID} }

// After asks for an answer that reflects every change up to the event
// `sequence` a write answered (read your writes on any replica).
func (r Ref) After(sequence uint64) Ref {
	r.minSequence = sequence
	return r
}

func (r Ref) proto() *pb.SessionRef {
	ref := &pb.SessionRef{MinSequence: r.minSequence}
	if r.id != "" {
		ref.Ref = &pb.SessionRef_SessionId{SessionId: r.id}
	} else {
		ref.Ref = &pb.SessionRef_Token{Token: r.token}
	}
	return ref
}
