//! `sessiond probe`: asks a running sessiond's `grpc.health.v1` whether it
//! is SERVING, over TLS when the server's own settings say it serves TLS.
//! It is what Kubernetes runs as an exec probe when the kubelet's native
//! gRPC probe (plaintext only) cannot be used, what the container image
//! declares as its `HEALTHCHECK`, and what the chart's `helm test` runs.
//!
//! With TLS the probe does not verify the server's certificate: it checks
//! health, not identity, sends nothing secret and reads nothing secret back.
//! Pinning the configured certificate instead would fail every replica at
//! once while a renewed certificate is on disk but not yet served.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The flags of `sessiond probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Address to check, HOST:PORT. Default: the port of --listen on this
    /// machine's loopback address.
    #[arg(long)]
    pub address: Option<String>,

    /// Health service to ask for, e.g. `sessiond.v1.SessionService`; empty
    /// asks for the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,

    /// Longest the whole check may take, connection included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub timeout: Duration,

    /// Speak TLS. Implied by --tls-cert (SESSIOND_TLS_CERT): a sessiond
    /// with a certificate serves TLS only.
    #[arg(long)]
    pub tls: bool,
}

/// Why a probe found no SERVING answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{address}: {status}")]
    NotServing { address: String, status: &'static str },
    #[error("{address}: no answer within {}", humantime::format_duration(*timeout))]
    Timeout { address: String, timeout: Duration },
    #[error("{address}: cannot connect: {cause}")]
    Connect { address: String, cause: String },
    #[error("{address}: health check failed: {code:?}: {message}")]
    Call { address: String, code: tonic::Code, message: String },
    #[error("{address}: not HOST:PORT")]
    Address { address: String },
}

/// What the probe checks: resolved from its flags and the server's own
/// listen address and TLS settings.
#[derive(Debug, Clone)]
pub struct Probe {
    pub address: String,
    pub service: String,
    pub timeout: Duration,
    pub tls: bool,
}

impl Probe {
    /// `args` over the server's settings: the listen address (an unspecified
    /// one becomes loopback) and whether a certificate is configured.
    pub fn new(args: &ProbeArgs, listen: SocketAddr, serves_tls: bool) -> Self {
        let address = args.address.clone().unwrap_or_else(|| local_address(listen).to_string());
        Self { address, service: args.service.clone(), timeout: args.timeout, tls: args.tls || serves_tls }
    }

    /// Asks once; `Ok` only for SERVING.
    pub async fn check(&self) -> Result<(), ProbeError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.ask()).await {
            Ok(Ok(ServingStatus::Serving)) => Ok(()),
            Ok(Ok(status)) => Err(ProbeError::NotServing { address: self.address.clone(), status: name(status) }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ProbeError::Timeout { address: self.address.clone(), timeout }),
        }
    }

    async fn ask(&self) -> Result<ServingStatus, ProbeError> {
        let channel = self.connect().await?;
        let request = HealthCheckRequest { service: self.service.clone() };
        let answer = HealthClient::new(channel).check(request).await.map_err(|status| ProbeError::Call {
            address: self.address.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        })?;
        Ok(ServingStatus::try_from(answer.into_inner().status).unwrap_or(ServingStatus::Unknown))
    }

    async fn connect(&self) -> Result<Channel, ProbeError> {
        let address = self.address.clone();
        let connect_error = |cause: &(dyn std::error::Error + 'static)| ProbeError::Connect {
            address: address.clone(),
            cause: error_chain(cause),
        };
        let host = host_of(&self.address).ok_or_else(|| ProbeError::Address { address: address.clone() })?;
        // The URI only names the authority: the connection is made below.
        let endpoint = Endpoint::from_shared(format!("http://{}", self.address))
            .map_err(|_| ProbeError::Address { address: address.clone() })?;
        if !self.tls {
            return endpoint.connect().await.map_err(|err| connect_error(&err));
        }
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => {
                ServerName::try_from(host.to_owned()).map_err(|_| ProbeError::Address { address: address.clone() })?
            }
        };
        let connector = TlsConnector::from(Arc::new(tls_config()));
        let target = self.address.clone();
        let connect = tower::service_fn(move |_: http::Uri| {
            let (connector, server_name, target) = (connector.clone(), server_name.clone(), target.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(target).await?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        endpoint.connect_with_connector(connect).await.map_err(|err| connect_error(&err))
    }
}

/// Where a server listening on `listen` is reached from this machine.
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// The host of `HOST:PORT` or `[V6]:PORT`.
fn host_of(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

fn name(status: ServingStatus) -> &'static str {
    match status {
        ServingStatus::Unknown => "UNKNOWN",
        ServingStatus::Serving => "SERVING",
        ServingStatus::NotServing => "NOT_SERVING",
        ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
    }
}

/// An error with its causes, on one line: tonic's transport errors say
/// little without them.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// TLS 1.2 and 1.3 with ring, HTTP/2 by ALPN, and the server's certificate
/// taken as it comes (see the module's documentation); its handshake
/// signatures are still checked.
fn tls_config() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyCertificate { algorithms: provider.signature_verification_algorithms };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The protocol versions are the provider's own defaults: always valid.
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        assert_eq!(local_address("0.0.0.0:50051".parse().unwrap()).to_string(), "127.0.0.1:50051");
        assert_eq!(local_address("[::]:7000".parse().unwrap()).to_string(), "[::1]:7000");
        assert_eq!(local_address("10.0.0.5:50051".parse().unwrap()).to_string(), "10.0.0.5:50051");
    }

    #[test]
    fn hosts_are_read_from_addresses() {
        assert_eq!(host_of("sessiond.shop.svc:50051"), Some("sessiond.shop.svc"));
        assert_eq!(host_of("[::1]:50051"), Some("::1"));
        assert_eq!(host_of("sessiond"), None);
        assert_eq!(host_of(":50051"), None);
    }
}
