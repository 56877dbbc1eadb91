//! Fuzz targets for every decoder of authkeys that reads bytes from outside (issue 11): the NATS
//! payloads of every subject (command requests, view queries, `authkeys.log.read` and
//! `authkeys.log.checkpoints` requests and pages, replies and status answers), the HTTP gateway's
//! bodies, query strings and `Authorization` header, the auth-key and API-token parsers, the
//! validated ids, envelopes and checkpoints.
//!
//! It runs on stable Rust: each [`Target`] pairs a generator (random bytes, mutations, and
//! structure-aware JSON, see [`inputs`]) with a check that feeds the bytes to the real decoder and
//! asserts "no panic" plus cheap invariants that the code promises (a decoded request re-encodes
//! and decodes to the same value, a parsed id spells its input, …). [`run`] drives one target for
//! a number of cases from a seed, catching and counting panics (an invariant that fails is a
//! panic too) and keeping the first inputs that panicked.
//!
//! - `cargo test -p authkeys-fuzz` (part of `make test`) runs every target for
//!   `AUTHKEYS_FUZZ_CASES` cases (default [`SMOKE_CASES`]) and fails on any panic.
//! - `make fuzz` runs the `authkeys-fuzz` binary in release with 1,000,000 cases per target and
//!   prints, per target, the cases run, the panics found and the time taken.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A field generator that leaves the field out ("") some of the time.
macro_rules! optional {
    ($f:expr) => {
        |g: &mut $crate::inputs::Gen| -> String {
            if g.chance(35) {
                String::new()
            } else {
                let f: $crate::inputs::Field = $f;
                f(g)
            }
        }
    };
}

pub mod inputs;
pub mod targets;

pub use inputs::Gen;
pub use targets::all;

/// Cases per target of the smoke run in `make test`.
pub const SMOKE_CASES: u64 = 2_000;
/// Cases per target of `make fuzz`.
pub const FULL_CASES: u64 = 1_000_000;
/// The seed used unless `AUTHKEYS_FUZZ_SEED` says otherwise.
pub const DEFAULT_SEED: u64 = 0x00a7_4b3e_5f02_2026;
/// Panicking inputs kept per target (all are counted).
pub const FINDINGS_KEPT: usize = 5;

/// How far one input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reached {
    /// The decoder refused it (not JSON, wrong shape, bad length, …).
    Refused,
    /// It decoded, but validation refused a field (or, for one-step parsers, never used).
    Decoded,
    /// It decoded and every field was valid: the invariants of an accepted input were checked.
    Accepted,
}

/// One fuzz target: a generator of inputs and a check that feeds them to a decoder.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name (`cmd.register`, `log.decode_checked`, …).
    pub name: &'static str,
    /// What it decodes.
    pub what: &'static str,
    /// Makes one input. The input alone reproduces a case: `check` reads everything from it.
    pub generate: fn(&mut Gen) -> Vec<u8>,
    /// Decodes the input, asserting only what the code promises; a panic is a finding.
    pub check: fn(&[u8]) -> Reached,
}

/// A panicking input.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The case's index in the run.
    pub case: u64,
    /// The input.
    pub input: Vec<u8>,
    /// The panic's message.
    pub message: String,
    /// Where it panicked (`file:line:col`).
    pub location: String,
}

/// The result of running one target.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The target's name.
    pub name: &'static str,
    /// Cases run.
    pub cases: u64,
    /// Cases that decoded (at least [`Reached::Decoded`]).
    pub decoded: u64,
    /// Cases that were accepted ([`Reached::Accepted`]).
    pub accepted: u64,
    /// Cases that panicked.
    pub panics: u64,
    /// The first [`FINDINGS_KEPT`] of them.
    pub findings: Vec<Finding>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message and location of panics inside [`run`]
/// instead of printing them, and defers to the previous hook everywhere else.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let location = info
                    .location()
                    .map_or_else(|| "?".to_owned(), ToString::to_string);
                let message = payload_text(info.payload());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// A seed of its own for each target, so that targets do not share inputs.
pub fn target_seed(seed: u64, name: &str) -> u64 {
    // FNV-1a of the name, mixed into the seed.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    seed ^ h
}

/// Runs `target` for `cases` inputs drawn from `seed`, catching every panic.
pub fn run(target: &Target, cases: u64, seed: u64) -> Outcome {
    install_hook();
    let mut g = Gen::new(target_seed(seed, target.name));
    let mut panics = 0;
    let mut decoded = 0;
    let mut accepted = 0;
    let mut findings = Vec::new();
    let start = Instant::now();
    CAPTURING.with(|c| c.set(true));
    for case in 0..cases {
        let input = (target.generate)(&mut g);
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.check)(&input)));
        match result {
            Ok(Reached::Refused) => {}
            Ok(Reached::Decoded) => decoded += 1,
            Ok(Reached::Accepted) => {
                decoded += 1;
                accepted += 1;
            }
            Err(_) => {
                panics += 1;
                let (message, location) = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| ("?".to_owned(), "?".to_owned()));
                if findings.len() < FINDINGS_KEPT {
                    findings.push(Finding {
                        case,
                        input,
                        message,
                        location,
                    });
                }
            }
        }
    }
    CAPTURING.with(|c| c.set(false));
    Outcome {
        name: target.name,
        cases,
        decoded,
        accepted,
        panics,
        findings,
        elapsed: start.elapsed(),
    }
}

/// A `u64` from the environment variable `name` (`_` separators allowed), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Cases per target: `AUTHKEYS_FUZZ_CASES`, or `default`.
pub fn cases_from_env(default: u64) -> u64 {
    env_u64("AUTHKEYS_FUZZ_CASES", default)
}

/// The seed: `AUTHKEYS_FUZZ_SEED`, or [`DEFAULT_SEED`].
pub fn seed_from_env() -> u64 {
    env_u64("AUTHKEYS_FUZZ_SEED", DEFAULT_SEED)
}

/// The targets whose name contains `AUTHKEYS_FUZZ_TARGET` (all when unset).
pub fn selected() -> Vec<Target> {
    let filter = std::env::var("AUTHKEYS_FUZZ_TARGET").unwrap_or_default();
    all()
        .into_iter()
        .filter(|t| t.name.contains(filter.as_str()))
        .collect()
}

/// A finding's input as text (escaped, cut at 600 bytes) for a report.
pub fn show_input(input: &[u8]) -> String {
    const MAX: usize = 600;
    let cut = &input[..input.len().min(MAX)];
    let text = cut.escape_ascii().to_string();
    if input.len() > MAX {
        format!("b\"{text}\"… ({} bytes)", input.len())
    } else {
        format!("b\"{text}\"")
    }
}

/// A finding, several lines.
pub fn describe(name: &str, f: &Finding) -> String {
    format!(
        "  {name} case {}: panicked at {}: {}\n    input: {}",
        f.case,
        f.location,
        f.message,
        show_input(&f.input)
    )
}
