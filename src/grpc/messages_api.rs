//! `sessiond.v1.MessageService`: Post and Subscribe, parsed here, served by
//! the domain's [`Messages`].
//!
//! [`MessageServer`] serves it: the generated server, except that
//! Subscribe's answers go out as [`frame`]s, bytes encoded before tonic
//! sees them. A live message is encoded by the first subscriber's stream
//! that sends it and the same bytes are sent to every other subscriber of
//! this process ([`SharedMessage`](crate::service::messages::SharedMessage)),
//! where the generated server would convert and encode it once per
//! subscriber.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message as _;
use tokio_stream::{Stream, StreamExt as _};
use tonic::codegen::{Body, BoxFuture, StdError};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::authn::caller;
use super::codec::EncodedCodec;
use super::convert;
use super::pb;
use super::pb::message_service_server::MessageServiceServer;
use crate::domain::messages::MAX_TYPE_NAME_BYTES;
use crate::domain::{Channel, InvalidInput, Message, Scope, Violations, all};
use crate::service::messages::{Item, Messages, Post, Subscription};

/// The path of Subscribe, which [`MessageServer`] serves itself.
const SUBSCRIBE_PATH: &str = "/sessiond.v1.MessageService/Subscribe";

/// `sessiond.v1.MessageService` with Subscribe's answers encoded once per
/// message (see the module's comment). Requests larger than
/// `max_request_bytes` are refused as the generated server refuses them.
#[derive(Debug, Clone)]
pub struct MessageServer {
    generated: MessageServiceServer<MessagesApi>,
    api: Arc<MessagesApi>,
    max_request_bytes: usize,
}

impl MessageServer {
    pub fn new(messages: Messages, max_request_bytes: usize) -> Self {
        let api = Arc::new(MessagesApi::new(messages));
        let generated = MessageServiceServer::from_arc(Arc::clone(&api)).max_decoding_message_size(max_request_bytes);
        Self { generated, api, max_request_bytes }
    }
}

impl NamedService for MessageServer {
    const NAME: &'static str = pb::message_service_server::SERVICE_NAME;
}

impl<B> tower::Service<http::Request<B>> for MessageServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SUBSCRIBE_PATH {
            return self.generated.call(request);
        }
        let method = SubscribeFrames(Arc::clone(&self.api));
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(EncodedCodec::<pb::SubscribeRequest>::default())
                .apply_max_message_size_config(Some(max_request_bytes), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Subscribe, answering with [`frame`]s.
struct SubscribeFrames(Arc<MessagesApi>);

impl tonic::server::ServerStreamingService<pb::SubscribeRequest> for SubscribeFrames {
    type Response = Bytes;
    type ResponseStream = FrameStream;
    type Future = BoxFuture<Response<FrameStream>, Status>;

    fn call(&mut self, request: Request<pb::SubscribeRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move {
            let subscription = api.open(request).await?;
            let frames: FrameStream = Box::pin(subscription.map(|next| next.map(frame).map_err(Status::from)));
            Ok(Response::new(frames))
        })
    }
}

#[derive(Debug)]
pub struct MessagesApi {
    messages: Messages,
}

impl MessagesApi {
    pub fn new(messages: Messages) -> Self {
        Self { messages }
    }

    fn parse_channel(&self, name: &str, field: &str) -> Result<Channel, InvalidInput> {
        Channel::parse(name, field, self.messages.service().config().limits.max_text_bytes)
    }
}

fn parse_scope(scope: i32) -> Result<Scope, InvalidInput> {
    match pb::MessageScope::try_from(scope) {
        Ok(pb::MessageScope::Unspecified | pb::MessageScope::Global) => Ok(Scope::Global),
        Ok(pb::MessageScope::Local) => Ok(Scope::Local),
        Err(_) => Err(InvalidInput::new("scope", "must be MESSAGE_SCOPE_LOCAL or MESSAGE_SCOPE_GLOBAL")),
    }
}

fn check_type_name(type_name: &str, violations: &mut Violations) {
    if type_name.len() > MAX_TYPE_NAME_BYTES {
        violations.push(InvalidInput::new("type_name", format!("must be at most {MAX_TYPE_NAME_BYTES} bytes")));
    } else if type_name.chars().any(char::is_control) {
        violations.push(InvalidInput::new("type_name", "must not contain control characters"));
    }
}

fn scope(scope: Scope) -> pb::MessageScope {
    match scope {
        Scope::Local => pb::MessageScope::Local,
        Scope::Global => pb::MessageScope::Global,
    }
}

fn channel_message(message: &Message) -> pb::ChannelMessage {
    let posted = &message.message;
    pb::ChannelMessage {
        channel: posted.to.channel.to_string(),
        sequence: message.sequence,
        payload: Some(convert::proto_value(posted.payload.clone())),
        type_name: posted.type_name.clone(),
        posted_at: Some(convert::timestamp(posted.posted_at)),
        scope: scope(message.scope) as i32,
    }
}

/// A subscription's item as a `SubscribeResponse`.
fn item(item: Item) -> pb::SubscribeResponse {
    use pb::subscribe_response::Item as P;
    let item = match item {
        Item::Subscribed(channels) => {
            P::Subscribed(pb::Subscribed { channels: channels.iter().map(ToString::to_string).collect() })
        }
        Item::Message(shared) => P::Message(channel_message(&shared.message)),
        Item::SessionEnded { channel, session_id, reason, last } => P::SessionEnded(pb::SessionEnded {
            channel: channel.to_string(),
            session_id: session_id.to_string(),
            end_reason: pb::EndReason::from(reason) as i32,
            ends_subscription: last,
        }),
    };
    pb::SubscribeResponse { item: Some(item) }
}

/// A subscription's item as an encoded `SubscribeResponse`: a message's
/// bytes are made once and shared by every stream that sends it.
fn frame(next: Item) -> Bytes {
    let encode = |response: pb::SubscribeResponse| Bytes::from(response.encode_to_vec());
    match next {
        Item::Message(shared) => shared.encoded(|message| {
            encode(pb::SubscribeResponse {
                item: Some(pb::subscribe_response::Item::Message(channel_message(message))),
            })
        }),
        other => encode(item(other)),
    }
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::message_service_server::MessageService for MessagesApi {
    async fn post(&self, request: Request<pb::PostRequest>) -> Result<Response<pb::PostResponse>, Status> {
        let caller = caller(&request)?;
        let pb::PostRequest { channel, payload, type_name, scope } = request.into_inner();
        let mut v = Violations::default();
        let channel = v.check(self.parse_channel(&channel, "channel"));
        let max_bytes = self.messages.config().max_bytes;
        let payload = match payload {
            Some(payload) => {
                v.check(convert::parse_value(payload, "payload", max_bytes.saturating_sub(type_name.len())))
            }
            None => v.check(Err(InvalidInput::new("payload", "is required (a null value counts)"))),
        };
        check_type_name(&type_name, &mut v);
        let scope = v.check(parse_scope(scope));
        let post = v.finish(all(|| Some(Post { channel: channel?, payload: payload?, type_name, scope: scope? })))?;
        let posted = self.messages.post(&caller, post).await?;
        Ok(Response::new(pb::PostResponse { sequence: posted.sequence, local_deliveries: posted.local_deliveries }))
    }

    type SubscribeStream = ItemStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<ItemStream>, Status> {
        let subscription = self.open(request).await?;
        let stream = subscription.map(|next| next.map(item).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

impl MessagesApi {
    /// Parses a Subscribe request and starts its subscription.
    async fn open(&self, request: Request<pb::SubscribeRequest>) -> Result<Subscription, Status> {
        let caller = caller(&request)?;
        let pb::SubscribeRequest { channels } = request.into_inner();
        let mut v = Violations::default();
        if channels.is_empty() {
            v.push(InvalidInput::new("channels", "must name at least one channel"));
        }
        let mut parsed = Vec::with_capacity(channels.len());
        if v.count(channels.len(), "channels", self.messages.config().max_channels) {
            let mut named = HashSet::new();
            for (i, pb::ChannelSubscription { channel, after_sequence }) in channels.into_iter().enumerate() {
                let field = format!("channels[{i}].channel");
                if let Some(channel) = v.check(self.parse_channel(&channel, &field)) {
                    if named.insert(channel.clone()) {
                        parsed.push((channel, after_sequence));
                    } else {
                        v.push(InvalidInput::new(field, "names a channel already named"));
                    }
                }
            }
        }
        let channels = v.finish(Some(parsed))?;
        Ok(self.messages.subscribe(&caller, channels).await?)
    }
}
