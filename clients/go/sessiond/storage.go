package sessiond

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// Storage is a session's storage: values as structpb.Value.AsInterface
// answers them (nil, bool, float64, string, []any, map[string]any).
type Storage struct {
	Values  map[string]any
	Version uint64
}

// Written is a storage write's answer: the storage's version after it and
// the change's event sequence (0 when nothing changed).
type Written struct {
	Version, Sequence uint64
}

// WriteOption adds to a storage write.
type WriteOption func(*uint64)

// IfVersion writes only when the storage is still at version; otherwise
// the write fails with a *VersionConflictError.
func IfVersion(version uint64) WriteOption {
	return func(expected *uint64) { *expected = version }
}

func expected(opts []WriteOption) *uint64 {
	if len(opts) == 0 {
		return nil
	}
	var version uint64
	for _, opt := range opts {
		opt(&version)
	}
	return &version
}

// GetStorage reads keys (none: every key) and the version.
func (c *Client) GetStorage(ctx context.Context, ref Ref, keys ...string) (*Storage, error) {
	answer, err := c.storage.GetStorage(ctx, &pb.GetStorageRequest{Session: ref.proto(), Keys: keys})
	if err != nil {
		return nil, fromStatus(err)
	}
	values := make(map[string]any, len(answer.GetValues()))
	for key, value := range answer.GetValues() {
		values[key] = value.AsInterface()
	}
	return &Storage{Values: values, Version: answer.GetVersion()}, nil
}

// PutStorage sets values, leaving other keys as they are.
func (c *Client) PutStorage(ctx context.Context, ref Ref, values map[string]any, opts ...WriteOption) (*Written, error) {
	converted, err := toValues(values)
	if err != nil {
		return nil, err
	}
	answer, err := c.storage.PutStorage(ctx, &pb.PutStorageRequest{
		Session: ref.proto(), Values: converted, ExpectedVersion: expected(opts),
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Written{Version: answer.GetVersion(), Sequence: answer.GetSequence()}, nil
}

// DeleteStorage removes keys.
func (c *Client) DeleteStorage(ctx context.Context, ref Ref, keys []string, opts ...WriteOption) (*Written, error) {
	answer, err := c.storage.DeleteStorage(ctx, &pb.DeleteStorageRequest{
		Session: ref.proto(), Keys: keys, ExpectedVersion: expected(opts),
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Written{Version: answer.GetVersion(), Sequence: answer.GetSequence()}, nil
}

// ClearStorage removes every key.
func (c *Client) ClearStorage(ctx context.Context, ref Ref, opts ...WriteOption) (*Written, error) {
	answer, err := c.storage.ClearStorage(ctx, &pb.ClearStorageRequest{
		Session: ref.proto(), ExpectedVersion: expected(opts),
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Written{Version: answer.GetVersion(), Sequence: answer.GetSequence()}, nil
}

// UpdateStorage is a compare-and-set loop: it reads the storage, lets fn
// change a copy of its values (set, change or delete keys), and writes
// what changed with the version read. When another write came first it
// starts again, at most Options.UpdateAttempts times, then answers the
// last *VersionConflictError. An error from fn stops it, unwritten.
//
// Changed keys are written by one PutStorage and removed ones by one
// DeleteStorage, each with the version expected; when fn both sets and
// removes keys, a reader may see the removal a moment before the rest.
func (c *Client) UpdateStorage(ctx context.Context, ref Ref, fn func(values map[string]any) error) (*Written, error) {
	var conflict error
	for range c.updateAttempts {
		current, err := c.GetStorage(ctx, ref)
		if err != nil {
			return nil, err
		}
		values := make(map[string]any, len(current.Values))
		for key, value := range current.Values {
			values[key] = value
		}
		if err := fn(values); err != nil {
			return nil, err
		}
		written, err := c.writeChanges(ctx, ref, current, values)
		var versionConflict *VersionConflictError
		if !errors.As(err, &versionConflict) {
			return written, err
		}
		conflict = err
	}
	return nil, conflict
}

// writeChanges writes the difference between current and values.
func (c *Client) writeChanges(ctx context.Context, ref Ref, current *Storage, values map[string]any) (*Written, error) {
	changed := map[string]any{}
	for key, value := range values {
		if old, held := current.Values[key]; !held || !reflect.DeepEqual(old, normalise(value)) {
			changed[key] = value
		}
	}
	var removed []string
	for key := range current.Values {
		if _, kept := values[key]; !kept {
			removed = append(removed, key)
		}
	}
	written := &Written{Version: current.Version}
	if len(removed) > 0 {
		deleted, err := c.DeleteStorage(ctx, ref, removed, IfVersion(written.Version))
		if err != nil {
			return nil, err
		}
		written = deleted
	}
	if len(changed) > 0 {
		put, err := c.PutStorage(ctx, ref, changed, IfVersion(written.Version))
		if err != nil {
			return nil, err
		}
		written = put
	}
	return written, nil
}

// normalise gives a value the shape GetStorage answers it in (numbers as
// float64, slices as []any), so that unchanged values compare equal.
func normalise(value any) any {
	v, err := structpb.NewValue(value)
	if err != nil {
		return value
	}
	return v.AsInterface()
}

func toValues(values map[string]any) (map[string]*structpb.Value, error) {
	if values == nil {
		return nil, nil
	}
	converted := make(map[string]*structpb.Value, len(values))
	for key, value := range values {
		v, err := structpb.NewValue(value)
		if err != nil {
			st := status.New(codes.InvalidArgument, fmt.Sprintf("a storage value of type %T: %v", value, err))
			return nil, &InvalidArgumentError{base: &Error{Code: st.Code(), Message: st.Message(), status: st}}
		}
		converted[key] = v
	}
	return converted, nil
}
