//! sessiond: a gRPC session service.
//!
//! Services written in any language delegate session lifecycle, privileges,
//! storage and logging to sessiond. The layers point inward:
//!
//! - [`auth`]: API keys, tenants and roles of callers;
//! - [`grpc`]: tonic services, proto ↔ domain conversions, the one error
//!   mapping to `tonic::Status`;
//! - [`service`]: the domain service — every operation, no proto types —
//!   and its [`service::Error`];
//! - [`domain`]: sessions, kinds, privileges, storage, logs, events,
//!   request faults; it knows no store;
//! - [`store`]: one trait per aggregate ([`store::Stores`]), the embedded
//!   SQLite and the Postgres stores, and the moka cache of session records;
//! - [`probe`]: `sessiond probe`, the health check of a running server;
//! - [`cli`]: the admin CLI, a client of the public API;
//! - [`console`]: the web console for operators, on its own address;
//! - [`startup`]: [`startup::Application`], which wires it all from
//!   [`settings::Settings`]; [`telemetry`] sets up logs, traces and metrics; [`clock`]
//!   injects time; [`connection`] bounds how long a new connection may stay
//!   silent and accepts TLS; [`reload`] reloads the API keys and TLS
//!   files on SIGHUP and when they change.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod connection;
pub mod console;
pub mod domain;
pub mod grpc;
pub mod probe;
pub mod reload;
pub mod secret;
pub mod service;
pub mod settings;
mod shards;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use grpc::pb;
