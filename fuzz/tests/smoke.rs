//! The smoke run of every fuzz target, part of `make test`: `AUTHKEYS_FUZZ_CASES` cases each
//! (default `SMOKE_CASES`), no panic allowed. `make fuzz` runs the same targets a million times.

use authkeys_fuzz::{SMOKE_CASES, cases_from_env, describe, run, seed_from_env, selected};

#[test]
fn every_target_runs_without_panics() {
    let cases = cases_from_env(SMOKE_CASES);
    let seed = seed_from_env();
    let mut failures = Vec::new();
    for t in selected() {
        let o = run(&t, cases, seed);
        assert_eq!(o.cases, cases);
        if o.panics > 0 {
            failures.push(format!(
                "{}: {} panics in {} cases",
                o.name, o.panics, o.cases
            ));
            failures.extend(o.findings.iter().map(|f| describe(o.name, f)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn targets_have_distinct_names() {
    let all = authkeys_fuzz::all();
    let mut names: Vec<&str> = all.iter().map(|t| t.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
}

#[test]
fn run_counts_and_reports_panics() {
    use authkeys_fuzz::{Reached, Target};
    let t = Target {
        name: "self-test",
        what: "panics on inputs that start with 0",
        generate: |g| vec![g.byte() % 4],
        check: |b| {
            assert!(b.first() != Some(&0), "starts with 0");
            Reached::Accepted
        },
    };
    let o = run(&t, 400, 1);
    assert_eq!(o.cases, 400);
    assert!(o.panics > 50 && o.panics < 200, "{} panics", o.panics);
    assert_eq!(o.accepted + o.panics, 400);
    let f = &o.findings[0];
    assert_eq!(f.input, [0]);
    assert!(f.message.contains("starts with 0"), "{}", f.message);
    assert!(f.location.contains("smoke.rs"), "{}", f.location);
}
