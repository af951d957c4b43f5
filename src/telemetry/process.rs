//! Process and runtime metrics, read when collected: the process's CPU
//! time, memory, open files and threads from `/proc/self` (Linux; nothing
//! is reported elsewhere), and the tokio runtime's workers, tasks and
//! queue. Names follow the OpenTelemetry process conventions.
//!
//! | instrument | kind |
//! |---|---|
//! | `process.cpu.time` (s) | async counter, `cpu.mode` (`user`, `system`) |
//! | `process.memory.usage` (By) | async gauge: resident set size |
//! | `process.memory.virtual` (By) | async gauge |
//! | `process.open_file_descriptor.count` | async gauge |
//! | `process.thread.count` | async gauge |
//! | `process.uptime` (s) | async gauge |
//! | `sessiond.runtime.workers` | async gauge: tokio worker threads |
//! | `sessiond.runtime.tasks` | async gauge: tasks alive |
//! | `sessiond.runtime.global_queue_depth` | async gauge: tasks waiting in the shared queue |

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};

/// Clock ticks per second of `/proc/self/stat`'s CPU times: 100 on every
/// Linux architecture sessiond is built for (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process and runtime instruments, kept for their callbacks.
#[derive(Debug)]
pub struct Instruments {
    _cpu: ObservableCounter<f64>,
    _gauges: Vec<ObservableGauge<u64>>,
    _uptime: ObservableGauge<f64>,
}

pub(super) fn instruments(meter: &Meter, runtime: Option<tokio::runtime::Handle>) -> Instruments {
    let started = Instant::now();
    let gauge = |name: &'static str, unit: &'static str, description: &'static str, read: fn() -> Option<u64>| {
        let mut builder = meter.u64_observable_gauge(name).with_description(description);
        if !unit.is_empty() {
            builder = builder.with_unit(unit);
        }
        builder
            .with_callback(move |observer| {
                if let Some(value) = read() {
                    observer.observe(value, &[]);
                }
            })
            .build()
    };
    let mut gauges = vec![
        gauge("process.memory.usage", "By", "Resident set size of the process", || {
            status_kb("VmRSS:").map(|kb| kb * 1024)
        }),
        gauge("process.memory.virtual", "By", "Virtual memory of the process", || {
            status_kb("VmSize:").map(|kb| kb * 1024)
        }),
        gauge("process.open_file_descriptor.count", "", "File descriptors the process holds open", || {
            std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64)
        }),
        gauge("process.thread.count", "", "Threads of the process", || status_kb("Threads:")),
    ];
    if let Some(runtime) = runtime {
        let metrics = runtime.metrics();
        let (workers, tasks, queue) = (metrics.clone(), metrics.clone(), metrics);
        gauges.push(
            meter
                .u64_observable_gauge("sessiond.runtime.workers")
                .with_description("Worker threads of the tokio runtime")
                .with_callback(move |o| o.observe(workers.num_workers() as u64, &[]))
                .build(),
        );
        gauges.push(
            meter
                .u64_observable_gauge("sessiond.runtime.tasks")
                .with_description("Tasks alive in the tokio runtime")
                .with_callback(move |o| o.observe(tasks.num_alive_tasks() as u64, &[]))
                .build(),
        );
        gauges.push(
            meter
                .u64_observable_gauge("sessiond.runtime.global_queue_depth")
                .with_description("Tasks waiting in the tokio runtime's shared queue")
                .with_callback(move |o| o.observe(queue.global_queue_depth() as u64, &[]))
                .build(),
        );
    }
    Instruments {
        _cpu: meter
            .f64_observable_counter("process.cpu.time")
            .with_unit("s")
            .with_description("CPU time the process used, by mode")
            .with_callback(|observer| {
                if let Some((user, system)) = cpu_ticks() {
                    observer.observe(user as f64 / TICKS_PER_SECOND, &[KeyValue::new("cpu.mode", "user")]);
                    observer.observe(system as f64 / TICKS_PER_SECOND, &[KeyValue::new("cpu.mode", "system")]);
                }
            })
            .build(),
        _gauges: gauges,
        _uptime: meter
            .f64_observable_gauge("process.uptime")
            .with_unit("s")
            .with_description("Time since the process installed its metrics")
            .with_callback(move |observer| observer.observe(started.elapsed().as_secs_f64(), &[]))
            .build(),
    }
}

/// A number field of `/proc/self/status` (`VmRSS:  1234 kB`, `Threads: 9`).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// User and system CPU ticks from `/proc/self/stat` (fields 14 and 15,
/// counted after the command name, which may hold spaces).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_its_own_figures_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(status_kb("VmRSS:").is_some_and(|kb| kb > 0));
            assert!(status_kb("Threads:").is_some_and(|n| n >= 1));
            assert!(cpu_ticks().is_some());
        }
    }
}
