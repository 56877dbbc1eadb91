//! `authkeys-fuzz`: runs every fuzz target (or those whose name contains
//! `AUTHKEYS_FUZZ_TARGET`) for `AUTHKEYS_FUZZ_CASES` cases each (default 1,000,000) on
//! `AUTHKEYS_FUZZ_THREADS` threads (default 2), from `AUTHKEYS_FUZZ_SEED`, and prints per target
//! the cases run, the panics found and the time taken, then the first panicking inputs. Exits 1
//! if any target panicked. `make fuzz` runs it in release.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use authkeys_fuzz::{FULL_CASES, Outcome, cases_from_env, describe, env_u64, run, seed_from_env};

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn main() {
    let targets = authkeys_fuzz::selected();
    let cases = cases_from_env(FULL_CASES);
    let seed = seed_from_env();
    let threads = usize::try_from(env_u64("AUTHKEYS_FUZZ_THREADS", 2).max(1)).unwrap_or(2);
    println!(
        "authkeys-fuzz: {} targets × {cases} cases, seed {seed:#x}, {threads} threads",
        targets.len()
    );
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(targets.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = targets.get(i) else { break };
                    let o = run(t, cases, seed);
                    println!(
                        "  done {:<28} {:>10} cases {:>6} panics {:>8.1} s",
                        o.name,
                        o.cases,
                        o.panics,
                        o.elapsed.as_secs_f64()
                    );
                    outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((i, o));
                }
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    outcomes.sort_by_key(|(i, _)| *i);
    let total = start.elapsed();

    println!();
    println!("| target | decodes | cases | decoded | accepted | panics | time (s) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (i, o) in &outcomes {
        println!(
            "| {} | {} | {} | {:.1} % | {:.1} % | {} | {:.1} |",
            o.name,
            targets[*i].what,
            o.cases,
            percent(o.decoded, o.cases),
            percent(o.accepted, o.cases),
            o.panics,
            o.elapsed.as_secs_f64()
        );
    }
    let cases_total: u64 = outcomes.iter().map(|(_, o)| o.cases).sum();
    let panics_total: u64 = outcomes.iter().map(|(_, o)| o.panics).sum();
    println!(
        "\ntotal: {} targets, {cases_total} cases, {panics_total} panics, {:.1} s wall",
        outcomes.len(),
        total.as_secs_f64()
    );
    if panics_total > 0 {
        println!(
            "\npanicking inputs (first {} per target):",
            authkeys_fuzz::FINDINGS_KEPT
        );
        for (_, o) in &outcomes {
            for f in &o.findings {
                println!("{}", describe(o.name, f));
            }
        }
        std::process::exit(1);
    }
}
