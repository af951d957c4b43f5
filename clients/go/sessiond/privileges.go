package sessiond

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/sessiond/sessiond/clients/go/sessiondv1"
)

// CheckMode says how CheckPrivileges combines its answers.
type CheckMode = pb.CheckMode

// The check modes: granted when every privilege is held, or any.
const (
	CheckAll = pb.CheckMode_CHECK_MODE_ALL
	CheckAny = pb.CheckMode_CHECK_MODE_ANY
)

// Privileges is what a session holds.
type Privileges struct {
	// Privileges are the expanded privileges, lower case, sorted.
	Privileges []string
	// GrantedPrivileges were granted directly, Roles are the roles granted.
	GrantedPrivileges, Roles []string
	Promotions               []Promotion
	Trusted                  bool
}

// Promotion is a time-limited elevation.
type Promotion struct {
	ID, Privilege string
	ExpiresAt     time.Time
}

// Check is CheckPrivileges' answer: Held per privilege, in order.
type Check struct {
	Granted bool
	Held    []bool
}

// HasPrivilege answers whether the session holds privilege.
func (c *Client) HasPrivilege(ctx context.Context, ref Ref, privilege string) (bool, error) {
	answer, err := c.privileges.HasPrivilege(ctx, &pb.HasPrivilegeRequest{Session: ref.proto(), Privilege: privilege})
	if err != nil {
		return false, fromStatus(err)
	}
	return answer.GetGranted(), nil
}

// CheckPrivileges checks several privileges at once.
func (c *Client) CheckPrivileges(ctx context.Context, ref Ref, mode CheckMode, privileges ...string) (*Check, error) {
	answer, err := c.privileges.CheckPrivileges(ctx, &pb.CheckPrivilegesRequest{
		Session: ref.proto(), Privileges: privileges, Mode: mode,
	})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &Check{Granted: answer.GetGranted(), Held: answer.GetHeld()}, nil
}

// GetPrivileges answers what the session holds.
func (c *Client) GetPrivileges(ctx context.Context, ref Ref) (*Privileges, error) {
	answer, err := c.privileges.GetPrivileges(ctx, &pb.GetPrivilegesRequest{Session: ref.proto()})
	if err != nil {
		return nil, fromStatus(err)
	}
	held := &Privileges{
		Privileges:        answer.GetPrivileges(),
		GrantedPrivileges: answer.GetGrantedPrivileges(),
		Roles:             answer.GetRoles(),
		Trusted:           answer.GetTrusted(),
	}
	for _, p := range answer.GetPromotions() {
		held.Promotions = append(held.Promotions, promotionFrom(p))
	}
	return held, nil
}

// SetPrivileges replaces the privileges and roles granted; answers the
// expanded privileges now held and the change's event sequence.
func (c *Client) SetPrivileges(ctx context.Context, ref Ref, privileges, roles []string) ([]string, uint64, error) {
	answer, err := c.privileges.SetPrivileges(ctx, &pb.SetPrivilegesRequest{
		Session: ref.proto(), Privileges: privileges, Roles: roles,
	})
	if err != nil {
		return nil, 0, fromStatus(err)
	}
	return answer.GetPrivileges(), answer.GetSequence(), nil
}

// ClearPrivileges removes every privilege and role granted.
func (c *Client) ClearPrivileges(ctx context.Context, ref Ref) (uint64, error) {
	answer, err := c.privileges.ClearPrivileges(ctx, &pb.ClearPrivilegesRequest{Session: ref.proto()})
	if err != nil {
		return 0, fromStatus(err)
	}
	return answer.GetSequence(), nil
}

// Promote grants privilege for d; Demote ends it early.
func (c *Client) Promote(ctx context.Context, ref Ref, privilege string, d time.Duration) (*Promotion, uint64, error) {
	answer, err := c.privileges.Promote(ctx, &pb.PromoteRequest{
		Session: ref.proto(), Privilege: privilege, Duration: durationpb.New(d),
	})
	if err != nil {
		return nil, 0, fromStatus(err)
	}
	p := promotionFrom(answer.GetPromotion())
	return &p, answer.GetSequence(), nil
}

// Demote ends a promotion; demoting one that is over changes nothing.
func (c *Client) Demote(ctx context.Context, ref Ref, promotionID string) (uint64, error) {
	answer, err := c.privileges.Demote(ctx, &pb.DemoteRequest{Session: ref.proto(), PromotionId: promotionID})
	if err != nil {
		return 0, fromStatus(err)
	}
	return answer.GetSequence(), nil
}

func promotionFrom(p *pb.Promotion) Promotion {
	return Promotion{ID: p.GetPromotionId(), Privilege: p.GetPrivilege(), ExpiresAt: timeFrom(p.GetExpiresAt())}
}
