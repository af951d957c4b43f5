//! Where the admin commands connect and how they authenticate: `--addr`,
//! TLS (a CA to trust, a client certificate and key for mutual TLS, the
//! name to expect), and the API key, taken from `SESSIOND_CLI_API_KEY`
//! or a file — never from a flag, whose value any user could read in
//! `ps`. The key is sent as `authorization: Bearer <key>` and never
//! printed.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::Failure;
use super::exit::error_chain;
use super::output::Format;
use crate::settings::Secret;

/// The variable the admin commands read the API key from.
pub const API_KEY_VARIABLE: &str = "SESSIOND_CLI_API_KEY";

/// How the admin commands reach sessiond, shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// sessiond's address: HOST:PORT, or a URL (`https://` speaks TLS).
    #[arg(long, env = "SESSIOND_CLI_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,

    /// A file holding the API key (one trailing newline ignored). The key
    /// may instead be in SESSIOND_CLI_API_KEY; setting both is an error.
    #[arg(long, env = "SESSIOND_CLI_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Speak TLS (implied by an https:// address or any TLS option).
    #[arg(long, env = "SESSIOND_CLI_TLS")]
    pub tls: bool,

    /// CA certificate (PEM) the server's certificate must chain to;
    /// required with TLS.
    #[arg(long, env = "SESSIOND_CLI_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Client certificate (PEM), for mutual TLS; needs --client-key.
    #[arg(long, env = "SESSIOND_CLI_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Client certificate's private key (PEM).
    #[arg(long, env = "SESSIOND_CLI_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// The name the server's certificate must hold; default: the
    /// address's host.
    #[arg(long, env = "SESSIOND_CLI_SERVER_NAME")]
    pub server_name: Option<String>,

    /// Longest wait for the connection (and for `health`'s answer).
    #[arg(long, env = "SESSIOND_CLI_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// `table` (aligned columns, for people) or `json` (one JSON object
    /// per line, for scripts).
    #[arg(long, short = 'o', env = "SESSIOND_CLI_OUTPUT", value_enum, default_value = "table")]
    pub output: Format,
}

/// Adds the API key to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to sessiond with the key attached.
pub type Client = InterceptedService<Channel, Bearer>;

impl ConnectArgs {
    /// Connects, with the key from `from_env` or `--api-key-file`.
    pub async fn connect(&self, from_env: Option<Secret>) -> Result<Client, Failure> {
        let key = self.api_key(from_env)?;
        let bearer = match key {
            Some(key) => {
                let mut value: MetadataValue<_> = format!("Bearer {}", key.expose())
                    .parse()
                    .map_err(|_| Failure::Usage("the API key holds characters a header cannot carry".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let channel = self.channel().await?;
        Ok(InterceptedService::new(channel, Bearer(bearer)))
    }

    /// A channel without a key: what health checks use.
    pub async fn channel(&self) -> Result<Channel, Failure> {
        let tls = self.tls || self.addr.starts_with("https://") || self.ca_cert.is_some() || self.client_cert.is_some();
        let authority = self.addr.trim_start_matches("http://").trim_start_matches("https://");
        let scheme = if tls { "https" } else { "http" };
        let uri = format!("{scheme}://{authority}");
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|_| Failure::Usage(format!("--addr {}: not HOST:PORT or a URL", self.addr)))?
            .connect_timeout(self.timeout);
        if tls {
            endpoint = endpoint
                .tls_config(self.tls_config()?)
                .map_err(|err| Failure::Usage(format!("TLS options: {}", error_chain(&err))))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|err| Failure::Connect { address: self.addr.clone(), cause: error_chain(&err) })
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, Failure> {
        let Some(ca) = &self.ca_cert else {
            return Err(Failure::Usage("TLS needs --ca-cert, the CA the server's certificate chains to".into()));
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca-cert")?));
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            config = config.identity(Identity::from_pem(read(cert, "--client-cert")?, read(key, "--client-key")?));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }

    fn api_key(&self, from_env: Option<Secret>) -> Result<Option<Secret>, Failure> {
        match (&self.api_key_file, from_env) {
            (Some(_), Some(_)) => Err(Failure::Usage(format!(
                "the API key is given twice: by --api-key-file (SESSIOND_CLI_API_KEY_FILE) and by {API_KEY_VARIABLE}"
            ))),
            (Some(path), None) => {
                let text = String::from_utf8(read(path, "--api-key-file")?)
                    .map_err(|_| Failure::Other(format!("--api-key-file {}: not UTF-8", path.display())))?;
                let key = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                if key.trim().is_empty() {
                    return Err(Failure::Other(format!("--api-key-file {}: empty", path.display())));
                }
                Ok(Some(key.parse().unwrap_or_else(|never| match never {})))
            }
            (None, from_env) => Ok(from_env.filter(|key| !key.expose().is_empty())),
        }
    }
}

fn read(path: &std::path::Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|err| Failure::Other(format!("{flag} {}: {err}", path.display())))
}
