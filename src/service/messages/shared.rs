//! [`SharedMessage`]: one message as every subscription of this process
//! that receives it shares it, with the bytes their streams send made once
//! for all of them.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::domain::Message;

/// A message handed to the subscriptions of this process: one allocation
/// for all of them. The first stream that sends it encodes it; the others
/// send the same bytes.
#[derive(Debug)]
pub struct SharedMessage {
    pub message: Message,
    encoded: OnceLock<Bytes>,
}

impl SharedMessage {
    pub fn new(message: Message) -> Self {
        Self { message, encoded: OnceLock::new() }
    }

    /// The message as a stream sends it: `encode`'s answer the first time,
    /// the same bytes every time after. Every caller must encode alike.
    pub fn encoded(&self, encode: impl FnOnce(&Message) -> Bytes) -> Bytes {
        self.encoded.get_or_init(|| encode(&self.message)).clone()
    }
}

/// Equal when the messages are: the encoded form follows from the message.
impl PartialEq for SharedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixMillis;
    use crate::domain::{Channel, NewMessage, Scope, TenantChannel, TenantId};

    #[test]
    fn a_message_is_encoded_once_whoever_sends_it() {
        let to = TenantChannel {
            tenant: TenantId::parse("acme", "tenant").expect("a valid tenant"),
            channel: Channel::Named("room".into()),
        };
        let message =
            NewMessage { to, payload: serde_json::json!(1), type_name: String::new(), posted_at: UnixMillis(0) };
        let shared = SharedMessage::new(Message { sequence: 1, scope: Scope::Global, message });
        let mut encodings = 0;
        for _ in 0..3 {
            let bytes = shared.encoded(|m| {
                encodings += 1;
                Bytes::from(m.sequence.to_string())
            });
            assert_eq!(bytes, "1");
        }
        assert_eq!(encodings, 1);
    }
}
