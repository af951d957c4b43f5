//! What a run found, as text: a plain table for the terminal or Markdown
//! tables for BENCHMARKS.md. One row per load scenario, then the memory and
//! cold-start figures, then the errors seen.

use std::fmt::Write as _;
use std::time::Duration;

use crate::baseline::{Baseline, Ratio};
use crate::cli::Plan;
use crate::stats::Summary;

/// One scenario's result.
#[derive(Debug, Clone)]
pub enum Measurement {
    Load(Box<LoadReport>),
    Memory(MemoryReport),
    ColdStart(ColdStartReport),
    Revocation(RevocationReport),
    FanOut(FanOutReport),
}

impl From<LoadReport> for Measurement {
    fn from(report: LoadReport) -> Self {
        Measurement::Load(Box::new(report))
    }
}

/// A load scenario's figures.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub scenario: &'static str,
    pub summary: Summary,
    /// The server's RSS at the end of the measured window.
    pub server_rss: u64,
    /// Cores the server kept busy on average in the measured window.
    pub server_cpu: f64,
    /// Cores this loader kept busy on average in the measured window.
    pub loader_cpu: f64,
    /// Cores the run's Postgres kept busy, when it runs on this machine.
    pub database_cpu: Option<f64>,
    /// What `summary.units` counts, when it is not calls ("entries").
    pub unit: Option<&'static str>,
    pub ratios: Vec<Ratio>,
    /// Further figures, e.g. the abort rate.
    pub notes: Vec<String>,
    /// Why a correctness check failed, if one did.
    pub mismatch: Option<String>,
}

impl LoadReport {
    pub fn new(scenario: &'static str, summary: Summary, server_rss: u64) -> Self {
        Self {
            scenario,
            summary,
            server_rss,
            server_cpu: 0.0,
            loader_cpu: 0.0,
            database_cpu: None,
            unit: None,
            ratios: Vec::new(),
            notes: Vec::new(),
            mismatch: None,
        }
    }

    /// Server CPU time per call: what a call costs sessiond when the CPUs,
    /// not sessiond, bound the calls per second.
    fn server_cpu_per_call(&self) -> Duration {
        self.per_call(self.server_cpu)
    }

    /// CPU time per call of every process measured (server, loader and
    /// Postgres): when they share the machine's cores, those cores divided
    /// by this is the most calls/s the machine can give.
    fn all_cpu_per_call(&self) -> Duration {
        self.per_call(self.server_cpu + self.loader_cpu + self.database_cpu.unwrap_or(0.0))
    }

    fn per_call(&self, cores: f64) -> Duration {
        if self.summary.calls_per_sec > 0.0 {
            Duration::from_secs_f64(cores / self.summary.calls_per_sec)
        } else {
            Duration::ZERO
        }
    }

    /// The "work" cell: units per second and notes.
    fn work(&self) -> String {
        let mut parts = Vec::new();
        if let Some(unit) = self.unit {
            parts.push(format!("{} {unit}/s", thousands(self.summary.units_per_sec)));
        }
        parts.extend(self.notes.iter().cloned());
        if let Some(why) = &self.mismatch {
            parts.push(format!("MISMATCH: {why}"));
        }
        parts.join(", ")
    }
}

/// The memory scenario's figures.
#[derive(Debug, Clone)]
pub struct MemoryReport {
    pub sessions: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    pub created_per_sec: f64,
}

impl MemoryReport {
    pub fn bytes_per_session(&self) -> i64 {
        (self.rss_after as i64 - self.rss_before as i64) / self.sessions as i64
    }
}

/// The revocation scenario's figures: one sample per revoked session.
#[derive(Debug, Clone)]
pub struct RevocationReport {
    pub samples: Vec<Duration>,
    /// Why the scenario did not run, when it did not.
    pub skipped: Option<String>,
}

impl RevocationReport {
    /// `(p50, p99, max)` of the samples.
    pub fn percentiles(&self) -> (Duration, Duration, Duration) {
        let mut nanos: Vec<u64> = self.samples.iter().map(|d| d.as_nanos() as u64).collect();
        nanos.sort_unstable();
        let max = nanos.last().map_or(Duration::ZERO, |n| Duration::from_nanos(*n));
        (crate::stats::percentile(&nanos, 0.5), crate::stats::percentile(&nanos, 0.99), max)
    }

    fn line(&self) -> String {
        match &self.skipped {
            Some(why) => format!("revocation: skipped ({why})"),
            None => {
                let (p50, p99, max) = self.percentiles();
                format!(
                    "revocation to another replica refusing: p50 {}, p99 {}, max {} over {} sessions",
                    latency(p50),
                    latency(p99),
                    latency(max),
                    self.samples.len()
                )
            }
        }
    }
}

/// The fan-out scenario's figures: one row per system measured.
#[derive(Debug, Clone)]
pub struct FanOutReport {
    pub rows: Vec<FanOutRow>,
    /// The resume-after-restart check's verdict.
    pub resume: Option<String>,
    /// What was not measured, and why.
    pub skipped: Option<String>,
}

/// One publisher's messages to 100 subscribers through one system.
#[derive(Debug, Clone)]
pub struct FanOutRow {
    pub name: String,
    pub messages: usize,
    pub deliveries: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub deliveries_per_sec: f64,
    pub posts_per_sec: f64,
    /// CPU time of the system's server processes (the sessiond replicas,
    /// or redis-server) from the first post to the last delivery, over the
    /// deliveries.
    pub server_cpu_per_delivery: Duration,
    /// This loader's CPU time (publisher and subscribers) over the same
    /// window, over the deliveries.
    pub loader_cpu_per_delivery: Duration,
}

impl FanOutReport {
    fn render(&self, markdown: bool) -> String {
        let headers = [
            "fan-out, 100 subscribers",
            "messages",
            "deliveries",
            "p50",
            "p99",
            "max",
            "deliveries/s",
            "posts/s",
            "server CPU/delivery",
            "loader CPU/delivery",
        ]
        .map(String::from);
        let rows = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    thousands(r.messages as f64),
                    thousands(r.deliveries as f64),
                    latency(r.p50),
                    latency(r.p99),
                    latency(r.max),
                    thousands(r.deliveries_per_sec),
                    thousands(r.posts_per_sec),
                    cpu_time(r.server_cpu_per_delivery),
                    cpu_time(r.loader_cpu_per_delivery),
                ]
            })
            .collect();
        let mut out = if self.rows.is_empty() { String::new() } else { table(&headers, rows, markdown) };
        for note in self.resume.iter().chain(&self.skipped) {
            out.push_str(&format!("fan-out: {note}\n"));
        }
        out
    }
}

/// The cold-start scenario's figures.
#[derive(Debug, Clone)]
pub struct ColdStartReport {
    pub runs: Vec<Duration>,
    pub median: Duration,
    /// RSS of the last start, once serving.
    pub rss_serving: u64,
}

const LOAD_HEADERS: [&str; 10] = [
    "scenario",
    "calls/s",
    "p50",
    "p99",
    "p99.9",
    "errors",
    "server RSS",
    "server CPU",
    "server CPU/call",
    "loader CPU",
];

/// Shown when some scenario's Postgres ran on this machine.
const DATABASE_HEADER: &str = "Postgres CPU";

const ALL_CPU_HEADER: &str = "all CPU/call";

fn load_table(measurements: &[Measurement], markdown: bool) -> Option<String> {
    let loads: Vec<&LoadReport> = measurements
        .iter()
        .filter_map(|m| match m {
            Measurement::Load(report) => Some(&**report),
            _ => None,
        })
        .collect();
    if loads.is_empty() {
        return None;
    }
    let baselines: Vec<Baseline> =
        Baseline::ALL.into_iter().filter(|b| loads.iter().any(|r| r.ratios.iter().any(|x| x.baseline == *b))).collect();
    let with_database = loads.iter().any(|r| r.database_cpu.is_some());
    let mut headers: Vec<String> = LOAD_HEADERS.iter().map(|h| h.to_string()).collect();
    if with_database {
        headers.push(DATABASE_HEADER.into());
    }
    headers.push(ALL_CPU_HEADER.into());
    for baseline in &baselines {
        headers.push(format!("calls/s vs {}", baseline.name()));
        headers.push(format!("p99 vs {}", baseline.name()));
    }
    headers.push("work".into());
    let rows = loads
        .iter()
        .map(|r| {
            let s = &r.summary;
            let mut row = vec![
                r.scenario.to_string(),
                thousands(s.calls_per_sec),
                latency(s.p50),
                latency(s.p99),
                latency(s.p999),
                s.errors.to_string(),
                bytes(r.server_rss as f64),
                percent(r.server_cpu),
                latency(r.server_cpu_per_call()),
                percent(r.loader_cpu),
            ];
            if with_database {
                row.push(r.database_cpu.map_or_else(|| "–".to_string(), percent));
            }
            row.push(latency(r.all_cpu_per_call()));
            for baseline in &baselines {
                match r.ratios.iter().find(|x| x.baseline == *baseline) {
                    Some(ratio) => row.extend([format!("{:.2}×", ratio.calls_per_sec), format!("{:.2}×", ratio.p99)]),
                    None => row.extend(["–".to_string(), "–".to_string()]),
                }
            }
            row.push(r.work());
            row
        })
        .collect();
    Some(table(&headers, rows, markdown))
}

/// The report as plain text for a terminal.
pub fn plain(plan: &Plan, measurements: &[Measurement]) -> String {
    let mut out = format!("\nsessiond-bench, {}\n\n", describe_plan(plan));
    if let Some(table) = load_table(measurements, false) {
        out.push_str(&table);
        out.push('\n');
    }
    for m in measurements {
        match m {
            Measurement::Memory(r) => {
                let _ = writeln!(
                    out,
                    "memory: {} sessions cached: server RSS {} before, {} after: {} bytes per session (created at {}/s)",
                    thousands(r.sessions as f64),
                    bytes(r.rss_before as f64),
                    bytes(r.rss_after as f64),
                    thousands(r.bytes_per_session() as f64),
                    thousands(r.created_per_sec),
                );
            }
            Measurement::ColdStart(r) => {
                let _ = writeln!(
                    out,
                    "cold-start: median {} over {} starts (min {}, max {}); server RSS once serving {}",
                    latency(r.median),
                    r.runs.len(),
                    latency(r.runs.iter().min().copied().unwrap_or_default()),
                    latency(r.runs.iter().max().copied().unwrap_or_default()),
                    bytes(r.rss_serving as f64),
                );
            }
            Measurement::Revocation(r) => {
                let _ = writeln!(out, "{}", r.line());
            }
            Measurement::FanOut(r) => out.push_str(&r.render(false)),
            Measurement::Load(_) => {}
        }
    }
    out.push_str(&error_lines(measurements));
    out
}

/// The report as Markdown tables.
pub fn markdown(plan: &Plan, measurements: &[Measurement]) -> String {
    let mut out = format!("Settings: {}.\n\n", describe_plan(plan));
    if let Some(table) = load_table(measurements, true) {
        out.push_str(&table);
        out.push('\n');
    }
    let memory: Vec<Vec<String>> = measurements
        .iter()
        .filter_map(|m| match m {
            Measurement::Memory(r) => Some(vec![
                thousands(r.sessions as f64),
                bytes(r.rss_before as f64),
                bytes(r.rss_after as f64),
                thousands(r.bytes_per_session() as f64),
                thousands(r.created_per_sec),
            ]),
            _ => None,
        })
        .collect();
    if !memory.is_empty() {
        let headers =
            ["sessions cached", "RSS before", "RSS after", "bytes per session", "created/s"].map(String::from);
        out.push_str(&table(&headers, memory, true));
        out.push('\n');
    }
    let starts: Vec<Vec<String>> = measurements
        .iter()
        .filter_map(|m| match m {
            Measurement::ColdStart(r) => Some(vec![
                r.runs.len().to_string(),
                latency(r.median),
                latency(r.runs.iter().min().copied().unwrap_or_default()),
                latency(r.runs.iter().max().copied().unwrap_or_default()),
                bytes(r.rss_serving as f64),
            ]),
            _ => None,
        })
        .collect();
    if !starts.is_empty() {
        let headers = ["cold starts", "median to SERVING", "min", "max", "RSS once serving"].map(String::from);
        out.push_str(&table(&headers, starts, true));
        out.push('\n');
    }
    for m in measurements {
        if let Measurement::Revocation(r) = m {
            out.push_str(&r.line());
            out.push_str("\n\n");
        }
        if let Measurement::FanOut(r) = m {
            out.push_str(&r.render(true));
            out.push('\n');
        }
    }
    out.push_str(&error_lines(measurements));
    out
}

fn describe_plan(plan: &Plan) -> String {
    format!(
        "{} run: {} callers over {} HTTP/2 connections, {} warm-up and {} measured per scenario",
        if plan.quick { "quick" } else { "full" },
        plan.concurrency,
        plan.connections,
        humantime::format_duration(plan.warmup),
        humantime::format_duration(plan.measure),
    )
}

/// A line per scenario that saw errors, with the first one's text.
fn error_lines(measurements: &[Measurement]) -> String {
    let mut out = String::new();
    for m in measurements {
        if let Measurement::Load(r) = m {
            if let Some(first) = r.summary.first_error.as_ref().filter(|_| r.summary.errors > 0) {
                let _ = writeln!(
                    out,
                    "\n{}: {} errors ({} calls succeeded); the first: {first}",
                    r.scenario, r.summary.errors, r.summary.calls
                );
            }
            if let Some(why) = &r.mismatch {
                let _ = writeln!(out, "\n*** MISMATCH in {}: {why} ***", r.scenario);
            }
        }
    }
    out
}

/// Columns padded to their widest cell (plain), or a Markdown table. The
/// first column (names) and a last "work" column (prose) are left-aligned,
/// the figures between right-aligned.
pub(crate) fn table(headers: &[String], rows: Vec<Vec<String>>, markdown: bool) -> String {
    let left = |i: usize| i == 0 || headers[i] == "work";
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let rule: Vec<&str> = (0..headers.len()).map(|i| if left(i) { "---" } else { "--:" }).collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for row in rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        return out;
    }
    let width =
        |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].chars().count()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    for row in std::iter::once(headers.to_vec()).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(
                |(i, cell)| {
                    if left(i) { format!("{cell:<w$}", w = widths[i]) } else { format!("{cell:>w$}", w = widths[i]) }
                },
            )
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `12345.6` as `12,346`.
pub(crate) fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

/// A latency with three significant digits or so: `412 µs`, `1.25 ms`.
pub(crate) fn latency(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    match micros {
        m if m < 1_000.0 => format!("{m:.0} µs"),
        m if m < 10_000.0 => format!("{:.2} ms", m / 1e3),
        m if m < 100_000.0 => format!("{:.1} ms", m / 1e3),
        m => format!("{:.0} ms", m / 1e3),
    }
}

/// A short CPU time with a decimal below 100 µs: `3.4 µs`, `412 µs`.
fn cpu_time(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 100.0 { format!("{micros:.1} µs") } else { latency(d) }
}

/// Cores busy as a percentage of one core, as `top` shows it: `135%`.
fn percent(cores: f64) -> String {
    format!("{:.0}%", cores * 100.0)
}

/// A size in MiB.
fn bytes(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1500.0), "-1,500");
        assert_eq!(latency(Duration::from_micros(412)), "412 µs");
        assert_eq!(latency(Duration::from_micros(1250)), "1.25 ms");
        assert_eq!(latency(Duration::from_millis(150)), "150 ms");
        assert_eq!(cpu_time(Duration::from_nanos(3_420)), "3.4 µs");
        assert_eq!(cpu_time(Duration::from_micros(412)), "412 µs");
    }

    #[test]
    fn markdown_tables_right_align_figures() {
        let text = table(&["a".into(), "b".into()], vec![vec!["x".into(), "1".into()]], true);
        assert_eq!(text, "| a | b |\n|---|--:|\n| x | 1 |\n");
    }
}
