//! Malformed and oversized requests at every RPC: each gets a clear error,
//! the server stays up, and its memory stays flat.
//!
//! Requests are raw bytes sent to each method's path, so the server's own
//! decoding is what is exercised: undecodable bytes are INVALID_ARGUMENT
//! with one fixed message (never the decoder's words), empty or
//! wrong-shaped messages are INVALID_ARGUMENT naming the field, and
//! messages over the limit are OUT_OF_RANGE, refused before decoding.

use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::helpers::TestApp;

/// The one message of a request body that does not decode (README, Errors).
pub const MALFORMED: &str = "the request body is not a valid message of this method";

/// Sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Default)]
pub struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// Every sessiond method: its path and whether the client or server streams.
fn methods() -> Vec<(String, bool, bool)> {
    let set =
        prost_types::FileDescriptorSet::decode(sessiond::grpc::FILE_DESCRIPTOR_SET).expect("a valid descriptor set");
    let mut methods = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "sessiond.v1") {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/sessiond.v1.{}/{}", service.name(), method.name());
                methods.push((path, method.client_streaming(), method.server_streaming()));
            }
        }
    }
    assert_eq!(methods.len(), 21, "every RPC of the API");
    methods
}

/// Sends `body` to `path` and answers the status (OK included).
async fn call(app: &TestApp, path: &str, client_streaming: bool, server_streaming: bool, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path = path.parse().expect("a valid path");
    let outcome = match (client_streaming, server_streaming) {
        (false, false) => grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ()),
        // A refused stream fails before its first message; an accepted one
        // (a watch) stays open, so its headers are the answer.
        (false, true) => grpc.server_streaming(tonic::Request::new(body), path, RawCodec).await.map(|_| ()),
        (true, _) => {
            let stream = tokio_stream::iter([body]);
            grpc.client_streaming(tonic::Request::new(stream), path, RawCodec).await.map(|_| ())
        }
    };
    outcome.err().unwrap_or_else(|| Status::ok(""))
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The real binary, alone in its process so its memory is its own.
struct Child {
    process: std::process::Child,
    channel: tonic::transport::Channel,
    _data: tempfile::TempDir,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn spawn_binary(args: &[&str]) -> Child {
    let data = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    let process = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "error"])
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sessiond starts");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("a valid uri");
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Child { process, channel, _data: data },
            Err(_) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(err) => panic!("sessiond did not accept connections: {err}"),
        }
    }
}

#[tokio::test]
async fn garbage_empty_and_oversized_requests_get_clear_errors_at_every_rpc_and_the_server_stays_up() {
    let app = TestApp::spawn_with(|s| s.max_request_bytes = 64 * 1024).await;
    let garbage: Vec<u8> = (0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let truncated = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01];
    let oversized = vec![0x12; 200 * 1024];

    for (path, client_streaming, server_streaming) in methods() {
        let status = call(&app, &path, client_streaming, server_streaming, truncated.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: undecodable bytes: {status:?}");
        assert_eq!(status.message(), MALFORMED, "{path}: one fixed message: {status:?}");

        let status = call(&app, &path, client_streaming, server_streaming, Vec::new()).await;
        // Listing, searching and watching with no filter are valid (for an
        // admin, which an open server's callers are); everything else needs
        // a session or a kind.
        let empty_is_valid = ["/ListSessions", "/QueryLogs", "/WatchSessions"].iter().any(|m| path.ends_with(m));
        let expected = if empty_is_valid { Code::Ok } else { Code::InvalidArgument };
        assert_eq!(status.code(), expected, "{path}: an empty request: {status:?}");

        let status = call(&app, &path, client_streaming, server_streaming, garbage.clone()).await;
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::NotFound),
            "{path}: garbage is refused: {status:?}"
        );

        let status = call(&app, &path, client_streaming, server_streaming, oversized.clone()).await;
        assert_eq!(status.code(), Code::OutOfRange, "{path}: over the request limit: {status:?}");
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("the server still answers");
}

#[tokio::test]
async fn memory_stays_flat_under_a_stream_of_bad_requests() {
    let child = spawn_binary(&["--max-request-bytes", "65536"]).await;
    let app_channel = child.channel.clone();
    let send = |body: Vec<u8>| {
        let channel = app_channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("the channel is ready");
            let path = "/sessiond.v1.SessionService/CreateSession".parse().unwrap();
            grpc.unary(tonic::Request::new(body), path, RawCodec).await.expect_err("a bad request is refused");
        }
    };
    let oversized = vec![0x12; 128 * 1024];
    // Warm up allocators and connection buffers first.
    for _ in 0..300 {
        send(oversized.clone()).await;
        send(vec![0x0a, 0xff, 0xff]).await;
    }
    let before = rss_kib(child.process.id());
    for _ in 0..3_000 {
        send(oversized.clone()).await;
        send(vec![0x0a, 0xff, 0xff]).await;
    }
    let grown = rss_kib(child.process.id()).saturating_sub(before);
    assert!(before > 0, "the server's memory can be read");
    assert!(grown < 8 * 1024, "sessiond's resident memory grew by {grown} KiB over 6000 bad requests");
}
