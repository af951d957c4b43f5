//! Connecting to Postgres, and which pooled connections may still be lent.
//!
//! Every connection sessiond makes (the pool's, the listener's, the
//! prober's, the migration runner's) goes through a [`Connector`]: it tries
//! the connection string's hosts in order (shuffled under
//! `load_balance_hosts=random`), and bounds each host's attempt as a whole
//! — TCP connect, TLS, start-up, authentication and the
//! `target_session_attrs` check — as libpq's `connect_timeout` does. The
//! driver bounds only the TCP connect, so a host whose kernel accepts the
//! connection while its server never answers (its processes stopped) would
//! hold every attempt; bounded, it is passed like a host that refuses.
//!
//! [`Retirement`] drops the pool's connections when the server they reach
//! stops taking writes (it turned read-only, or stopped committing): they
//! are not lent again, so the pool reconnects, to wherever the primary now
//! is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use deadpool_postgres::{HookError, Pool};
use rand::seq::SliceRandom;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, LoadBalanceHosts, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::Level;

use crate::telemetry::throttle::{self, Admitted, Cause};

/// A connection's driving half, as [`Connector::connect`] returns it.
pub(super) type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// What every Postgres connection of sessiond is made with.
#[derive(Clone)]
pub(super) struct Connector {
    /// The whole connection string's configuration, every host included.
    pub(super) config: Config,
    /// The longest one host's attempt may take.
    pub(super) attempt: Duration,
    tls: MakeRustlsConnect,
}

impl Connector {
    /// Connects with `config` over `tls`. Each host's attempt may take the
    /// string's own `connect_timeout` when it has one, else an equal share
    /// of `connect_timeout`, so that every host can be tried within it.
    pub(super) fn new(mut config: Config, connect_timeout: Duration, tls: MakeRustlsConnect) -> Connector {
        let hosts = u32::try_from(host_count(&config)).unwrap_or(u32::MAX).max(1);
        let attempt = config.get_connect_timeout().copied().unwrap_or(connect_timeout / hosts);
        // The driver's own bound, on the TCP connect alone, within it.
        config.connect_timeout(attempt);
        Connector { config, attempt, tls }
    }

    /// Opens one connection (the pool's through [`Pooled`]): to the first
    /// host, in order, whose attempt succeeds within
    /// [`attempt`](Self::attempt).
    pub(super) async fn connect(&self) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
        let mut failure = None;
        for config in self.attempts() {
            match tokio::time::timeout(self.attempt, config.connect(self.tls.clone())).await {
                Ok(Ok(connected)) => return Ok(connected),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(timed_out().await),
            }
        }
        // `attempts` is never empty.
        Err(failure.expect("at least one attempt"))
    }

    /// The same, under another `application_name` suffix, so operators (and
    /// tests) tell its connections from the pool's.
    pub(super) fn named(&self, role: &str) -> Connector {
        let mut named = self.clone();
        let name = format!("{} {role}", self.config.get_application_name().unwrap_or("sessiond"));
        named.config.application_name(&name);
        named
    }

    /// One configuration per host, in the order they are tried. A string
    /// of one host (or none, which the driver refuses) is tried as it is.
    fn attempts(&self) -> Vec<Config> {
        let config = &self.config;
        let count = host_count(config);
        if count <= 1 {
            return vec![config.clone()];
        }
        let (hosts, addrs, ports) = (config.get_hosts(), config.get_hostaddrs(), config.get_ports());
        let mut attempts: Vec<Config> = (0..count)
            .map(|i| {
                let mut one = without_hosts(config);
                match hosts.get(i) {
                    Some(Host::Tcp(host)) => {
                        one.host(host);
                    }
                    Some(Host::Unix(path)) => {
                        one.host_path(path);
                    }
                    None => {}
                }
                if let Some(addr) = addrs.get(i) {
                    one.hostaddr(*addr);
                }
                if let Some(port) = ports.get(i).or_else(|| ports.first()) {
                    one.port(*port);
                }
                one
            })
            .collect();
        if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            attempts.shuffle(&mut rand::rng());
        }
        attempts
    }
}

/// How many hosts the string names (as names, addresses, or both).
fn host_count(config: &Config) -> usize {
    config.get_hosts().len().max(config.get_hostaddrs().len())
}

/// Everything of `config` but its hosts, addresses and ports (the driver
/// has no way to remove them from a copy).
fn without_hosts(config: &Config) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.keepalives(config.get_keepalives()).keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .load_balance_hosts(config.get_load_balance_hosts());
    one
}

/// The error of an attempt that ran out of time. The driver makes its
/// errors itself, so this is its own I/O error: a handshake over a stream
/// that fails at once with `TimedOut`.
async fn timed_out() -> tokio_postgres::Error {
    let mut config = Config::new();
    config.user("sessiond").ssl_mode(SslMode::Disable);
    match config.connect_raw(TimedOut, NoTls).await {
        Err(e) => e,
        // Nothing can be read or written on it: unreachable.
        Ok(_) => unreachable!("a handshake over a stream that fails cannot succeed"),
    }
}

/// A stream every read and write of which times out.
struct TimedOut;

fn no_answer<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no answer within the connect timeout")))
}

impl AsyncRead for TimedOut {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        no_answer()
    }
}

impl AsyncWrite for TimedOut {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        no_answer()
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        no_answer()
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The pool's way of connecting: a [`Connector`]'s.
pub(super) struct Pooled(pub(super) Connector);

type Connecting<'a> = Pin<
    Box<
        dyn Future<Output = Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

impl deadpool_postgres::Connect for Pooled {
    fn connect(&self, _: &Config) -> Connecting<'_> {
        Box::pin(async move {
            let (client, connection) = self.0.connect().await?;
            let driving = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(target: "deadpool.postgres", "Connection error: {}", e);
                }
            });
            Ok((client, driving))
        })
    }
}

/// The line logged when connections are retired.
const RETIRED: &str = "postgres connections made until now are retired";

/// Connections made before this instant are not lent again.
type Cutoff = Arc<Mutex<Option<Instant>>>;

/// Retires the pool's connections at once when the server they reach stops
/// taking writes. Cheap to clone.
#[derive(Clone)]
pub(super) struct Retirement {
    cutoff: Cutoff,
    pool: Pool,
}

impl Retirement {
    /// The check the pool makes before lending a connection again, and the
    /// cutoff it checks against.
    pub(super) fn hook() -> (deadpool_postgres::Hook, Cutoff) {
        let cutoff = Cutoff::default();
        let checked = cutoff.clone();
        let hook = deadpool_postgres::Hook::sync_fn(move |_, metrics| {
            let cutoff = *checked.lock().unwrap_or_else(PoisonError::into_inner);
            match cutoff {
                Some(cutoff) if metrics.created <= cutoff => {
                    Err(HookError::message("made before the server stopped taking writes"))
                }
                _ => Ok(()),
            }
        });
        (hook, cutoff)
    }

    /// Retires the connections of `pool`, built with [`hook`](Self::hook)'s
    /// check against `cutoff`.
    pub(super) fn of(pool: Pool, cutoff: Cutoff) -> Retirement {
        Retirement { cutoff, pool }
    }

    /// No connection made until now is lent again: idle ones are closed now,
    /// those in use when they come back.
    pub(super) fn retire(&self, why: &'static str) {
        let now = Instant::now();
        *self.cutoff.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        let closed = self.pool.retain(|_, metrics| metrics.created > now).removed.len();
        // A server that keeps refusing writes retires them again and again:
        // logged once per interval, with a count.
        if let Some(Admitted { repeated }) = throttle::admit(Cause::new(Level::INFO, RETIRED, why)) {
            tracing::info!(closed, why, repeated, "{RETIRED}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_postgres::Config;
    use tokio_postgres::config::Host;

    use super::Connector;

    fn connector(url: &str, connect_timeout: Duration) -> Connector {
        let config: Config = url.parse().expect("the string parses");
        let tls = crate::store::postgres::tls::split("sslmode=disable").expect("plain").1.connector().expect("plain");
        Connector::new(config, connect_timeout, tls)
    }

    #[test]
    fn each_host_is_tried_alone_with_everything_else_of_the_string() {
        let url = "postgres://sessiond:secret@pg-a:5432,pg-b:5433/sessiond?target_session_attrs=read-write\
                   &application_name=app&options=-c%20x%3D1&keepalives_idle=7&tcp_user_timeout=3\
                   &channel_binding=disable";
        let attempts = connector(url, Duration::from_secs(2)).attempts();
        assert_eq!(attempts.len(), 2);
        for (attempt, (host, port)) in attempts.iter().zip([("pg-a", 5432), ("pg-b", 5433)]) {
            assert_eq!(attempt.get_hosts(), [Host::Tcp(host.into())]);
            assert_eq!(attempt.get_ports(), [port]);
            // Everything else is the whole string's: the single-host string
            // of the same host configures exactly the same.
            let alone = url.replace("pg-a:5432,pg-b:5433", &format!("{host}:{port}"));
            let alone = connector(&alone, Duration::from_secs(1));
            assert_eq!(format!("{attempt:?}"), format!("{:?}", alone.config), "{host}");
        }
    }

    #[test]
    fn each_host_gets_a_share_of_the_connect_timeout_unless_the_string_sets_one() {
        let two = "postgres://sessiond@pg-a,pg-b/sessiond";
        assert_eq!(connector(two, Duration::from_secs(2)).attempt, Duration::from_secs(1));
        let one = "postgres://sessiond@pg-a/sessiond";
        assert_eq!(connector(one, Duration::from_secs(2)).attempt, Duration::from_secs(2));
        let given = "postgres://sessiond@pg-a,pg-b/sessiond?connect_timeout=3";
        assert_eq!(connector(given, Duration::from_secs(2)).attempt, Duration::from_secs(3));
        let pairs = "host=pg-a,pg-b,pg-c user=sessiond connect_timeout=5";
        assert_eq!(connector(pairs, Duration::from_secs(2)).attempt, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_host_that_accepts_and_never_answers_is_passed_within_its_attempt() {
        // A listener that accepts (the kernel does, from its backlog) and
        // never answers: a stopped server.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let silent_port = silent.local_addr().expect("bound").port();
        // A port nothing listens on refuses at once.
        let refusing_port = {
            let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            free.local_addr().expect("bound").port()
        };
        let url = format!("host=127.0.0.1,127.0.0.1 port={silent_port},{refusing_port} user=sessiond sslmode=disable");
        let connector = connector(&url, Duration::from_millis(600));
        let started = std::time::Instant::now();
        let failed = connector.connect().await.err().expect("neither host answers");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "the silent host was waited on for its attempt: {took:?}");
        assert!(took < Duration::from_secs(3), "and no longer: {took:?}");
        // The last host's own failure is the one answered.
        assert!(failed.to_string().contains("error connecting"), "{failed}");
        drop(silent);
    }
}
