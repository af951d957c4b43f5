"""What Client and AsyncClient share: credentials, deadlines, the stubs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional, Sequence, Union

import grpc

from .v1 import messages_pb2_grpc as messages_rpc
from .v1 import sessiond_pb2_grpc as rpc

#: A per-call deadline: seconds, a timedelta, or None for none.
Timeout = Optional[Union[float, int, timedelta]]


def seconds(timeout: Timeout) -> Optional[float]:
    return timeout.total_seconds() if isinstance(timeout, timedelta) else timeout


def credentials(
    tls: Optional[bool], ca_file: Optional[str], cert_file: Optional[str], key_file: Optional[str]
) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials, or None for plaintext.

    TLS is on when `tls` is True or any file is given: the server is checked
    against `ca_file` (PEM) or the system's roots, and `cert_file` with
    `key_file` (PEM) present a client certificate (mTLS).
    """
    if tls is None:
        tls = any((ca_file, cert_file, key_file))
    if not tls:
        return None
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both cert_file and key_file")
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


def metadata(api_key: Optional[str]) -> Sequence[tuple[str, str]]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def stubs(channel) -> dict:
    return {
        "sessions": rpc.SessionServiceStub(channel),
        "privileges": rpc.PrivilegeServiceStub(channel),
        "storage": rpc.StorageServiceStub(channel),
        "logs": rpc.LogServiceStub(channel),
        "messages": messages_rpc.MessageServiceStub(channel),
    }
