//! `authkeys audit …`: flags in, the `authkeys-audit` library does the work, answers out.
//!
//! Exit codes: 0 verified (or answered); 1 the log failed verification (stderr names the first
//! bad seq and what is wrong); 2 the tool could not do its work (bad flag value, unreadable
//! source, NATS unreachable).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use authkeys_audit::history::{self, Subject};
use authkeys_audit::replay::{self, Until, ViewName};
use authkeys_audit::source::{self, Source};
use authkeys_audit::{AuditState, trust};
use authkeys_protocol::nats::Identity;

use super::{AuditCmd, AuditSourceArgs};

/// Runs one audit subcommand.
pub async fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let outcome = match cmd {
        AuditCmd::Verify(a) => verify(a).await,
        AuditCmd::History(a) => history(a).await,
        AuditCmd::Replay(a) => replay(a).await,
        AuditCmd::PublicKey(a) => public_key(&a.data),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn connect(source: AuditSourceArgs) -> anyhow::Result<Source> {
    let role = authkeys_protocol::access::Role::Auditor;
    let identity = match &source.nats_auth {
        Some(dir) => Identity::from_dir(dir, role)?,
        None => Identity::anonymous(role),
    };
    match (source.data, source.nats) {
        (Some(data), _) => {
            let path = source::log_path(&data);
            anyhow::ensure!(path.is_file(), "no log file at {}", path.display());
            Ok(Source::File(data))
        }
        (None, Some(url)) => {
            let options = identity
                .options("authkeys-audit")
                .connection_timeout(Duration::from_secs(5));
            let client = authkeys_protocol::nats::connect_with(&url, options).await?;
            Ok(Source::Nats(client))
        }
        (None, None) => anyhow::bail!("give --data DIR or --nats URL"),
    }
}

/// A one-line progress report on stderr, only when it is a terminal.
fn progress_bar() -> impl FnMut(u64, u64) {
    let on = std::io::stderr().is_terminal();
    move |done, known| {
        if on {
            let pct = (done * 100).checked_div(known).unwrap_or(100);
            let filled = (pct / 5) as usize;
            eprint!(
                "\r[{}{}] {done}/{known} events ({pct}%)",
                "#".repeat(filled),
                " ".repeat(20 - filled.min(20))
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn read_state(path: &Path) -> anyhow::Result<Option<AuditState>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let state: AuditState = serde_json::from_slice(&bytes).with_context(|| {
                format!("the state file {} is not an audit state", path.display())
            })?;
            anyhow::ensure!(
                state.version == AuditState::VERSION,
                "the state file {} has version {}, this build reads {}",
                path.display(),
                state.version,
                AuditState::VERSION
            );
            Ok(Some(state))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read the state file {}", path.display())),
    }
}

/// Writes the state next to `path` and renames it into place.
fn write_state(path: &Path, state: &AuditState) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(state).context("encode the state")?;
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename into {}", path.display()))
}

async fn verify(a: super::AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let key = trust::parse_trusted_key(&a.trusted_key)?;
    let state = match &a.state {
        Some(p) => read_state(p)?,
        None => None,
    };
    let source = connect(a.source).await?;
    let mut bar = progress_bar();
    let verdict = match &source {
        Source::File(data) => {
            let path = source::log_path(data);
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                source::verify_file(&path, &key, state.as_ref(), &mut bar)
            })
            .await
            .context("verify task")??
        }
        Source::Nats(client) => source::verify_nats(client, &key, state.as_ref(), &mut bar).await?,
    };
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    match verdict {
        Err(problem) => {
            eprintln!(
                "FAILED: the log is not trustworthy from seq {}: {}",
                problem.seq, problem.what
            );
            Ok(ExitCode::from(1))
        }
        Ok(s) => {
            println!(
                "OK: {} events of log {} verified from seq 1 (head hash {})",
                s.events, s.log_id, s.head.hash
            );
            match s.last_checkpoint {
                Some(cp) => println!(
                    "    {} signed checkpoints under key {}, the last at seq {}",
                    s.checkpoints,
                    trust::key_hex(&key),
                    cp.seq
                ),
                None => println!("    no signed checkpoint yet"),
            }
            if let Some(t) = s.last_time {
                println!("    last event at {t}");
            }
            println!(
                "    domain invariants hold: one-off keys used once, no registration after revoke or expiry, every actor held its role"
            );
            if let Some(path) = &a.state {
                match &state {
                    Some(before) => println!(
                        "    extends the history verified before (up to seq {})",
                        before.head.seq
                    ),
                    None => println!("    no earlier state: this run starts {}", path.display()),
                }
                write_state(path, &s.state)?;
                println!("    state saved to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn history(a: super::AuditHistoryArgs) -> anyhow::Result<ExitCode> {
    let subject = match (a.key, a.node, a.user) {
        (Some(k), _, _) => Subject::Key(k),
        (_, Some(n), _) => Subject::Node(n),
        (_, _, Some(u)) => Subject::User(u),
        _ => anyhow::bail!("give --key ID, --node ID or --user LOGIN"),
    };
    let source = connect(a.source).await?;
    let h = history::history(&source, subject.clone()).await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &h).context("write JSON")?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if h.events.is_empty() {
        writeln!(out, "no event touched {subject:?}")?;
    }
    for t in &h.events {
        writeln!(
            out,
            "{:>8}  {}  {:<20} {:<28} {}",
            t.seq, t.time, t.event_type, t.actor, t.summary
        )?;
    }
    if let Some(nodes) = &h.registered {
        let live = nodes.iter().filter(|n| n.deleted.is_none()).count();
        writeln!(
            out,
            "\nnodes registered with this key: {} ({} not deleted since)",
            nodes.len(),
            live
        )?;
        for n in nodes {
            writeln!(
                out,
                "  {:<12} {:<24} host {:<20} seq {:>8} {}{}",
                n.node_id,
                n.name,
                n.hostname,
                n.seq,
                if n.reauthentication {
                    "re-authenticated "
                } else {
                    ""
                },
                n.deleted
                    .map(|t| format!("deleted {t}"))
                    .unwrap_or_else(|| "still present".into())
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(a: super::AuditReplayArgs) -> anyhow::Result<ExitCode> {
    let until = Until::parse(&a.until)?;
    let view = ViewName::parse(&a.view)?;
    let source = connect(a.source).await?;
    let r = replay::replay(&source, until, view).await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &r).context("write JSON")?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} view after seq {}{}: {} rows, state hash {}",
        r.view,
        r.seq,
        r.time.map(|t| format!(" ({t})")).unwrap_or_default(),
        r.rows.len(),
        r.state_hash
    )?;
    for row in &r.rows {
        writeln!(out, "{}  {}", row.key, row.row)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn public_key(data: &Path) -> anyhow::Result<ExitCode> {
    let path = data.join("signing.key");
    let secret = authkeys_log::keys::load_or_create_key(&path, false)
        .with_context(|| format!("read {}", path.display()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
    println!("{}", trust::key_hex(&key));
    Ok(ExitCode::SUCCESS)
}
