//! Log capture for tests that read what sessiond logs: [`Logs`] is a
//! `tracing_subscriber` writer keeping every byte written.
//!
//! Include it with `#[path = "support/logs.rs"] mod logs_support;`.

// Each test binary uses its own part of this support.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber wrote, shared by every writer it makes.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        self.text_after(0)
    }

    /// What was written after the first `from` bytes.
    pub fn text_after(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("no test panics holding the lock")[from..]).into_owned()
    }

    /// How many bytes were written so far.
    pub fn len(&self) -> usize {
        self.0.lock().expect("no test panics holding the lock").len()
    }
}

impl<'w> MakeWriter<'w> for Logs {
    type Writer = Logs;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("no test panics holding the lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
