//! Black-box tests of `authkeys audit …`: exit codes, what is printed, the state file, and bad
//! input, on a data dir written through the real log and `decide` (the audit fixture workload).

use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, ensure};
use authkeys_audit::fixtures::build_log;
use authkeys_log::LogReader;
use serde_json::Value;

fn authkeys(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_authkeys"))
        .args(args)
        .env_remove("AUTHKEYS_AUDIT_DATA")
        .env_remove("AUTHKEYS_AUDIT_NATS")
        .stdin(Stdio::null())
        .output()
        .context("run authkeys")
}

/// `authkeys audit verify --data DATA --trusted-key KEY [--state STATE]`.
fn verify(data: &str, key: &str, state: Option<&str>) -> anyhow::Result<Output> {
    let mut args = vec!["audit", "verify", "--data", data, "--trusted-key", key];
    if let Some(s) = state {
        args.extend(["--state", s]);
    }
    authkeys(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A copy of the log in `dir` with only the first `keep` events, in `into`.
fn truncated_copy(dir: &Path, into: &Path, keep: u64) -> anyhow::Result<()> {
    let reader = LogReader::open(&dir.join("log.redb"))?;
    let snap = reader.snapshot()?;
    let log_id = snap.log_id()?.context("log id")?;
    let mut events = Vec::new();
    snap.for_each_event(1, |k, row| {
        if k <= keep {
            events.push((k, row.to_vec()));
        }
        ControlFlow::Continue(())
    })?;
    let checkpoints: Vec<_> = snap
        .checkpoint_rows()?
        .into_iter()
        .filter(|(at, _)| *at <= keep)
        .collect();
    std::fs::create_dir_all(into)?;
    authkeys_log::fixtures::write_raw_log(
        &into.join("log.redb"),
        &[("log_id", log_id.0.to_vec())],
        &events,
        &checkpoints,
    )?;
    Ok(())
}

#[test]
fn audit_cli_verify_state_history_replay_and_bad_input() -> anyhow::Result<()> {
    // Proves the CLI contract: verify exits 0 with a summary and saves the state; a copy cut
    // short (its checkpoints cut too, so only the state can tell) exits 1 naming the first
    // missing seq; history and replay answer in text and JSON; bad input exits 2 with a message.
    let dir = tempfile::tempdir()?;
    let built = build_log(dir.path(), 300, 7, 32);
    let data = dir.path().to_str().context("utf8")?;
    let key = authkeys(&["audit", "public-key", "--data", data])?;
    ensure!(code(&key) == 0, "{}", text(&key.stderr));
    let key = text(&key.stdout).trim().to_owned();
    ensure!(key == hex::encode(built.key.as_bytes()), "{key}");
    let state = dir.path().join("auditor.state");
    let state = state.to_str().context("utf8")?;

    let ok = verify(data, &key, Some(state))?;
    ensure!(code(&ok) == 0, "{}", text(&ok.stderr));
    let out = text(&ok.stdout);
    ensure!(
        out.starts_with(&format!("OK: {} events", built.events)),
        "{out}"
    );
    ensure!(out.contains("state saved"), "{out}");
    let again = verify(data, &key, Some(state))?;
    ensure!(
        code(&again) == 0 && text(&again.stdout).contains("extends the history"),
        "{}",
        text(&again.stdout)
    );

    let cut = dir.path().join("cut");
    let keep = built.events - 5;
    truncated_copy(dir.path(), &cut, keep)?;
    let cut_s = cut.to_str().context("utf8")?;
    let alone = verify(cut_s, &key, None)?;
    ensure!(
        code(&alone) == 0,
        "without the state a clean cut looks whole: {}",
        text(&alone.stderr)
    );
    let bad = verify(cut_s, &key, Some(state))?;
    let err = text(&bad.stderr);
    ensure!(code(&bad) == 1, "{err}");
    ensure!(err.contains(&format!("from seq {}", keep + 1)), "{err}");

    // History of a key: its events and the nodes it registered.
    let key_id = {
        let reader = LogReader::open(&dir.path().join("log.redb"))?;
        let mut found = None;
        reader.snapshot()?.for_each_event(1, |_, row| {
            let env =
                authkeys_events::Envelope::decode_body(&row[32..], authkeys_events::Hash::ZERO)
                    .expect("decodes");
            if let authkeys_events::Event::NodeRegistered(e) = env.event {
                found = Some(e.auth_key_id.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        found.context("a registration")?
    };
    let h = authkeys(&["audit", "history", "--data", data, "--key", &key_id])?;
    let out = text(&h.stdout);
    ensure!(
        code(&h) == 0
            && out.contains("KeyGenerated")
            && out.contains("nodes registered with this key"),
        "{out}"
    );
    let h = authkeys(&[
        "audit", "history", "--data", data, "--key", &key_id, "--json",
    ])?;
    let v: Value = serde_json::from_slice(&h.stdout)?;
    ensure!(
        v["registered"].as_array().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    ensure!(v["events"][0]["type"] == "KeyGenerated", "{v}");
    let u = authkeys(&[
        "audit",
        "history",
        "--data",
        data,
        "--user",
        "auditor@example.com",
        "--json",
    ])?;
    let v: Value = serde_json::from_slice(&u.stdout)?;
    ensure!(v["events"][0]["type"] == "UserAdded", "{v}");

    // Replay at a seq.
    let r = authkeys(&[
        "audit", "replay", "--data", data, "--until", "40", "--view", "keys", "--json",
    ])?;
    let v: Value = serde_json::from_slice(&r.stdout).with_context(|| text(&r.stderr))?;
    ensure!(
        v["seq"] == 40 && v["view"] == "keys" && v["stateHash"].is_string(),
        "{v}"
    );

    // Bad input: a message and exit 2.
    for (args, says) in [
        (
            vec!["audit", "verify", "--data", data, "--trusted-key", "nothex"],
            "trusted key",
        ),
        (
            vec![
                "audit",
                "verify",
                "--data",
                "/nonexistent/dir",
                "--trusted-key",
                key.as_str(),
            ],
            "no log file",
        ),
        (
            vec![
                "audit", "replay", "--data", data, "--until", "soon", "--view", "keys",
            ],
            "--until",
        ),
        (
            vec![
                "audit", "replay", "--data", data, "--until", "5", "--view", "nodes",
            ],
            "--view",
        ),
        (vec!["audit", "history", "--data", data], "required"),
        (
            vec![
                "audit",
                "verify",
                "--data",
                data,
                "--nats",
                "nats://127.0.0.1:1",
                "--trusted-key",
                key.as_str(),
            ],
            "cannot be used with",
        ),
    ] {
        let o = authkeys(&args)?;
        let err = text(&o.stderr);
        ensure!(
            code(&o) == 2 && err.contains(says),
            "{args:?}: {} {err}",
            code(&o)
        );
    }
    std::fs::write(state, "{not json")?;
    let o = verify(data, &key, Some(state))?;
    ensure!(
        code(&o) == 2 && text(&o.stderr).contains("not an audit state"),
        "{}",
        text(&o.stderr)
    );
    Ok(())
}
