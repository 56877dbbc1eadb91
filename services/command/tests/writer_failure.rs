//! Issue 11, finding 8: a poisoned writer must not look healthy.
//!
//! A test binary of its own, with one test: it makes the log's commits fail for real by lowering
//! this process's file-size limit (`RLIMIT_FSIZE`, which also binds root, unlike a read-only
//! file), so every write past the limit fails with `EFBIG` — the same path as a full disk. The
//! limit is per process, so no other test may share it.

mod command_support;

use anyhow::{Context, ensure};
use authkeys_command::{CommandConfig, CommandService, mint, status};
use authkeys_log::LogConfig;
use authkeys_protocol::subject;
use command_support::InProcess;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde_json::{Value, json};

/// `SIGXFSZ` on Linux: sent with `EFBIG`; its default action would end the process.
const SIGXFSZ: i32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_08_a_failed_commit_is_reported_by_status() -> anyhow::Result<()> {
    // After a commit fails, every write answers `unavailable`, and `authkeys.status` says why
    // (`writerFailure`) instead of looking healthy; before that it carries no failure.
    let dir = tempfile::tempdir()?;
    let InProcess {
        made, service, log, ..
    } = InProcess::start(dir.path(), CommandConfig::default()).await?;
    let generate = |id: &str| {
        json!({
            "commandId": id,
            "tailnet": made.tailnet_id.to_string(),
            "actor": made.owner_id.to_string(),
            "capabilities": {"devices": {"create": {"reusable": true}}},
        })
    };
    let call = async |body: Value| -> anyhow::Result<Value> {
        let bytes = service
            .handle(subject::GENERATE_KEY, "test", &serde_json::to_vec(&body)?)
            .await;
        Ok(serde_json::from_slice(&bytes)?)
    };

    let healthy = call(generate("before")).await?;
    ensure!(healthy["ok"] == json!(true), "{healthy}");
    let before = status::status(&log)?;
    assert_eq!(before.writer_failure, None);
    let wire = serde_json::to_value(&before)?;
    assert!(wire.get("writerFailure").is_none(), "{wire}");

    // The disk "fills up": no file of this process may grow past one page any more.
    let _ignore_sigxfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ))
            .context("catch SIGXFSZ")?;
    let saved = getrlimit(Resource::Fsize);
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(4096),
            maximum: saved.maximum,
        },
    )
    .context("lower RLIMIT_FSIZE")?;
    let failed = call(generate("during")).await;
    let later = call(generate("later")).await;
    let after = status::status(&log);
    setrlimit(Resource::Fsize, saved).context("restore RLIMIT_FSIZE")?;

    let failed = failed?;
    assert_eq!(failed["error"]["code"], json!("unavailable"), "{failed}");
    let later = later?;
    assert_eq!(later["error"]["code"], json!("unavailable"), "{later}");
    let after = after?;
    let why = after
        .writer_failure
        .clone()
        .context("the status reports the failed writer")?;
    assert!(why.contains("storage failure"), "{why}");
    assert_eq!(after.head, before.head, "nothing was committed");
    let wire = serde_json::to_value(&after)?;
    assert_eq!(wire["writerFailure"], json!(why));
    // The log's own reason leads; redb also refuses reads after a failed I/O, which the status
    // adds rather than failing to answer.
    let reason = log.writer_failure().context("the log reports it too")?;
    assert!(why.starts_with(&reason), "{why}");

    // Recovery, as documented: with the cause gone, a restart reopens and verifies the log,
    // and it takes writes again.
    drop(service);
    tokio::task::spawn_blocking(move || log.close()).await?;
    let reopened = {
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || mint::open_log(&dir, LogConfig::in_dir(&dir))).await??
    };
    let (mint, log) = reopened;
    assert_eq!(log.head().seq, before.head);
    let service = CommandService::new(log.clone(), mint, CommandConfig::default());
    let bytes = service
        .handle(
            subject::GENERATE_KEY,
            "test",
            &serde_json::to_vec(&generate("after-restart"))?,
        )
        .await;
    let reply: Value = serde_json::from_slice(&bytes)?;
    ensure!(reply["ok"] == json!(true), "{reply}");
    assert_eq!(status::status(&log)?.writer_failure, None);
    Ok(())
}
