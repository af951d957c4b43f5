//! Secrets that rotate without a restart: the API keys file and the TLS
//! certificate, key and client CA are reloaded on SIGHUP and when their
//! content changes on disk (checked every `--reload-interval`).
//!
//! Files are read through symlinks and compared by modification time and
//! content hash: Kubernetes updates a mounted Secret by swapping a symlink,
//! which can leave the time of the path as it was. A new file that does not
//! load is refused with a logged error and the previous one stays in force.
//! Connections already open are unaffected; new TLS handshakes use the
//! configuration in force when they begin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use crate::auth::ApiKeys;
use crate::grpc::authn::SharedCallers;
use crate::settings::Settings;

/// A value read by every call or handshake and replaced by a reload.
///
/// Read without writing to memory other threads read: a lock, or a
/// reference count of the value, would be written by every call on every
/// core, and each such write takes the cache line away from the others.
#[derive(Debug)]
pub struct Shared<T>(Arc<ArcSwap<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The value in force now, held for a moment (a call's admission, a
    /// handshake's start).
    pub fn current(&self) -> arc_swap::Guard<Arc<T>> {
        self.0.load()
    }

    fn replace(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

/// The TLS configuration new handshakes use.
pub type SharedTls = Shared<ServerConfig>;

/// The server's TLS configuration from the certificate, key and client CA
/// files the settings name, when TLS is configured. A key that does not
/// match the certificate, or a file without a PEM certificate or key, is
/// an error naming the file (never its content).
pub fn load_tls(settings: &Settings) -> anyhow::Result<Option<ServerConfig>> {
    let (Some(cert_path), Some(key_path)) = (&settings.auth.tls_cert, &settings.auth.tls_key) else { return Ok(None) };
    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let certs = certificates(&read(cert_path)?).with_context(|| format!("TLS certificate {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .map_err(|_| anyhow::anyhow!("TLS key {}: no PEM private key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.auth.tls_client_ca {
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(&read(ca_path)?).with_context(|| format!("TLS client CA {}", ca_path.display()))? {
                roots.add(ca).with_context(|| format!("TLS client CA {}", ca_path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // Optional when there are API keys: callers with a key need no
            // certificate. Without keys the certificate is the only
            // authentication, so it is required.
            let verifier =
                if settings.auth.api_keys_file.is_some() { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(
                verifier.build().with_context(|| format!("TLS client CA {}", ca_path.display()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| anyhow::anyhow!("TLS key {}: not a supported private key", key_path.display()))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| {
        anyhow::anyhow!("TLS key {} does not match the certificate {}", key_path.display(), cert_path.display())
    })?;
    let not_after = certified.end_entity_cert().ok().and_then(|leaf| {
        x509_parser::parse_x509_certificate(leaf).ok().map(|(_, cert)| cert.validity().not_after.timestamp())
    });
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    // HTTP/2 first (gRPC); HTTP/1.1 for gRPC-Web and Connect clients that
    // offer nothing else.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(not_after) = not_after {
        crate::telemetry::metrics::certificate_loaded(not_after);
    }
    Ok(Some(config))
}

fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow::anyhow!("not a PEM certificate"))?;
    if certs.is_empty() {
        bail!("no PEM certificate");
    }
    // Parsed here so that a malformed certificate is refused at load, not
    // at the first handshake.
    for cert in &certs {
        webpki::EndEntityCert::try_from(cert).map_err(|_| anyhow::anyhow!("a malformed certificate"))?;
    }
    Ok(certs)
}

/// What a set of files held when last looked at: modification time and
/// content hash of each, through symlinks (`None`: unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<(Option<SystemTime>, [u8; 32])>>);

impl Fingerprint {
    fn of(paths: &[PathBuf]) -> Self {
        Self(
            paths
                .iter()
                .map(|path| {
                    let content = std::fs::read(path).ok()?;
                    let modified = std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
                    Some((modified, Sha256::digest(&content).into()))
                })
                .collect(),
        )
    }
}

/// One reloadable secret: its files, what they held at the last load, and
/// how to load them again.
struct Watched {
    what: &'static str,
    paths: Vec<PathBuf>,
    seen: Fingerprint,
    load: Box<dyn Fn() -> anyhow::Result<()> + Send>,
}

impl Watched {
    fn reload(&mut self) {
        self.seen = Fingerprint::of(&self.paths);
        match (self.load)() {
            Ok(()) => tracing::info!(what = self.what, "reloaded"),
            Err(err) => {
                tracing::error!(
                    what = self.what,
                    error = format!("{err:#}"),
                    "reload refused; keeping the previous one"
                )
            }
        }
    }
}

/// Reloads the keys file and the TLS files on SIGHUP and when they change
/// on disk, until aborted.
pub async fn run(settings: Settings, callers: SharedCallers, tls: Option<SharedTls>) {
    let mut watched = Vec::new();
    if let Some(path) = settings.auth.api_keys_file.clone() {
        let paths = vec![path.clone()];
        watched.push(Watched {
            what: "API keys file",
            seen: Fingerprint::of(&paths),
            paths,
            load: Box::new(move || {
                let loaded =
                    ApiKeys::load(&path).with_context(|| format!("loading API keys file {}", path.display()))?;
                // Only this task replaces the callers: reading then
                // replacing loses nothing.
                callers.replace(callers.current().reloaded(loaded));
                Ok(())
            }),
        });
    }
    if let Some(tls) = tls {
        let paths: Vec<PathBuf> = [&settings.auth.tls_cert, &settings.auth.tls_key, &settings.auth.tls_client_ca]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let settings = settings.clone();
        watched.push(Watched {
            what: "TLS certificate",
            seen: Fingerprint::of(&paths),
            paths,
            load: Box::new(move || {
                // Configured TLS stays configured: `load_tls` gives `Some`.
                if let Some(config) = load_tls(&settings)? {
                    tls.replace(config);
                }
                Ok(())
            }),
        });
    }
    if watched.is_empty() {
        return;
    }
    let mut hangups = hangups();
    let interval = settings.auth.reload_interval;
    // With polling off the ticks are never awaited; any period will do.
    let mut poll = tokio::time::interval(if interval.is_zero() { Duration::from_secs(3600) } else { interval });
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        tokio::select! {
            () = next_hangup(&mut hangups) => watched.iter_mut().for_each(Watched::reload),
            _ = poll.tick(), if !interval.is_zero() => {
                for secret in &mut watched {
                    if Fingerprint::of(&secret.paths) != secret.seen {
                        secret.reload();
                    }
                }
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let hangups = signal(SignalKind::hangup()).ok();
        if hangups.is_none() {
            tracing::warn!("cannot listen for SIGHUP; secrets reload only when their files change");
        }
        hangups
    }
}

async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(hangups) = hangups
        && hangups.recv().await.is_some()
    {
        return;
    }
    let _ = hangups;
    std::future::pending().await
}
