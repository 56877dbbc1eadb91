//! The standby (SPEC §7): a command service that follows the events stream into its own copy of
//! the log and takes the lead when the primary stops renewing the leader lease.
//!
//! How a copy stays the same log:
//! - It is created with the primary's log id (asked over `authkeys.log.checkpoints`) and holds
//!   copies of the primary's key files, so its event ids, checkpoints and secrets are the
//!   primary's.
//! - Every message of the stream is imported with [`Log::import`], which checks it as a full
//!   verification does (seq, hash over the exact bytes, `prevHash`, event id) before writing it.
//!   The primary's signed checkpoints are fetched over `authkeys.log.checkpoints` and imported
//!   once their events are in: each must verify under the log's key and match the chain. A
//!   stream that fails a check stops the standby with an error naming the seq; it never imports
//!   a history it cannot verify. The tail after the last checkpoint fetched (at most
//!   `checkpoint_events_max` events or `checkpoint_interval`) is checked by the chain alone when
//!   the primary dies before its next checkpoint; its authenticity rests on NATS permissions
//!   (only the command role may publish events, SPEC §6).
//! - The relay puts each command's idempotency record on its last event
//!   ([`subject::COMMAND_RECORD_HEADER`]); the standby imports them, so a retry of a command the
//!   old primary committed is answered with the first result by the new one.
//! - Before following, the copy's event at `min(head, stream's last)` is compared with the
//!   stream's. A copy that differs holds events that never reached the stream (an old primary's
//!   unreplicated tail, or events it appended after losing the lead): the file is moved aside
//!   (`log.redb.diverged-<unix ms>`, kept for inspection) and the copy is rebuilt from the
//!   stream.
//!
//! Taking over: once the copy has caught up with the stream and the lease is free, the standby
//! takes it, imports what the stream holds beyond its head (the old primary's last events), and
//! only then starts answering commands.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_nats::Client;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, Context};
use authkeys_domain::State;
use authkeys_events::{Checkpoint, LogId, Seq};
use authkeys_log::{Import, ImportedCommand, Log, LogConfig, StoredEvent};
use authkeys_protocol::log::{CheckpointsPage, LogReadRequest, split_stored};
use authkeys_protocol::subject;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::lease::{Held, Leases};
use crate::mint::Mint;

/// Most stream messages imported in one transaction.
const IMPORT_BATCH_MAX: usize = 512;
/// How often the primary's checkpoints are fetched while following.
const CHECKPOINT_FETCH_EVERY: Duration = Duration::from_millis(1_000);
/// The longest a request to the primary (checkpoints, the log id) waits.
const PRIMARY_WAIT: Duration = Duration::from_millis(250);
/// The wait before following again after the stream or NATS failed.
const RETRY_WAIT: Duration = Duration::from_millis(250);

/// A log copy and its keys.
pub(crate) struct Copy {
    pub(crate) mint: Mint,
    pub(crate) log: Log<State>,
}

/// How following ended.
pub(crate) enum Followed {
    /// Shut down while following.
    Shutdown(Option<Copy>),
    /// This copy holds the lease and every event of the stream: it may serve.
    Lead(Copy, Held),
}

/// What the standby needs.
pub(crate) struct Standby<'a> {
    pub(crate) data_dir: &'a std::path::Path,
    pub(crate) client: &'a Client,
    pub(crate) js: &'a Context,
    pub(crate) stream: &'a str,
    pub(crate) leases: &'a Leases,
}

/// How one pass of following ended.
enum Pass {
    Shutdown,
    Lead(Held),
    /// The copy differs from the stream at this seq.
    Diverged(u64),
    /// NATS or the stream failed: follow again.
    Retry(anyhow::Error),
}

impl Standby<'_> {
    /// Follows the stream into `copy` (opened once a primary names the log, when `None`) until
    /// this copy leads or `shutdown`.
    pub(crate) async fn follow(
        &self,
        copy: Option<Copy>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Followed> {
        let mut copy = match copy {
            Some(c) => c,
            None => match self.open_new_copy(shutdown).await? {
                Some(c) => c,
                None => return Ok(Followed::Shutdown(None)),
            },
        };
        tracing::info!(head = copy.log.head().seq, log = %copy.log.log_id(), "following the primary");
        loop {
            match self.pass(&copy.log, shutdown).await? {
                Pass::Shutdown => return Ok(Followed::Shutdown(Some(copy))),
                Pass::Lead(held) => return Ok(Followed::Lead(copy, held)),
                Pass::Retry(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "following the stream failed; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(Followed::Shutdown(Some(copy))),
                        () = tokio::time::sleep(RETRY_WAIT) => {}
                    }
                }
                Pass::Diverged(at) => copy = self.set_aside(copy, at).await?,
            }
        }
    }

    /// Waits for a primary to name its log, then creates the copy.
    async fn open_new_copy(&self, shutdown: &CancellationToken) -> anyhow::Result<Option<Copy>> {
        let mut said = false;
        loop {
            match self.checkpoints(Seq::FIRST).await {
                Ok(CheckpointsPage {
                    log_id: Some(log_id),
                    ..
                }) => return self.open_copy(log_id).await.map(Some),
                Ok(_) => tracing::debug!("the primary named no log"),
                Err(e) => tracing::debug!(error = format!("{e:#}"), "no primary answered"),
            }
            if !said {
                tracing::info!("standby: waiting for a primary to name its log");
                said = true;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(RETRY_WAIT) => {}
            }
        }
    }

    async fn open_copy(&self, log_id: LogId) -> anyhow::Result<Copy> {
        let dir = self.data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create data dir {}", dir.display()))?;
            let config = LogConfig {
                log_id: Some(log_id),
                ..LogConfig::in_dir(&dir)
            };
            let (mint, log) = crate::mint::open_log(&dir, config)?;
            Ok(Copy { mint, log })
        })
        .await
        .context("open the log copy")?
    }

    /// Moves a copy that differs from the stream aside and starts a new one of the same log.
    async fn set_aside(&self, copy: Copy, at: u64) -> anyhow::Result<Copy> {
        let log_id = copy.log.log_id();
        let head = copy.log.head().seq;
        let path = LogConfig::in_dir(self.data_dir).path;
        let aside = path.with_extension(format!(
            "redb.diverged-{}",
            authkeys_events::decision::system_clock().now().unix_ms()
        ));
        let (from, to) = (path.clone(), aside.clone());
        tokio::task::spawn_blocking(move || {
            copy.log.close();
            std::fs::rename(&from, &to)
                .with_context(|| format!("move {} aside to {}", from.display(), to.display()))
        })
        .await
        .context("set the diverged log aside")??;
        tracing::error!(
            seq = at,
            head,
            kept = %aside.display(),
            "this log differs from the stream from seq {at} on (events that never reached the \
             stream); moved it aside and rebuilding the copy from the stream"
        );
        self.open_copy(log_id).await
    }

    async fn checkpoints(&self, from: Seq) -> anyhow::Result<CheckpointsPage> {
        let request = LogReadRequest {
            from_seq: from,
            limit: authkeys_protocol::log::CHECKPOINTS_PAGE_MAX,
        };
        let reply = tokio::time::timeout(
            PRIMARY_WAIT,
            self.client
                .request(subject::LOG_CHECKPOINTS, request.to_bytes().into()),
        )
        .await
        .map_err(|_| anyhow!("no answer"))??;
        let page: CheckpointsPage = serde_json::from_slice(&reply.payload)?;
        if !page.ok {
            bail!("refused: {:?}", page.error);
        }
        Ok(page)
    }

    /// One pass: check the copy against the stream, then import until this copy leads.
    async fn pass(&self, log: &Log<State>, shutdown: &CancellationToken) -> anyhow::Result<Pass> {
        let retry = |e: anyhow::Error| Ok(Pass::Retry(e));
        let mut stream = match self.js.get_stream(self.stream).await {
            Ok(s) => s,
            Err(e) => return retry(anyhow!(e).context("read the events stream")),
        };
        let last = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => return retry(anyhow!(e).context("read the events stream")),
        };
        let head = log.head().seq;
        let check_at = head.min(last);
        if check_at > 0 {
            match same_at(&stream, log, check_at).await {
                Ok(true) => {}
                Ok(false) => return Ok(Pass::Diverged(check_at)),
                Err(e) => return retry(e),
            }
        }
        let consumer = match stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: check_at + 1,
                },
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return retry(anyhow!(e).context("follow the events stream")),
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m.ready_chunks(IMPORT_BATCH_MAX),
            Err(e) => return retry(anyhow!(e).context("follow the events stream")),
        };

        let log_id = log.log_id();
        let mut caught_up = head >= last;
        let mut lead: Option<(Held, u64)> = None;
        let mut checkpoints: BTreeMap<u64, Checkpoint> = BTreeMap::new();
        let mut next_checkpoint = log.last_checkpoint()?.map_or(1, |cp| cp.seq.get() + 1);
        // Taking the lease comes before fetching checkpoints (a fetch from a primary that hangs
        // takes up to its wait), and neither catches up on missed ticks.
        let mut try_lead = tokio::time::interval(self.leases.renew_every());
        let mut fetch = tokio::time::interval(CHECKPOINT_FETCH_EVERY);
        try_lead.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        fetch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let lost = lead.as_ref().map(|(held, _)| held.lost());
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    if let Some((held, _)) = lead {
                        held.release(PRIMARY_WAIT).await;
                    }
                    return Ok(Pass::Shutdown);
                }
                () = async { lost.as_ref().expect("guarded").cancelled().await },
                    if lost.is_some() =>
                {
                    lead = None;
                }
                batch = messages.next() => {
                    let Some(batch) = batch else {
                        return retry(anyhow!("the stream's consumer ended"));
                    };
                    let mut import = Import::default();
                    let mut head = log.head().seq;
                    for msg in batch {
                        let msg = match msg {
                            Ok(m) => m,
                            Err(e) => return retry(anyhow!(e).context("read the events stream")),
                        };
                        let (seq, pending) = msg
                            .info()
                            .map(|i| (i.stream_sequence, i.pending))
                            .map_err(|e| anyhow!("stream message: {e}"))?;
                        caught_up = pending == 0;
                        if let Some(at) = sort(log, seq, &msg, &mut head, &mut import).await? {
                            return Ok(Pass::Diverged(at));
                        }
                    }
                    let Some(first) = import.events.first().map(|e| e.seq.get()) else {
                        continue;
                    };
                    import.checkpoints = due(&mut checkpoints, head);
                    log.import(import).await.with_context(|| {
                        format!(
                            "the stream holds a history this copy cannot verify (after seq {})",
                            first - 1
                        )
                    })?;
                }
                _ = try_lead.tick(), if lead.is_none() && caught_up => {
                    let taken = match self.leases.try_acquire(log_id).await {
                        Ok(taken) => taken,
                        Err(e) => return retry(e),
                    };
                    if let Some(lease) = taken {
                        let held = lease.start(log_id);
                        // Everything the old primary got into the stream is imported before
                        // this copy answers anything.
                        let target = match stream.info().await {
                            Ok(info) => info.state.last_sequence,
                            Err(e) => {
                                held.release(PRIMARY_WAIT).await;
                                return retry(anyhow!(e).context("read the events stream"));
                            }
                        };
                        let head = log.head().seq;
                        tracing::info!(head, stream_last = target, "took the leader lease");
                        lead = Some((held, target));
                    }
                }
                _ = fetch.tick() => {
                    self.fetch_checkpoints(log, &mut next_checkpoint, &mut checkpoints).await?;
                }
            }
            if let Some((_, target)) = &lead
                && log.head().seq >= *target
            {
                let (held, _) = lead.expect("checked");
                return Ok(Pass::Lead(held));
            }
        }
    }
}

impl Standby<'_> {
    /// Asks the primary for its checkpoints from `next` on and imports those whose events this
    /// copy holds; later ones wait in `pending`. No answer is no news (the primary may be gone).
    async fn fetch_checkpoints(
        &self,
        log: &Log<State>,
        next: &mut u64,
        pending: &mut BTreeMap<u64, Checkpoint>,
    ) -> anyhow::Result<()> {
        let Ok(page) = self.checkpoints(Seq::new(*next).expect("next >= 1")).await else {
            return Ok(());
        };
        let log_id = log.log_id();
        if page.log_id.is_some_and(|id| id != log_id) {
            bail!(
                "the primary answering authkeys.log.checkpoints has log {:?}, not {log_id}",
                page.log_id
            );
        }
        for row in page.checkpoints {
            let cp = hex::decode(&row.bytes)
                .ok()
                .and_then(|b| Checkpoint::from_bytes(&b).ok())
                .filter(|cp| cp.seq.get() == row.at)
                .ok_or_else(|| anyhow!("the primary sent a malformed checkpoint at {}", row.at))?;
            *next = (*next).max(row.at + 1);
            pending.insert(row.at, cp);
        }
        let ready = due(pending, log.head().seq);
        if !ready.is_empty() {
            log.import(Import {
                checkpoints: ready,
                ..Import::default()
            })
            .await
            .context("a checkpoint of the primary does not verify")?;
        }
        Ok(())
    }
}

/// Sorts stream message `seq` into `import` (with its command record, if it carries one), or
/// compares it with this copy's event when the copy has it already (`head` is the copy's head
/// with `import` appended): `Some(seq)` when the two differ.
async fn sort(
    log: &Log<State>,
    seq: u64,
    msg: &jetstream::Message,
    head: &mut u64,
    import: &mut Import,
) -> anyhow::Result<Option<u64>> {
    let (hash, body) = split_stored(&msg.payload)
        .ok_or_else(|| anyhow!("stream message {seq} is not a stored envelope"))?;
    if seq <= *head {
        return Ok((!same_hash(log, seq, hash).await?).then_some(seq));
    }
    let event = StoredEvent {
        seq: Seq::new(seq).map_err(|_| anyhow!("stream message 0"))?,
        hash,
        body,
    };
    let record = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(subject::COMMAND_RECORD_HEADER));
    if let Some(record) = record {
        match (parse_record(record.as_str(), seq), event.envelope()) {
            (Some((scope, seqs, fingerprint)), Ok(env)) => import.commands.push(ImportedCommand {
                scope,
                command_id: env.command_id,
                seqs,
                fingerprint,
            }),
            _ => tracing::warn!(seq, "ignoring a malformed command record header"),
        }
    }
    *head = seq;
    import.events.push(event);
    Ok(None)
}

/// The checkpoints of `pending` at or below `head`, taken out.
fn due(pending: &mut BTreeMap<u64, Checkpoint>, head: u64) -> Vec<Checkpoint> {
    let later = pending.split_off(&(head + 1));
    std::mem::replace(pending, later).into_values().collect()
}

/// Whether the stream's message `seq` is this log's event `seq` (same chain hash, so the same
/// history up to there).
async fn same_at(
    stream: &jetstream::stream::Stream,
    log: &Log<State>,
    seq: u64,
) -> anyhow::Result<bool> {
    let message = stream
        .get_raw_message(seq)
        .await
        .with_context(|| format!("read stream message {seq}"))?;
    let (hash, _) = split_stored(&message.payload)
        .ok_or_else(|| anyhow!("stream message {seq} is not a stored envelope"))?;
    same_hash(log, seq, hash).await
}

async fn same_hash(
    log: &Log<State>,
    seq: u64,
    hash: authkeys_events::Hash,
) -> anyhow::Result<bool> {
    let reader = log.clone();
    let at = Seq::new(seq).map_err(|_| anyhow!("seq 0"))?;
    let events = tokio::task::spawn_blocking(move || reader.read(at, 1)).await??;
    Ok(events.first().is_some_and(|ev| ev.hash == hash))
}

/// `<first seq> <fingerprint hex> <scope>` of the command whose last event is `last`.
fn parse_record(
    value: &str,
    last: u64,
) -> Option<(String, std::ops::RangeInclusive<u64>, [u8; 32])> {
    let mut parts = value.splitn(3, ' ');
    let first: u64 = parts.next()?.parse().ok()?;
    let mut fingerprint = [0u8; 32];
    hex::decode_to_slice(parts.next()?, &mut fingerprint).ok()?;
    let scope = parts.next()?;
    let scope_ok = !scope.is_empty() && scope.len() <= 128 && !scope.contains(char::is_whitespace);
    (scope_ok && first >= 1 && first <= last).then(|| (scope.to_owned(), first..=last, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_record_headers_parse_strictly() {
        let fp = "ab".repeat(32);
        assert_eq!(
            parse_record(&format!("3 {fp} Tabc"), 5),
            Some(("Tabc".to_owned(), 3..=5, [0xab; 32]))
        );
        for bad in [
            format!("6 {fp} Tabc"),
            format!("0 {fp} Tabc"),
            format!("3 {fp}"),
            format!("3 {fp} "),
            "3 abcd Tabc".to_owned(),
            "x".to_owned(),
        ] {
            assert_eq!(parse_record(&bad, 5), None, "{bad}");
        }
    }
}
