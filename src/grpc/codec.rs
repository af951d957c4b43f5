//! [`Codec`]: prost's protobuf codec for sessiond's services, except that a
//! request message that does not decode is answered with
//! [`status::malformed_request`]: INVALID_ARGUMENT and one fixed message,
//! where prost's codec answers INTERNAL with the decoder's own words
//! (which name fields and types). Framing faults (a truncated message, a
//! bad compressed flag) are caught before decoding, by `framing`. Answers
//! are encoded by [`MessageEncoder`].
//!
//! `build.rs` makes the generated servers and clients of `sessiond.v1`
//! use it.
//!
//! [`EncodedCodec`]: answers that are already encoded protobuf messages,
//! sent as they are; requests decoded as [`Codec`] decodes them. Subscribe
//! uses it, so that a message reaching many subscribers is encoded once.

use std::cell::RefCell;
use std::marker::PhantomData;

use bytes::{BufMut as _, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::status;

/// Encodes `T` and decodes `U` with prost.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self { _types: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder { _type: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder { _type: PhantomData }
    }
}

/// Encodes `T` with prost, through a scratch buffer: prost writes a message
/// a byte at a time (each tag, length and varint byte), and a byte written
/// into tonic's buffer is a call into `BytesMut` (about 60 instructions),
/// where a byte pushed onto a `Vec` is an inlined store. The message is
/// then copied into the frame at once. The whole message's length is never
/// computed (prost needs only its parts'): a buffer that grew past
/// [`SCRATCH_MAX`] for a large message is let go after it.
#[derive(Debug, Clone)]
pub struct MessageEncoder<T> {
    _type: PhantomData<T>,
}

/// The most each thread's scratch buffer keeps between messages.
const SCRATCH_MAX: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<T: Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            item.encode_raw(scratch);
            dst.put_slice(scratch);
            if scratch.capacity() > SCRATCH_MAX {
                *scratch = Vec::new();
            }
        });
        Ok(())
    }
}

/// Decodes `U`; answers a message that does not decode without saying why.
#[derive(Debug, Clone)]
pub struct MessageDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The decoder's error names the field and what was wrong with it,
        // which is no business of the client's; it is kept for debugging.
        U::decode(buf).map(Some).map_err(|err| {
            tracing::debug!(error = %err, "a request message did not decode");
            status::malformed_request()
        })
    }
}

/// Sends [`Bytes`] that hold an encoded protobuf message as they are, and
/// decodes `U` as [`Codec`] does.
#[derive(Debug, Clone)]
pub struct EncodedCodec<U> {
    _type: PhantomData<U>,
}

impl<U> Default for EncodedCodec<U> {
    fn default() -> Self {
        Self { _type: PhantomData }
    }
}

impl<U> tonic::codec::Codec for EncodedCodec<U>
where
    U: Message + Default + Send + 'static,
{
    type Encode = Bytes;
    type Decode = U;
    type Encoder = EncodedEncoder;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder { _type: PhantomData }
    }
}

/// Copies an encoded message into the frame tonic writes.
#[derive(Debug, Clone, Copy)]
pub struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
