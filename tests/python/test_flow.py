"""sessiond as a Python client sees it, through stubs generated from proto/.

Each test starts its own session on the shared server (see conftest.py) and
walks one part of a session's life: creation, logging, privileges, storage
with compare-and-set, and closing. Errors are checked the way clients are
told to read them: the status code, then the google.rpc detail carried in the
`grpc-status-details-bin` trailer.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from sessiond.v1 import sessiond_pb2 as pb

SESSIOND_SERVICES = {
    "sessiond.v1.SessionService",
    "sessiond.v1.PrivilegeService",
    "sessiond.v1.StorageService",
    "sessiond.v1.LogService",
}


def cart(**fields) -> struct_pb2.Value:
    """A structured storage value, as JSON would have it."""
    value = struct_pb2.Value()
    value.struct_value.update(fields)
    return value


@pytest.fixture
def web_user(sessions):
    """A fresh WEB_USER session for alice, a Manager, with a cart in storage."""
    return sessions.CreateSession(
        pb.CreateSessionRequest(
            kind=pb.SESSION_KIND_WEB_USER,
            user_id="alice",
            idle_timeout=duration_pb2.Duration(seconds=1800),
            roles=["Manager"],
            storage={
                "cart": cart(items=["book", "pen"], total=12.5, gift=True),
                "theme": struct_pb2.Value(string_value="dark"),
            },
        )
    )


def by_token(created: pb.CreateSessionResponse) -> pb.SessionRef:
    return pb.SessionRef(token=created.token)


def rpc_error(call, request) -> grpc.RpcError:
    """Makes a call that must fail and answers its error."""
    with pytest.raises(grpc.RpcError) as failure:
        call(request)
    return failure.value


def detail(error: grpc.RpcError, detail_type):
    """Unpacks the one `detail_type` in the error's google.rpc.Status."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no grpc-status-details-bin trailer on {error.code()}: {error.details()}"
    found = [any_ for any_ in status.details if any_.Is(detail_type.DESCRIPTOR)]
    assert len(found) == 1, f"expected one {detail_type.DESCRIPTOR.full_name} in {status.details}"
    message = detail_type()
    found[0].Unpack(message)
    return message


def test_reflection_lists_every_sessiond_service(channel):
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert SESSIOND_SERVICES <= services


def test_reflection_describes_the_health_service(channel):
    assert "grpc.health.v1.Health" in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_reflection_also_answers_on_the_v1_service(channel):
    # grpc.reflection.v1 has the same messages as v1alpha under another name.
    list_services = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (answer,) = list_services(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    assert SESSIOND_SERVICES <= {service.name for service in answer.list_services_response.service}


def test_create_session_answers_a_token_and_the_session_as_asked(web_user, sessions, storage):
    session = web_user.session
    assert web_user.token and session.session_id
    assert web_user.token != session.session_id
    assert session.kind == pb.SESSION_KIND_WEB_USER
    assert session.user_id == "alice"
    assert session.idle_timeout.ToSeconds() == 1800
    assert session.state == pb.SESSION_STATE_OPEN
    assert not session.trusted
    assert session.HasField("created_at") and session.HasField("expires_at")

    looked_up = sessions.GetSession(pb.GetSessionRequest(session=pb.SessionRef(session_id=session.session_id)))
    assert looked_up.session.session_id == session.session_id

    stored = storage.GetStorage(pb.GetStorageRequest(session=by_token(web_user)))
    assert stored.values["cart"] == cart(items=["book", "pen"], total=12.5, gift=True)
    assert stored.values["theme"].string_value == "dark"


def test_log_stores_every_entry_at_info_or_above(web_user, logs):
    answer = logs.Log(
        pb.LogRequest(
            session=by_token(web_user),
            entries=[
                pb.LogEntry(level=pb.LOG_LEVEL_INFO, message="cart opened"),
                pb.LogEntry(level=pb.LOG_LEVEL_WARNING, message="price lookup took 900 ms"),
                pb.LogEntry(level=pb.LOG_LEVEL_ERROR, message="payment declined", exception="CardDeclined"),
            ],
        )
    )
    assert answer.accepted == 3


def test_a_role_grants_the_privileges_its_privileges_include(web_user, privileges):
    def has(name: str) -> bool:
        return privileges.HasPrivilege(pb.HasPrivilegeRequest(session=by_token(web_user), privilege=name)).granted

    # Manager holds editSales, which includes viewSales, which includes viewBasic.
    assert has("editSales")
    assert has("viewBasic")
    assert has("VIEWBASIC"), "privilege names are case-insensitive"
    assert not has("admin")


def test_granted_privileges_and_roles_expand_to_lower_case_sorted_names(sessions, privileges):
    created = sessions.CreateSession(
        pb.CreateSessionRequest(kind=pb.SESSION_KIND_WEB_CALL, privileges=["viewSales"], roles=["Viewer"])
    )
    held = privileges.GetPrivileges(pb.GetPrivilegesRequest(session=by_token(created)))
    assert list(held.privileges) == ["viewbasic", "viewsales"]


def test_check_privileges_answers_any_all_and_each_one(web_user, privileges):
    def check(names, mode):
        return privileges.CheckPrivileges(
            pb.CheckPrivilegesRequest(session=by_token(web_user), privileges=names, mode=mode)
        )

    any_ = check(["admin", "viewSales"], pb.CHECK_MODE_ANY)
    assert any_.granted and list(any_.held) == [False, True]

    all_ = check(["admin", "viewSales"], pb.CHECK_MODE_ALL)
    assert not all_.granted and list(all_.held) == [False, True]

    assert check(["viewSales", "viewBasic"], pb.CHECK_MODE_ALL).granted
    assert not check(["viewBasic", "admin"], pb.CHECK_MODE_UNSPECIFIED).granted, "unspecified means ALL"


def test_an_unknown_privilege_is_invalid_argument_naming_the_field(web_user, privileges):
    error = rpc_error(
        privileges.HasPrivilege,
        pb.HasPrivilegeRequest(session=by_token(web_user), privilege="launchRockets"),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request = detail(error, error_details_pb2.BadRequest)
    assert [violation.field for violation in bad_request.field_violations] == ["privilege"]


def test_put_storage_applies_at_the_expected_version_and_aborts_on_a_stale_one(web_user, storage):
    session = by_token(web_user)
    version = storage.GetStorage(pb.GetStorageRequest(session=session)).version

    put = storage.PutStorage(
        pb.PutStorageRequest(
            session=session,
            values={"cart": cart(items=["book"], total=9.5)},
            expected_version=version,
        )
    )
    assert put.version == version + 1

    stale = rpc_error(
        storage.PutStorage,
        pb.PutStorageRequest(
            session=session,
            values={"cart": cart(items=[], total=0)},
            expected_version=version,
        ),
    )
    assert stale.code() == grpc.StatusCode.ABORTED

    now = storage.GetStorage(pb.GetStorageRequest(session=session, keys=["cart"]))
    assert now.version == version + 1
    assert now.values["cart"] == cart(items=["book"], total=9.5)


def test_a_closed_session_refuses_calls_with_session_closed(web_user, sessions, logs):
    session = by_token(web_user)
    closed = sessions.CloseSession(pb.CloseSessionRequest(session=session))
    assert closed.session_id == web_user.session.session_id
    assert closed.end_reason == pb.END_REASON_CLOSED

    for call, request in [
        (sessions.GetSession, pb.GetSessionRequest(session=session)),
        (logs.Log, pb.LogRequest(session=session, entries=[pb.LogEntry(level=pb.LOG_LEVEL_INFO, message="late")])),
    ]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = detail(error, error_details_pb2.ErrorInfo)
        assert (info.domain, info.reason) == ("sessiond.dev", "SESSION_CLOSED")

    again = sessions.CloseSession(pb.CloseSessionRequest(session=session))
    assert again == closed, "closing again answers as the first close did"
