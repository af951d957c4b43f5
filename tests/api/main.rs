//! Integration tests: each starts the real server on port 0 with its own
//! data directory and a manual clock, and speaks to it through the
//! generated clients.

#[path = "../support/fixtures.rs"]
mod fixtures;
#[path = "../support/postgres.rs"]
mod postgres_support;

mod auth;
mod authenticate;
mod bad_input;
mod cli;
mod helpers;

mod close;
mod events;
mod expiry;
mod fairness;
mod full_disk;
mod lifecycle;
mod live_logs;
mod logs;
mod messages;
mod privileges;
mod probe;
mod quotas;
mod reload;
mod restart;
mod retries;
mod server;
mod shutdown;
mod storage;
mod tls;
mod transport;
mod users;
mod web;
