//! [`CheckedFrames`]: a request body that follows gRPC's message framing
//! (a compressed flag, a 4-byte length, the message) as it streams in, and
//! fails the call with a fixed status where tonic would answer with its
//! own words: a message over `--max-request-bytes` (OUT_OF_RANGE, refused
//! from its prefix, before it is read), and a bad compressed flag, a body
//! that ends inside a message or, where the method takes one message, a
//! body without any (INVALID_ARGUMENT, the answer to every request body
//! that does not decode). It copies nothing: it only counts.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Status;

use super::status;

/// The length of a message's prefix: the compressed flag and the length.
const PREFIX: usize = 5;

pin_project! {
    /// A request body checked frame by frame.
    pub struct CheckedFrames<B> {
        #[pin]
        inner: B,
        at: Position,
        max_message_bytes: usize,
        // Whether the request names a `grpc-encoding`, without which a
        // message may not be compressed.
        encoded: bool,
        // Whether the method takes exactly one message (it does not
        // stream its requests), and whether one has begun.
        one_message: bool,
        begun: bool,
        failed: bool,
    }
}

/// Where the reader is in the message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In a prefix, `read` bytes of it seen so far.
    Prefix { read: usize, bytes: [u8; PREFIX] },
    /// In a message, `left` bytes of it still to come.
    Message { left: usize },
}

/// The header naming a request's compression.
const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");

const BETWEEN_MESSAGES: Position = Position::Prefix { read: 0, bytes: [0; PREFIX] };

impl<B> CheckedFrames<B> {
    /// Checks `inner`, the body of a request whose headers are `headers`,
    /// to a method that takes `one_message` or a stream of them.
    pub fn new(inner: B, headers: &http::HeaderMap, max_message_bytes: usize, one_message: bool) -> Self {
        let encoded = headers.get(&GRPC_ENCODING).is_some_and(|encoding| encoding != "identity");
        Self { inner, at: BETWEEN_MESSAGES, max_message_bytes, encoded, one_message, begun: false, failed: false }
    }
}

impl Position {
    /// Follows `data`; fails at the first fault.
    fn follow(&mut self, mut data: &[u8], max_message_bytes: usize, encoded: bool) -> Result<(), Status> {
        while !data.is_empty() {
            match self {
                Position::Prefix { read, bytes } => {
                    let taken = (PREFIX - *read).min(data.len());
                    bytes[*read..*read + taken].copy_from_slice(&data[..taken]);
                    *read += taken;
                    data = &data[taken..];
                    if *read < PREFIX {
                        continue;
                    }
                    match bytes[0] {
                        0 => {}
                        // Compressed: tonic decompresses, or refuses an
                        // encoding it does not accept, by the header.
                        1 if encoded => {}
                        _ => return Err(status::malformed_request()),
                    }
                    let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                    if length > max_message_bytes {
                        return Err(status::request_too_large(max_message_bytes));
                    }
                    *self = if length == 0 { BETWEEN_MESSAGES } else { Position::Message { left: length } };
                }
                Position::Message { left } => {
                    let taken = (*left).min(data.len());
                    *left -= taken;
                    data = &data[taken..];
                    if *left == 0 {
                        *self = BETWEEN_MESSAGES;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<B> Body for CheckedFrames<B>
where
    B: Body<Data = Bytes, Error = Status>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let frame = ready!(this.inner.poll_frame(cx));
        let fault = match &frame {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) => {
                    *this.begun |= !data.is_empty();
                    this.at.follow(data, *this.max_message_bytes, *this.encoded).err()
                }
                None => None,
            },
            // The body ended inside a message, or before the one message.
            None if *this.at != BETWEEN_MESSAGES || (*this.one_message && !*this.begun) => {
                Some(status::malformed_request())
            }
            _ => None,
        };
        match fault {
            Some(status) => {
                *this.failed = true;
                Poll::Ready(Some(Err(status)))
            }
            None => Poll::Ready(frame),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn follow(chunks: &[&[u8]], max: usize) -> Result<Position, Status> {
        let mut at = BETWEEN_MESSAGES;
        for chunk in chunks {
            at.follow(chunk, max, false)?;
        }
        Ok(at)
    }

    #[test]
    fn messages_split_anywhere_are_followed_to_their_end() {
        let message: &[u8] = &[0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        for split in 0..message.len() {
            let (a, b) = message.split_at(split);
            assert_eq!(follow(&[a, b], 16).expect("well framed"), BETWEEN_MESSAGES, "split at {split}");
        }
        assert_eq!(follow(&[&message[..7]], 16).expect("well framed so far"), Position::Message { left: 1 });
    }

    #[test]
    fn a_message_over_the_limit_is_out_of_range_from_its_prefix() {
        let status = follow(&[&[0, 0, 0, 1, 0]], 255).expect_err("too large");
        assert_eq!(status.code(), Code::OutOfRange);
    }

    #[test]
    fn a_compressed_flag_without_an_encoding_is_malformed() {
        for flag in [1, 2, 0x80] {
            let status = follow(&[&[flag, 0, 0, 0, 1, 0]], 16).expect_err("malformed");
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(status.message(), status::MALFORMED_REQUEST);
        }
        let mut at = BETWEEN_MESSAGES;
        at.follow(&[1, 0, 0, 0, 1, 0], 16, true).expect("with an encoding, tonic decides");
    }
}
