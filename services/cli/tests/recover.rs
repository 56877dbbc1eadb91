//! `authkeys admin recover` (R18): an Owner whose tokens have all expired is never locked out.
//! Offline, on the service's data dir, it appends an `ApiTokenIssued` for the tailnet's Owner by
//! the system actor `recover` and prints the token, which then works through the real service.

mod api_support;
mod proc_support;

use std::process::Stdio;

use anyhow::{Context, ensure};
use authkeys_events::{ActorType, Event};
use proc_support::{Procs, authkeys, bootstrapped, free_port, get_ok, http, log_events};

/// `authkeys admin recover --data DIR --tailnet NAME`: (exit code, stdout, stderr).
fn recover(data: &std::path::Path, tailnet: &str) -> anyhow::Result<(i32, String, String)> {
    let out = authkeys()
        .args(["admin", "recover", "--tailnet", tailnet])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_recover_issues_the_owner_a_working_token_and_logs_it() -> anyhow::Result<()> {
    let (nats, _dir, data, first) = bootstrapped("data")?;
    let events_before = log_events(&data)?;

    // Refusals print a message, exit non-zero and change nothing.
    let (code, out, err) = recover(&data, "other.example")?;
    ensure!(
        code == 1 && out.is_empty() && err.contains("no tailnet is named other.example"),
        "{code} {out:?} {err}"
    );
    let (code, _, err) = recover(&data, "not a name!")?;
    ensure!(code != 0 && err.contains("--tailnet"), "{code} {err}");
    let (code, _, err) = recover(&data.join("missing"), "example.com")?;
    ensure!(code != 0 && err.contains("holds no log"), "{code} {err}");
    // (Opening the log for a write touches the file's header, so the events are compared.)
    ensure!(
        log_events(&data)? == events_before,
        "refusals appended nothing"
    );

    let (code, out, err) = recover(&data, "example.com")?;
    ensure!(code == 0, "{err}");
    let token = out.trim_end().to_owned();
    ensure!(token.starts_with("tskey-api-") && token != first, "{out:?}");
    ensure!(err.contains("new API token"), "{err}");

    // The event: the Owner's new token, by the system actor `recover`.
    let events = log_events(&data)?;
    let last = events.last().context("events")?;
    let Event::ApiTokenIssued(issued) = &last.event else {
        anyhow::bail!("the last event is {:?}", last.event)
    };
    let owner = events
        .iter()
        .find_map(|e| match &e.event {
            Event::UserAdded(u) => Some(u.user_id.clone()),
            _ => None,
        })
        .context("the owner")?;
    ensure!(issued.user_id == owner, "{issued:?}");
    ensure!(last.actor.actor_type == ActorType::System && last.actor.id == "recover");

    // The service, started on the data dir, takes the new token (and the first one still).
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    let keys = get_ok(port, "/api/v2/tailnet/-/keys", &token).await?;
    let types: Vec<&str> = keys["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k["keyType"].as_str())
        .collect();
    ensure!(types == ["api", "api"], "both Owner tokens listed: {keys}");
    let a = http(port, "GET", "/api/v2/tailnet/-/keys", &first, None).await?;
    ensure!(a.status == 200, "{a:?}");

    // While the service holds the log, recover refuses (the log has one writer).
    let (code, out, err) = recover(&data, "example.com")?;
    ensure!(
        code != 0 && out.is_empty() && !err.is_empty(),
        "{code} {out:?} {err}"
    );
    Ok(())
}
