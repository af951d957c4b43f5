//! `sessiond.v1.MessageService`: Post and Subscribe, parsed here, served by
//! the domain's [`Messages`].

use std::collections::HashSet;
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert;
use super::pb;
use crate::domain::messages::MAX_TYPE_NAME_BYTES;
use crate::domain::{Channel, InvalidInput, Scope, Violations, all};
use crate::service::messages::{Item, Messages, Post};

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

fn item(item: Item) -> pb::SubscribeResponse {
    use pb::subscribe_response::Item as P;
    let item = match item {
        Item::Subscribed(channels) => {
            P::Subscribed(pb::Subscribed { channels: channels.iter().map(ToString::to_string).collect() })
        }
        Item::Message(message) => {
            let posted = &message.message;
            P::Message(pb::ChannelMessage {
                channel: posted.to.channel.to_string(),
                sequence: message.sequence,
                payload: Some(convert::proto_value(posted.payload.clone())),
                type_name: posted.type_name.clone(),
                posted_at: Some(convert::timestamp(posted.posted_at)),
                scope: scope(message.scope) as i32,
            })
        }
        Item::SessionEnded { channel, session_id, reason, last } => P::SessionEnded(pb::SessionEnded {
            channel: channel.to_string(),
            session_id: session_id.to_string(),
            end_reason: pb::EndReason::from(reason) as i32,
            ends_subscription: last,
        }),
    };
    pb::SubscribeResponse { item: Some(item) }
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
        let subscription = self.messages.subscribe(&caller, channels).await?;
        let stream = subscription.map(|next| next.map(item).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
