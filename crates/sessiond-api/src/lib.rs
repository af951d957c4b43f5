//! sessiond's API as Rust types: the `sessiond.v1` protobuf messages, a
//! tonic client per service, and the encoded descriptor set of `proto/`.
//!
//! Clients and tools depend on this crate alone; the server (the
//! `sessiond` crate) generates its service traits against these messages.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sessiond_api::v1::session_service_client::SessionServiceClient;
//! let mut sessions = SessionServiceClient::connect("http://127.0.0.1:50051").await?;
//! # Ok(()) }
//! ```

/// Messages, enums and clients of the `sessiond.v1` package.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sessiond.v1");
}

/// The encoded `FileDescriptorSet` of `proto/sessiond/v1` (and the
/// well-known types it imports): what server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));
