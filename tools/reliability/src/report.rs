//! Scenario results: named checks with details, request figures by status, rows
//! checked, printed as they finish and as a closing table, and written as JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One check of a scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Answers (or transport failures) counted by kind of request and status.
#[derive(Default, Debug)]
pub struct Tally(Mutex<BTreeMap<String, BTreeMap<String, u64>>>);

impl Tally {
    pub fn add(&self, kind: &str, status: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(kind.to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().flat_map(|m| m.values()).sum()
    }
}

/// A scenario's result.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    pub checks: Vec<Check>,
    pub requests: u64,
    /// kind → status → count.
    pub by_status: BTreeMap<String, BTreeMap<String, u64>>,
    pub rows_checked: u64,
    pub notes: Vec<String>,
    pub seconds: f64,
    #[serde(skip)]
    started: Option<Instant>,
}

impl Outcome {
    pub fn new(name: &str) -> Outcome {
        println!("\n=== scenario {name}");
        Outcome {
            name: name.to_owned(),
            checks: Vec::new(),
            requests: 0,
            by_status: BTreeMap::new(),
            rows_checked: 0,
            notes: Vec::new(),
            seconds: 0.0,
            started: Some(Instant::now()),
        }
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        let c = Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        };
        println!(
            "  [{}] {}{}",
            if c.ok { "ok" } else { "FAIL" },
            c.what,
            if c.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", c.detail)
            }
        );
        self.checks.push(c);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  - {note}");
        self.notes.push(note);
    }

    /// Adds a tally's answers to the figures.
    pub fn absorb(&mut self, tally: &Tally) {
        for (kind, statuses) in tally.snapshot() {
            let entry = self.by_status.entry(kind).or_default();
            for (status, n) in statuses {
                *entry.entry(status).or_default() += n;
                self.requests += n;
            }
        }
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn finish(mut self) -> Outcome {
        self.seconds = self
            .started
            .take()
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(kind, m)| {
                let inner: Vec<String> = m.iter().map(|(s, n)| format!("{s}:{n}")).collect();
                format!("{kind}[{}]", inner.join(" "))
            })
            .collect();
        println!(
            "  => {} in {:.1} s; {} requests {}; {} rows checked",
            if self.passed() { "PASS" } else { "FAIL" },
            self.seconds,
            self.requests,
            statuses.join(" "),
            self.rows_checked
        );
        self
    }
}

/// Prints the closing table and line; true when every scenario passed.
pub fn summary(outcomes: &[Outcome], total: Duration) -> bool {
    println!("\n=== results ({:.0} s)", total.as_secs_f64());
    println!(
        "{:<22} {:<6} {:>9} {:>6} {:>6} {:>9}  non-2xx/4xx answers",
        "scenario", "result", "requests", "5xx", "errors", "rows"
    );
    for o in outcomes {
        let fives: u64 = o
            .by_status
            .values()
            .flat_map(|m| m.iter())
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum();
        let errors: u64 = o
            .by_status
            .values()
            .flat_map(|m| m.iter())
            .filter(|(s, _)| !s.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(|(_, n)| n)
            .sum();
        let odd: Vec<String> = o
            .by_status
            .iter()
            .flat_map(|(kind, m)| {
                m.iter()
                    .filter(|(s, _)| !(s.starts_with('2') || s.starts_with('4')))
                    .map(move |(s, n)| format!("{kind} {s}×{n}"))
            })
            .collect();
        println!(
            "{:<22} {:<6} {:>9} {:>6} {:>6} {:>9}  {}",
            o.name,
            if o.passed() { "pass" } else { "FAIL" },
            o.requests,
            fives,
            errors,
            o.rows_checked,
            odd.join(", ")
        );
        for c in o.checks.iter().filter(|c| !c.ok) {
            println!("    failed: {}: {}", c.what, c.detail);
        }
    }
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let failed = outcomes.len() - passed;
    println!("{passed} passed, {failed} failed");
    failed == 0
}
