//! [`Application`]: builds sessiond from its settings, binds the listener
//! (port 0 in tests), and serves until told to stop. `main` and the
//! integration tests both go through here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::{Clock, SystemClock};
use crate::grpc::authn::{Callers, SharedCallers};
use crate::grpc::{self, FILE_DESCRIPTOR_SET, SERVICE_NAMES};
use crate::reload::SharedTls;
use crate::service::Service;
use crate::service::messages::Messages;
use crate::settings::Settings;
use crate::store::Stores;
use crate::store::messages::MessageLog;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::telemetry;

/// tokio's multi-threaded runtime as `#[tokio::main]` makes it, but built
/// with `--cfg tokio_unstable` (`.cargo/config.toml`) without the LIFO
/// slot: with it, the task a stream's answer wakes (its connection's) runs
/// before the other streams woken with it, and each answer leaves in a
/// write of its own (BENCHMARKS.md, "The LIFO slot"). `main` runs on it,
/// and so does the benchmark, baselines included.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

/// A built, bound, not yet serving sessiond.
pub struct Application {
    listener: TcpListener,
    /// Where Prometheus scrapes `/metrics`, when asked for.
    metrics_listener: Option<TcpListener>,
    /// Where the web console is served, when asked for.
    console_listener: Option<TcpListener>,
    service: Service,
    /// Channel messages, over the same store.
    messages: Messages,
    /// Who may call (no keys: the server runs open) and how much.
    callers: SharedCallers,
    /// The TLS configuration new connections use; `None`: plaintext.
    tls: Option<SharedTls>,
    settings: Settings,
}

impl Application {
    /// Builds with the wall clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Opens the store, loads the roles file (failing closed), ends the
    /// request-scoped sessions a crash left open, and binds the listener.
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let config = settings.service_config()?;
        let message_config = settings.message_config()?;
        let roles = settings.load_roles()?;
        let keys = settings.load_api_keys()?;
        settings.check_authentication(keys.as_ref())?;
        let callers = SharedCallers::new(Callers::new(keys, settings.fairness_limits()));
        let tls = crate::reload::load_tls(&settings)?.map(SharedTls::new);
        let (store, message_log): (_, Arc<dyn MessageLog>) = match settings.postgres() {
            Some(postgres) => {
                let store = PgStore::connect(postgres).await.context("connecting to Postgres")?;
                tracing::info!("storing in Postgres");
                let messages = Arc::new(store.messages());
                (Stores::of(store).metered("postgresql").cached(settings.store.cache_capacity), messages)
            }
            None => {
                std::fs::create_dir_all(&settings.store.data_dir)
                    .with_context(|| format!("creating data directory {}", settings.store.data_dir.display()))?;
                let store = SqliteStore::open(&settings.store.data_dir.join("sessiond.db"))
                    .with_context(|| format!("opening the store in {}", settings.store.data_dir.display()))?
                    .with_max_log_entries(settings.session_logs.max_entries_per_session)
                    .with_max_open_sessions_per_tenant(settings.limits.max_open_sessions_per_tenant)
                    .with_max_log_entries_per_tenant(settings.limits.max_log_entries_per_tenant);
                tracing::info!(data_dir = %settings.store.data_dir.display(), "storing in the embedded store");
                let messages = Arc::new(store.messages().context("opening the message log")?);
                (Stores::of(store).metered("sqlite").cached(settings.store.cache_capacity), messages)
            }
        };
        let service = Service::new(store, clock, roles, config);
        let messages = Messages::new(service.clone(), message_log, message_config);
        service.recover_after_crash().await.context("ending sessions left open by an unclean stop")?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let metrics_listener = match settings.telemetry.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address).await.with_context(|| format!("binding the metrics address {address}"))?,
            ),
            None => None,
        };
        let console_listener = match settings.server.console_listen {
            Some(address) => {
                settings.check_console(callers.current().keys().is_some())?;
                Some(
                    TcpListener::bind(address)
                        .await
                        .with_context(|| format!("binding the console address {address}"))?,
                )
            }
            None => None,
        };
        Ok(Self { listener, metrics_listener, console_listener, service, messages, callers, tls, settings })
    }

    /// Where the server listens (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where Prometheus metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// Where the web console is served, when it is.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// The domain service, for tests that drive the sweeper themselves.
    pub fn service(&self) -> Service {
        self.service.clone()
    }

    /// Serves until `shutdown` completes, then stops gracefully: health
    /// says NOT_SERVING, watch streams end, in-flight calls finish, and
    /// request-scoped sessions end with reason SERVER_SHUTDOWN.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, metrics_listener, console_listener, service, messages, callers, tls, settings } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;

        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection().build_v1alpha().context("building reflection v1alpha")?;

        // Health follows the store: NOT_SERVING while it cannot commit.
        let store_health =
            service.store_availability().map(|available| tokio::spawn(follow_store(available, health.clone())));
        let sweeper = tokio::spawn(service.clone().run_sweeper(settings.store.sweep_interval));
        let activity_writer = tokio::spawn(service.clone().run_activity_writer());
        let reloader = tokio::spawn(reload_roles_on_sighup(service.clone(), settings.clone()));
        let secrets = tokio::spawn(crate::reload::run(settings.clone(), callers.clone(), tls.clone()));
        let feed = tokio::spawn(service.clone().run_event_feed());
        let message_feed = tokio::spawn(messages.clone().run());
        // If this future is dropped (the process is going down hard), the
        // background tasks go with it.
        let _background = [
            AbortOnDrop(sweeper.abort_handle()),
            AbortOnDrop(reloader.abort_handle()),
            AbortOnDrop(secrets.abort_handle()),
            AbortOnDrop(feed.abort_handle()),
            AbortOnDrop(message_feed.abort_handle()),
            AbortOnDrop(activity_writer.abort_handle()),
        ];
        // Metrics stay scrapeable until sessiond has stopped.
        let _metrics = metrics_listener
            .map(|listener| AbortOnDrop(tokio::spawn(telemetry::prometheus::serve(listener)).abort_handle()));
        // The console stops with the gRPC server (its event streams end at
        // `begin_shutdown`).
        let _console = console_listener.map(|listener| {
            let state = crate::console::ConsoleState::new(service.clone(), callers.clone(), tls.is_some());
            AbortOnDrop(tokio::spawn(crate::console::serve(listener, state, tls.clone())).abort_handle())
        });

        let (began, stop_began) = tokio::sync::oneshot::channel::<()>();
        let stopping = {
            let service = service.clone();
            let health = health.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down");
                // From here on health says NOT_SERVING, whatever the store
                // does. (Dropped with the server, the task ends with the
                // store.)
                if let Some(task) = store_health {
                    task.abort();
                    let _ = task.await;
                }
                set_health(&health, ServingStatus::NotServing).await;
                service.begin_shutdown();
                let _ = began.send(());
            }
        };
        // In-flight calls get `drain_timeout` to finish once stopping began.
        let drain_timeout = settings.server.drain_timeout;
        let drained = async move {
            match stop_began.await {
                Ok(()) => tokio::time::sleep(drain_timeout).await,
                Err(_) => std::future::pending().await,
            }
        };

        tracing::info!(address = %listener.local_addr()?, "sessiond serving");
        // Deadlines are `grpc::limits`' (tonic's own timeout answers
        // CANCELLED), so the server builder sets none.
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(settings.transport.max_concurrent_streams)
            .http2_keepalive_interval(Some(settings.transport.keepalive_interval))
            .http2_keepalive_timeout(Some(settings.transport.keepalive_timeout))
            .max_connection_age(settings.transport.max_connection_age)
            .max_connection_age_grace(settings.transport.max_connection_age_grace);
        // Every call but health and reflection holds a permit until its
        // answer has been sent, and one of its key's and its tenant's; with
        // none free it is refused at once (load shedding,
        // RESOURCE_EXHAUSTED) rather than queued, and observed all the same.
        // Callers are authenticated, deadlines and request framing checked
        // there too.
        let limits = grpc::limits::LimitLayer::new(
            settings.limits.max_concurrent_calls,
            settings.limits.max_call_duration,
            settings.transport.max_request_bytes,
            callers,
        );
        // HTTP/1.1 is served too: gRPC-Web and Connect (`grpc::web`), in
        // front of everything else so that they meet the same observation,
        // limits and authentication as gRPC.
        let web = grpc::web_layer(
            &settings.server.cors_allowed_origins,
            settings.transport.max_request_bytes,
            settings.limits.max_call_duration,
        );
        let router = server
            .accept_http1(true)
            .layer(web)
            .layer(grpc::observe::RpcLayer::new())
            .layer(limits)
            .layer(grpc::dispatch::SessiondServices::new(&service, &messages, settings.transport.max_request_bytes))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        // TLS is accepted by `connection::tls_incoming`, whose configuration
        // a reload may replace, rather than by tonic's fixed one.
        let handshake_timeout = settings.transport.handshake_timeout;
        let serving = async move {
            match tls {
                Some(tls) => {
                    let incoming = crate::connection::tls_incoming(listener, handshake_timeout, tls);
                    router.serve_with_incoming_shutdown(incoming, stopping).await
                }
                None => {
                    let incoming = crate::connection::incoming(listener, handshake_timeout);
                    router.serve_with_incoming_shutdown(incoming, stopping).await
                }
            }
        };
        tokio::select! {
            served = serving => served.context("serving gRPC")?,
            () = drained => tracing::warn!(timeout = ?drain_timeout, "calls still running after the drain timeout were cut"),
        }

        // The sweeper stops at `begin_shutdown`; a join error means it
        // panicked, which is worth a log line but not a failed exit.
        if let Err(err) = sweeper.await {
            tracing::error!(error = %err, "sweeper task failed");
        }
        if let Err(err) = activity_writer.await {
            tracing::error!(error = %err, "activity writer task failed");
        }
        let flushed = service.flush_activity().await.context("writing activity held in memory")?;
        let ended = service.end_for_shutdown().await.context("ending request-scoped sessions")?;
        tracing::info!(ended = ended.len(), flushed, "stopped");
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reflection over every type a client may meet: sessiond's services, the
/// health and reflection services (both versions, for older clients), and
/// the `google.rpc` error details, so grpcurl can decode them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Reports NOT_SERVING while the store cannot commit and SERVING once it
/// can again, until aborted.
async fn follow_store(mut available: tokio::sync::watch::Receiver<bool>, health: HealthReporter) {
    loop {
        let status = if *available.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
        set_health(&health, status).await;
        if available.changed().await.is_err() {
            return;
        }
    }
}

/// Reloads the roles file on SIGHUP, keeping the old book when the new
/// file is invalid.
async fn reload_roles_on_sighup(service: Service, settings: Settings) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; roles reload disabled");
            return;
        };
        while hangups.recv().await.is_some() {
            match settings.load_roles() {
                Ok(book) => {
                    service.replace_roles(book);
                    tracing::info!("roles file reloaded");
                }
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "roles file rejected; keeping the previous one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (service, settings);
}
