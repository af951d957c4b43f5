//! Integration tests: each starts the real server on port 0 with its own
//! data directory and a manual clock, and speaks to it through the
//! generated clients.

mod helpers;
