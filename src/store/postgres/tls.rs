//! TLS to Postgres with libpq's semantics, over rustls (ring).
//!
//! The connection string may carry libpq's TLS parameters, in a URL's query
//! (`?sslmode=verify-full&sslrootcert=/ca.pem`) or as `key=value` pairs:
//!
//! - `sslmode`: `disable` (never TLS), `prefer` (the default: TLS when the
//!   server offers it, else plaintext), `require` (TLS or no connection),
//!   `verify-ca` (also: the server's chain leads to `sslrootcert`),
//!   `verify-full` (also: the certificate names the host connected to).
//!   Under `prefer` and `require`, a given `sslrootcert` is checked as
//!   under `verify-ca`, as libpq does; without one nothing is checked.
//! - `sslrootcert`: a PEM file of the CA certificates to trust.
//! - `sslcert`, `sslkey`: a client certificate (PEM, chain allowed) and its
//!   private key, sent when the server asks for one.
//!
//! The driver knows only `disable`, `prefer` and `require` and refuses the
//! other parameters, so [`split`] takes them out of the string and
//! [`TlsOptions::connector`] builds the rustls configuration they ask
//! for. Unlike libpq, no file is read unless the string names it (there is
//! no `~/.postgresql/root.crt`), and the files are read once, at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's identity a connection checks, as libpq's
/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err("sslmode=allow is not supported: use prefer, or disable".to_owned()),
            other => Err(format!("sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full")),
        }
    }

    /// What the driver is told: whether TLS is tried, and whether it is a
    /// must. The checks themselves are the rustls configuration's.
    pub fn driver_mode(self) -> DriverMode {
        match self {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }
}

/// libpq's TLS parameters, as a connection string gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// libpq's TLS parameters that sessiond does not implement: named, rather
/// than left to the driver's "unknown option".
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcertmode",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
];

impl TlsOptions {
    fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "sslmode" => self.mode = SslMode::parse(value)?,
            "sslrootcert" if value == "system" => {
                return Err("sslrootcert=system is not supported: name a PEM file of the CAs to trust".into());
            }
            "sslrootcert" => self.root_cert = Some(value.into()),
            "sslcert" => self.cert = Some(value.into()),
            "sslkey" => self.key = Some(value.into()),
            key if UNSUPPORTED.contains(&key) => return Err(format!("{key} is not supported")),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The rustls configuration these options ask for, its files read and
    /// checked now. Errors name the parameter and file, never a key.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = self.root_cert.as_deref().map(root_store).transpose()?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err("sslmode=verify-ca and verify-full need sslrootcert, the CA to check against".into());
            }
            (SslMode::VerifyFull, Some(roots)) => {
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?
            }
            // libpq: a root certificate makes `prefer` and `require` check
            // the chain too.
            (_, roots) => Arc::new(ChainOnly {
                roots: roots.map(Arc::new),
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificates(cert, "sslcert")?, private_key(key)?)
                .map_err(|e| format!("sslcert and sslkey do not make a client identity: {e}"))?,
            (Some(_), None) => return Err("sslcert needs sslkey, its private key".into()),
            (None, Some(_)) => return Err("sslkey needs sslcert, its certificate".into()),
        };
        // Servers taking TLS directly (`sslnegotiation=direct`) require it;
        // others ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect::new(config))
    }
}

/// Takes libpq's TLS parameters out of a connection string (a URL or
/// `key=value` pairs): what is left is for the driver. The last value of
/// a parameter given twice wins, as in libpq. Errors never quote the
/// string: it may hold a password.
pub fn split(connection: &str) -> Result<(String, TlsOptions), String> {
    let mut options = TlsOptions::default();
    let rest = if connection.starts_with("postgres://") || connection.starts_with("postgresql://") {
        split_url(connection, &mut options)?
    } else {
        split_pairs(connection, &mut options)?
    };
    Ok((rest, options))
}

/// The query of a URL, found where the driver finds it: after the
/// credentials (up to the first `@`), at the first `?`.
fn split_url(url: &str, options: &mut TlsOptions) -> Result<String, String> {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[after_credentials..].find('?').map(|i| after_credentials + i) else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for pair in url[question + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !options.take(&percent_decode(key)?, &percent_decode(value)?)? {
            kept.push(pair);
        }
    }
    let base = &url[..question];
    Ok(if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) })
}

/// `key=value` pairs, quoted and escaped as the driver reads them; the
/// driver's pairs are kept verbatim.
fn split_pairs(pairs: &str, options: &mut TlsOptions) -> Result<String, String> {
    let malformed = || "the Postgres connection string does not parse".to_owned();
    let mut rest = String::with_capacity(pairs.len());
    let mut chars = pairs.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=').ok_or_else(malformed)?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        while let Some(&(_, c)) = chars.peek() {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                closed = true;
                chars.next_if(|_| quoted);
                break;
            }
            chars.next();
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        if !closed || (!quoted && value.is_empty()) {
            return Err(malformed());
        }
        let end = chars.peek().map_or(pairs.len(), |&(i, _)| i);
        if !options.take(&key, &value)? {
            rest.push_str(&pairs[start..end]);
            rest.push(' ');
        }
    }
    Ok(rest.trim_end().to_owned())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut input = s.bytes();
    while let Some(b) = input.next() {
        if b == b'%' {
            let hex = [input.next(), input.next()];
            let digits = hex.iter().flatten().map(|&d| char::from(d).to_digit(16));
            let digits: Option<Vec<u32>> = digits.collect();
            match digits.as_deref() {
                // Two hex digits make a byte: the cast cannot truncate.
                Some([high, low]) => bytes.push((high * 16 + low) as u8),
                _ => return Err("the Postgres connection string has a malformed %-escape".into()),
            }
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).map_err(|_| "the Postgres connection string is not UTF-8 once decoded".into())
}

fn certificates(path: &Path, parameter: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {parameter} {}: {e}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{parameter} {} is not PEM: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{parameter} {} holds no certificate", path.display()));
    }
    Ok(certificates)
}

fn root_store(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, "sslrootcert")? {
        roots.add(certificate).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read sslkey {}: {e}", path.display()))?;
    // The parser's error is not shown: it might quote the file.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("sslkey {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display()))
}

/// The server's certificate chain checked against the roots, its name not
/// (`verify-ca`); with no roots (`prefer` or `require` alone), nothing is
/// checked but that the server holds the key of the certificate it sent.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&certificate, roots, intermediates, now, self.algorithms.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: SslMode) -> TlsOptions {
        TlsOptions { mode, ..TlsOptions::default() }
    }

    #[test]
    fn a_url_loses_the_tls_parameters_and_keeps_the_rest() {
        let (rest, tls) = split(
            "postgres://u:p%3F@db:5432/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca%201.pem\
             &sslcert=/c.pem&sslkey=/k.pem",
        )
        .expect("splits");
        assert_eq!(rest, "postgres://u:p%3F@db:5432/app?application_name=x");
        assert_eq!(
            tls,
            TlsOptions {
                mode: SslMode::VerifyFull,
                root_cert: Some("/etc/ca 1.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/k.pem".into()),
            }
        );
        let (rest, tls) = split("postgresql://db/app?sslmode=require").expect("splits");
        assert_eq!((rest.as_str(), tls), ("postgresql://db/app", options(SslMode::Require)));
        let (rest, tls) = split("postgres://db/app").expect("splits");
        assert_eq!((rest.as_str(), tls), ("postgres://db/app", options(SslMode::Prefer)));
    }

    #[test]
    fn key_value_pairs_lose_the_tls_parameters_quoted_or_not() {
        let (rest, tls) = split(
            "host=db password='it\\'s me' sslmode = verify-ca sslrootcert='/ca dir/ca.pem' dbname=app \
             sslmode=disable",
        )
        .expect("splits");
        assert_eq!(rest, "host=db password='it\\'s me' dbname=app");
        assert_eq!(tls, TlsOptions { mode: SslMode::Disable, root_cert: Some("/ca dir/ca.pem".into()), ..tls.clone() });
        let (rest, tls) = split("host=db sslrootcert=/a\\ b.pem").expect("splits");
        assert_eq!((rest.as_str(), tls.root_cert), ("host=db", Some("/a b.pem".into())));
        assert!(split("host=db sslmode='require").is_err(), "an unterminated quote");
        assert!(split("host=db sslmode").is_err(), "a key without a value");
    }

    #[test]
    fn an_unknown_or_unsupported_parameter_value_is_named() {
        let err = split("postgres://db/app?sslmode=verify_full").expect_err("an unknown sslmode");
        assert!(err.contains("verify_full") && err.contains("verify-full"), "{err}");
        let err = split("host=db sslmode=allow").expect_err("allow is libpq's, not sessiond's");
        assert!(err.contains("allow"), "{err}");
        let err = split("postgres://db/app?sslcrl=/crl.pem").expect_err("unsupported");
        assert!(err.contains("sslcrl"), "{err}");
        let err = split("postgres://db/app?sslrootcert=system").expect_err("no system store");
        assert!(err.contains("sslrootcert=system"), "{err}");
    }

    #[test]
    fn the_driver_is_told_whether_tls_is_a_must() {
        assert_eq!(SslMode::Disable.driver_mode(), DriverMode::Disable);
        assert_eq!(SslMode::Prefer.driver_mode(), DriverMode::Prefer);
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.driver_mode(), DriverMode::Require);
        }
    }

    #[test]
    fn verifying_needs_a_root_certificate_and_a_key_needs_its_certificate() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = options(mode).connector().err().expect("no sslrootcert");
            assert!(err.contains("sslrootcert"), "{err}");
        }
        let err = TlsOptions { cert: Some("/c.pem".into()), ..options(SslMode::Require) }.connector().err();
        assert!(err.expect("no key").contains("sslkey"));
        let missing = TlsOptions { root_cert: Some("/nonexistent/ca.pem".into()), ..options(SslMode::VerifyFull) };
        let err = missing.connector().err().expect("an unreadable file");
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(options(mode).connector().is_ok(), "{mode:?} needs no file");
        }
    }
}
