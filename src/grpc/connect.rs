//! [`Connect`]: the Connect protocol's unary form over HTTP/1.1 or HTTP/2
//! (`POST /sessiond.v1.SessionService/CreateSession` with
//! `Content-Type: application/json` or `application/proto`), translated
//! into a gRPC call to the same services, through the same limits,
//! authentication and observation as any other call, and its answer
//! translated back. One translation for every unary method the
//! descriptor sets describe: no route is written per method.
//!
//! - **Request.** A JSON body is read as the method's request message in
//!   proto3's canonical JSON mapping (field names in lowerCamelCase or as
//!   in the `.proto`, enum values by name or number, 64-bit integers as
//!   numbers or strings, `Duration` as `"1800s"`), then encoded as
//!   protobuf; a proto body is passed as it is. An empty body is the empty
//!   message. Unknown fields and unknown enum names are refused with
//!   INVALID_ARGUMENT naming the field; so is JSON that does not parse
//!   or does not fit the message. A body over `--max-request-bytes` is
//!   OUT_OF_RANGE, refused from its `Content-Length` when it has one. The
//!   body must arrive within the call's deadline.
//! - **Headers.** Every header but Connect's own is passed on as gRPC
//!   metadata (`authorization` among them); `connect-timeout-ms` becomes
//!   `grpc-timeout`.
//! - **Answer.** OK: status 200, the response message as JSON (every
//!   field, defaults included) or protobuf, the call's metadata as headers
//!   and its trailers as `trailer-` headers. Otherwise Connect's error
//!   body, `{"code", "message", "details": [{"type", "value", "debug"}]}`,
//!   with the HTTP status Connect maps the code to; `details` holds the
//!   `google.rpc` details of the gRPC status (`value` the detail in
//!   protobuf, base64, `debug` the same as JSON).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Full, Limited};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::{Code, Status};

use super::status;

/// Connect's own headers, never passed on as metadata.
const CONNECT_PROTOCOL_VERSION: &str = "connect-protocol-version";
const CONNECT_TIMEOUT_MS: &str = "connect-timeout-ms";

/// The request and response types of one unary method.
#[derive(Debug)]
struct Unary {
    input: MessageDescriptor,
    output: MessageDescriptor,
}

/// The unary methods served over Connect, with the limits of their
/// requests. Cloned with the server's stack on every call: the methods
/// are a table built once per process, referred to without a count.
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    served: &'static Served,
    max_request_bytes: usize,
    max_call_duration: Duration,
}

/// The methods of sessiond's services, health and the error details.
#[derive(Debug)]
struct Served {
    /// The unary methods, by path.
    methods: HashMap<String, Unary>,
    /// Paths of streaming methods, answered UNIMPLEMENTED over Connect's
    /// unary form.
    streaming: Vec<String>,
    /// Every message a detail may hold, for the `debug` form.
    pool: DescriptorPool,
}

static SERVED: LazyLock<Served> = LazyLock::new(|| {
    Served::of(&[
        super::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ])
});

impl Served {
    /// The methods of the services in the encoded descriptor `sets`, which
    /// also describe the messages error details hold.
    fn of(sets: &[&[u8]]) -> Self {
        let mut pool = DescriptorPool::new();
        for set in sets {
            // The sets are compiled in and decode (a unit test checks).
            if let Err(err) = pool.decode_file_descriptor_set(*set) {
                tracing::error!(error = %err, "a descriptor set does not decode; its methods are not served over Connect");
            }
        }
        let mut methods = HashMap::new();
        let mut streaming = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                if method.is_client_streaming() || method.is_server_streaming() {
                    streaming.push(path);
                } else {
                    methods.insert(path, Unary { input: method.input(), output: method.output() });
                }
            }
        }
        Self { methods, streaming, pool }
    }
}

/// The two encodings of Connect's unary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Proto,
}

impl Encoding {
    /// The encoding a request's `Content-Type` names, if it is Connect's
    /// unary form.
    pub fn of(content_type: &[u8]) -> Option<Self> {
        let essence = content_type.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/json") {
            Some(Self::Json)
        } else if essence.eq_ignore_ascii_case(b"application/proto") {
            Some(Self::Proto)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Json => "application/json",
            Self::Proto => "application/proto",
        })
    }
}

impl Connect {
    /// Serves the unary methods of sessiond's services and health, whose
    /// descriptors also describe the messages error details hold (for
    /// their `debug` form). Request bodies over `max_request_bytes` are
    /// refused; a body must arrive within `max_call_duration` (or the
    /// client's sooner deadline).
    pub fn new(max_request_bytes: usize, max_call_duration: Duration) -> Self {
        Self { served: &SERVED, max_request_bytes, max_call_duration }
    }

    /// Translates a Connect unary request into the gRPC request for the
    /// inner service, or answers it at once when it cannot be served.
    pub async fn request<B>(
        &self,
        request: Request<B>,
        encoding: Encoding,
    ) -> Result<(Request<tonic::body::Body>, &MessageDescriptor), Response<tonic::body::Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        let Some(unary) = self.served.methods.get(path) else {
            let message = if self.served.streaming.iter().any(|streaming| streaming == path) {
                format!("{path} streams: call it over gRPC or gRPC-Web")
            } else {
                format!("no method {path}")
            };
            return Err(self.error(&Status::unimplemented(message)));
        };
        if request.method() != Method::POST {
            let mut response = self.error(&Status::unimplemented("Connect unary calls are POST requests"));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Err(response);
        }
        let (mut parts, body) = request.into_parts();
        let timeout = check_headers(&parts.headers).map_err(|status| self.error(&status))?;
        let too_large = || self.error(&status::request_too_large(self.max_request_bytes));
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_request_bytes as u64) {
            return Err(too_large());
        }
        // The body is read within the call's deadline, like the rest of it.
        let deadline = timeout.map_or(self.max_call_duration, |t| t.min(self.max_call_duration));
        let body = match tokio::time::timeout(deadline, Limited::new(body, self.max_request_bytes).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Ok(Err(_)) => {
                return Err(self.error(&Status::cancelled("the request body was cut off")));
            }
            Err(_) => return Err(self.error(&status::deadline_exceeded())),
        };
        let message = match encoding {
            Encoding::Proto => body,
            Encoding::Json => json_to_proto(&body, &unary.input).map_err(|status| self.error(&status))?,
        };

        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        // A message of 4 GiB or more cannot be framed; its prefix then
        // announces more than follows, which the framing layer refuses.
        framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
        framed.put_slice(&message);

        strip_connect_headers(&mut parts.headers);
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        if let Some(timeout) = timeout {
            parts.headers.insert("grpc-timeout", grpc_timeout(timeout));
        }
        // The services behind are HTTP/2's; connection details and peer
        // certificates stay in the extensions.
        parts.version = Version::HTTP_2;
        let body = tonic::body::Body::new(Full::new(framed.freeze()).map_err(|never| match never {}));
        Ok((Request::from_parts(parts, body), &unary.output))
    }

    /// Translates the gRPC answer of a call into Connect's.
    pub async fn response(
        &self,
        response: Response<tonic::body::Body>,
        output: &MessageDescriptor,
        encoding: Encoding,
    ) -> Response<tonic::body::Body> {
        let (parts, body) = response.into_parts();
        // A status in the headers: the call was answered without a message.
        if let Some(status) = Status::from_header_map(&parts.headers) {
            let mut response = self.error(&status);
            copy_metadata(&parts.headers, response.headers_mut(), "");
            return response;
        }
        let collected = match body.collect().await {
            Ok(collected) => collected,
            Err(status) => return self.error(&status),
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status =
            Status::from_header_map(&trailers).unwrap_or_else(|| Status::internal("the call ended without a status"));
        let mut headers = HeaderMap::new();
        copy_metadata(&parts.headers, &mut headers, "");
        if status.code() != Code::Ok {
            let mut response = self.error(&status);
            copy_metadata(&trailers, &mut headers, "");
            response.headers_mut().extend(headers);
            return response;
        }
        copy_metadata(&trailers, &mut headers, "trailer-");
        let mut framed = collected.to_bytes();
        if framed.len() < 5 || framed[0] != 0 {
            return self.error(&Status::internal("internal error"));
        }
        framed.advance(5);
        let body = match encoding {
            Encoding::Proto => framed,
            Encoding::Json => match proto_to_json(framed, output) {
                Some(json) => json,
                None => return self.error(&Status::internal("internal error")),
            },
        };
        let mut response = Response::new(tonic::body::Body::new(Full::new(body).map_err(|never| match never {})));
        headers.insert(header::CONTENT_TYPE, encoding.content_type());
        *response.headers_mut() = headers;
        response
    }

    /// Connect's error answer for `status` (see [`error_response`]).
    fn error(&self, status: &Status) -> Response<tonic::body::Body> {
        error_response(status, &self.served.pool)
    }

    /// Connect's answer to a request in a content type it does not serve.
    pub fn unsupported_media_type(&self, content_type: Option<&HeaderValue>) -> Response<tonic::body::Body> {
        let named = content_type.and_then(|v| v.to_str().ok()).unwrap_or("none");
        let status = Status::unimplemented(format!(
            "content type {named} is not served: use application/json or application/proto (Connect), \
             application/grpc, or application/grpc-web"
        ));
        let mut response = self.error(&status);
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        response.headers_mut().insert(
            "accept-post",
            HeaderValue::from_static(
                "application/json, application/proto, application/grpc, application/grpc-web, application/grpc-web-text",
            ),
        );
        response
    }
}

/// Checks Connect's headers; answers the deadline they give, if any.
fn check_headers(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    if let Some(version) = headers.get(CONNECT_PROTOCOL_VERSION)
        && version != "1"
    {
        return Err(status::invalid_header(
            CONNECT_PROTOCOL_VERSION,
            "only version 1 of the Connect protocol is served",
        ));
    }
    for name in [header::CONTENT_ENCODING.as_str(), "connect-content-encoding"] {
        if headers.get(name).is_some_and(|encoding| encoding != "identity") {
            return Err(Status::unimplemented(format!("{name}: only identity is served")));
        }
    }
    let Some(timeout) = headers.get(CONNECT_TIMEOUT_MS) else { return Ok(None) };
    let digits = timeout.as_bytes();
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(status::invalid_header(
            CONNECT_TIMEOUT_MS,
            "must be a positive number of milliseconds, at most 10 digits",
        ));
    }
    // Ten digits at most: no overflow in u64.
    let millis = digits.iter().fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    Ok(Some(Duration::from_millis(millis)))
}

/// `timeout` as gRPC writes it: at most 8 digits and a unit.
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let millis = timeout.as_millis();
    let value = if millis <= 99_999_999 { format!("{millis}m") } else { format!("{}S", timeout.as_secs()) };
    // Digits and a letter are a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("0m"))
}

/// Removes the headers that belong to the Connect request rather than
/// the call: Connect's own, the body's framing, and hop-by-hop ones.
fn strip_connect_headers(headers: &mut HeaderMap) {
    for name in [
        CONNECT_PROTOCOL_VERSION,
        CONNECT_TIMEOUT_MS,
        "connect-content-encoding",
        "connect-accept-encoding",
        "content-encoding",
        "content-length",
        "accept-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "accept",
    ] {
        headers.remove(name);
    }
}

/// Copies a gRPC answer's metadata into Connect headers under `prefix`,
/// leaving out gRPC's own headers.
fn copy_metadata(from: &HeaderMap, to: &mut HeaderMap, prefix: &str) {
    for (name, value) in from {
        let name = name.as_str();
        if name.starts_with("grpc-") || name == "content-type" || name == "te" {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            to.append(name, value.clone());
        }
    }
}

/// Reads `body` as JSON of `message`'s type and encodes it as protobuf.
fn json_to_proto(body: &[u8], message: &MessageDescriptor) -> Result<Bytes, Status> {
    let body = if body.trim_ascii().is_empty() { b"{}".as_slice() } else { body };
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let decoded =
        DynamicMessage::deserialize(message.clone(), serde_path_to_error::Deserializer::new(&mut json, &mut track))
            .and_then(|decoded| json.end().map(|()| decoded));
    match decoded {
        Ok(decoded) => Ok(decoded.encode_to_vec().into()),
        Err(err) => Err(json_fault(&err, &track.path().to_string())),
    }
}

/// The INVALID_ARGUMENT a JSON request body that does not fit its
/// message is answered with: the field it failed at, and why, without
/// echoing any value it held.
fn json_fault(err: &serde_json::Error, path: &str) -> Status {
    use serde_json::error::Category;
    let path = if path == "." { "" } else { path };
    let text = err.to_string();
    let (field, description) = match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            (String::new(), format!("not valid JSON (line {}, column {})", err.line(), err.column()))
        }
        Category::Data => {
            if let Some(name) = quoted_after(&text, "unrecognized field name '") {
                (join(path, &name), "unknown field".to_owned())
            } else if let Some(name) = quoted_after(&text, "unrecognized enum value '") {
                (path.to_owned(), format!("unknown enum value {name}"))
            } else {
                (path.to_owned(), "not a valid value of this field".to_owned())
            }
        }
    };
    status::malformed_json(&field, &description)
}

/// The text between `prefix` and the next `'` in `text`, when it is a
/// plain name (a field or an enum value name, never a value).
fn quoted_after(text: &str, prefix: &str) -> Option<String> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let name = &rest[..rest.find('\'')?];
    let plain = !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then(|| name.to_owned())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// Decodes a response message of `message`'s type and writes it as JSON,
/// every field included.
fn proto_to_json(body: Bytes, message: &MessageDescriptor) -> Option<Bytes> {
    let decoded = DynamicMessage::decode(message.clone(), body).ok()?;
    json_of(&decoded, SerializeOptions::new().skip_default_fields(false))
}

fn json_of(message: &DynamicMessage, options: SerializeOptions) -> Option<Bytes> {
    let mut json = serde_json::Serializer::new(Vec::new());
    message.serialize_with_options(&mut json, &options).ok()?;
    Some(json.into_inner().into())
}

/// Connect's error answer for `status`: its code, message and
/// `google.rpc` details, with the HTTP status Connect maps the code to.
fn error_response(status: &Status, pool: &DescriptorPool) -> Response<tonic::body::Body> {
    let code = if status.code() == Code::Ok { Code::Unknown } else { status.code() };
    let mut body = serde_json::Map::new();
    body.insert("code".into(), code_name(code).into());
    if !status.message().is_empty() {
        body.insert("message".into(), status.message().into());
    }
    let details = details(status.details(), pool);
    if !details.is_empty() {
        body.insert("details".into(), details.into());
    }
    let body = serde_json::Value::Object(body).to_string();
    let mut response =
        Response::new(tonic::body::Body::new(Full::new(Bytes::from(body)).map_err(|never| match never {})));
    *response.status_mut() = http_status(code);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The details of an encoded `google.rpc.Status`, as Connect writes them.
fn details(encoded: &[u8], pool: &DescriptorPool) -> Vec<serde_json::Value> {
    let Ok(status) = tonic_types::pb::Status::decode(encoded) else { return Vec::new() };
    status
        .details
        .into_iter()
        .map(|any| {
            let name = any.type_url.rsplit('/').next().unwrap_or_default().to_owned();
            let mut detail = serde_json::Map::new();
            detail.insert("type".into(), name.clone().into());
            detail.insert("value".into(), base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value).into());
            let debug = pool
                .get_message_by_name(&name)
                .and_then(|descriptor| DynamicMessage::decode(descriptor, any.value.as_slice()).ok())
                .and_then(|message| json_of(&message, SerializeOptions::new()))
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
            if let Some(debug) = debug {
                detail.insert("debug".into(), debug);
            }
            serde_json::Value::Object(detail)
        })
        .collect()
}

/// Connect's name of a gRPC code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect error with `code` (the Connect protocol's
/// table).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Connect {
        Connect::new(1024, Duration::from_secs(30))
    }

    #[test]
    fn every_unary_method_is_served_and_every_streaming_one_is_known() {
        let connect = served();
        assert!(connect.served.methods.contains_key("/sessiond.v1.SessionService/CreateSession"));
        assert!(connect.served.methods.contains_key("/sessiond.v1.LogService/QueryLogs"));
        assert!(connect.served.methods.contains_key("/grpc.health.v1.Health/Check"));
        assert!(connect.served.streaming.iter().any(|path| path == "/sessiond.v1.SessionService/WatchSessions"));
        assert!(connect.served.streaming.iter().any(|path| path == "/sessiond.v1.LogService/StreamLog"));
        assert!(connect.served.pool.get_message_by_name("google.rpc.ErrorInfo").is_some());
    }

    #[test]
    fn json_faults_name_the_field_and_never_echo_a_value() {
        let connect = served();
        let input = &connect.served.methods["/sessiond.v1.SessionService/GetSession"].input;
        let status = json_to_proto(br#"{"session": {"token": 12345678}}"#, input).expect_err("a number is no token");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid session.token: not a valid value of this field");
        assert!(!format!("{status:?}").contains("12345678"));
        let status = json_to_proto(br#"{"session": {}, "extra": 1}"#, input).expect_err("unknown");
        assert_eq!(status.message(), "invalid extra: unknown field");
        let status = json_to_proto(b"{} trailing", input).expect_err("not JSON");
        assert_eq!(status.message(), "the request body is not valid JSON (line 1, column 4)");
        assert!(json_to_proto(b"", input).is_ok(), "an empty body is the empty message");
    }

    #[test]
    fn deadlines_are_written_as_grpc_timeouts_of_at_most_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(grpc_timeout(Duration::from_millis(99_999_999)), "99999999m");
        assert_eq!(grpc_timeout(Duration::from_millis(9_999_999_999)), "9999999S");
    }

    #[test]
    fn codes_map_to_connects_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(code_name(Code::Cancelled), "canceled");
    }
}
