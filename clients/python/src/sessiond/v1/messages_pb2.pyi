import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sessiond.v1 import sessiond_pb2 as _sessiond_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_SCOPE_UNSPECIFIED: _ClassVar[MessageScope]
    MESSAGE_SCOPE_LOCAL: _ClassVar[MessageScope]
    MESSAGE_SCOPE_GLOBAL: _ClassVar[MessageScope]
MESSAGE_SCOPE_UNSPECIFIED: MessageScope
MESSAGE_SCOPE_LOCAL: MessageScope
MESSAGE_SCOPE_GLOBAL: MessageScope

class PostRequest(_message.Message):
    __slots__ = ("channel", "payload", "type_name", "scope")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    payload: _struct_pb2.Value
    type_name: str
    scope: MessageScope
    def __init__(self, channel: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., type_name: _Optional[str] = ..., scope: _Optional[_Union[MessageScope, str]] = ...) -> None: ...

class PostResponse(_message.Message):
    __slots__ = ("sequence", "local_deliveries")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    local_deliveries: int
    def __init__(self, sequence: _Optional[int] = ..., local_deliveries: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelSubscription]
    def __init__(self, channels: _Optional[_Iterable[_Union[ChannelSubscription, _Mapping]]] = ...) -> None: ...

class ChannelSubscription(_message.Message):
    __slots__ = ("channel", "after_sequence")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    after_sequence: int
    def __init__(self, channel: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("subscribed", "message", "session_ended")
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    subscribed: Subscribed
    message: ChannelMessage
    session_ended: SessionEnded
    def __init__(self, subscribed: _Optional[_Union[Subscribed, _Mapping]] = ..., message: _Optional[_Union[ChannelMessage, _Mapping]] = ..., session_ended: _Optional[_Union[SessionEnded, _Mapping]] = ...) -> None: ...

class Subscribed(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channels: _Optional[_Iterable[str]] = ...) -> None: ...

class ChannelMessage(_message.Message):
    __slots__ = ("channel", "sequence", "payload", "type_name", "posted_at", "scope")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    POSTED_AT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    sequence: int
    payload: _struct_pb2.Value
    type_name: str
    posted_at: _timestamp_pb2.Timestamp
    scope: MessageScope
    def __init__(self, channel: _Optional[str] = ..., sequence: _Optional[int] = ..., payload: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., type_name: _Optional[str] = ..., posted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scope: _Optional[_Union[MessageScope, str]] = ...) -> None: ...

class SessionEnded(_message.Message):
    __slots__ = ("channel", "session_id", "end_reason", "ends_subscription")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    ENDS_SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    channel: str
    session_id: str
    end_reason: _sessiond_pb2.EndReason
    ends_subscription: bool
    def __init__(self, channel: _Optional[str] = ..., session_id: _Optional[str] = ..., end_reason: _Optional[_Union[_sessiond_pb2.EndReason, str]] = ..., ends_subscription: _Optional[bool] = ...) -> None: ...
