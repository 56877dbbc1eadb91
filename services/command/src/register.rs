//! `authkeys.cmd.register`: a registrar forwards a node's `--authkey` (R01–R06, R10, R16).
//!
//! parse → hash the presented secret (always) → check it against the key directory, without the
//! writer ([`crate::directory`]) → a usable key's registration is decided by the writer; any
//! other is a failure, counted by the rate limits and answered at once. Every key failure is the
//! one `invalid_key` reply (or `rate_limited` once its registrar, key id or all failures are over
//! their limits), built in one place. A correct key is never limited (R22).

use authkeys_domain::State;
use authkeys_domain::{Command, Rejection};
use authkeys_events::{Actor, ActorType, Event, NodeId, TailnetId};
use authkeys_log::{AppendError, Committed};
use authkeys_protocol::{self as wire, ErrorCode, ErrorReply, RegisterRequest};

use super::{Answer, Ctx, REGISTRAR_SCOPE, Request};
use crate::directory::Verdict;

/// The reply to a registration refused by a rate limit.
const RATE_LIMITED: &str = "too many failed registrations; retry later";

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: RegisterRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    super::record_ids(&parsed.request_id, None);
    let key_id = parsed.auth_key.key_id();
    // A malformed key names no key: only its registrar's bucket (and the global one) counts it.
    let limit_key = parsed
        .auth_key
        .is_well_formed()
        .then(|| key_id.as_str().to_owned());
    let presented_hash = parsed.auth_key.hash(ctx.mint.hashing_key());
    let verdict = ctx
        .directory
        .check(&ctx.log, &key_id, &presented_hash, ctx.now())
        .map_err(|e| super::internal("check a key against the directory", e))?;
    let failure = || {
        let limited = ctx.limits.is_blocked(req.registrar, limit_key.as_deref())
            | ctx.limits.fail(req.registrar, limit_key.as_deref());
        if limited {
            tracing::info!(registrar = req.registrar, key_id = %key_id, "failed registrations rate-limited");
            ErrorReply::new(ErrorCode::RateLimited, RATE_LIMITED)
        } else {
            ErrorReply::of(&Rejection::InvalidKey)
        }
    };
    match verdict {
        Verdict::Usable => {}
        // A retry of a registration that succeeded (its one-off key is spent since) is answered
        // from its first result by the writer.
        Verdict::Unusable
            if ctx
                .log
                .was_committed(REGISTRAR_SCOPE, &parsed.request_id)
                .map_err(|e| super::internal("look up a request id", e))? => {}
        Verdict::Unusable | Verdict::Wrong => return Err(failure()),
    }
    let new_node_id =
        crate::mint::random_node_id().map_err(|e| super::internal("draw a node id", e))?;
    let node_key = parsed.node_key.clone();
    let command = Command::Register {
        key_id: key_id.clone(),
        presented_hash,
        node_key: parsed.node_key,
        hostname: parsed.hostname,
        os: parsed.os,
        new_node_id,
        presigned: parsed.presigned,
    };
    let actor = Actor {
        actor_type: ActorType::Registrar,
        id: req.registrar.to_owned(),
        login_name: None,
    };
    let fingerprint = super::fingerprint(ctx, req, &dto);
    // The device is read from the writer's state right after this registration's events, in
    // the same batch, so the reply needs no second trip through the writer's queue.
    let dns = ctx.config.dns.clone();
    let mut cmd = super::log_command(
        REGISTRAR_SCOPE,
        parsed.request_id,
        actor,
        fingerprint,
        command,
    );
    cmd.answer = Some(Box::new(move |state: &State| {
        let device = wire::device_by_node_key(state, &node_key, &dns)?;
        Some(std::sync::Arc::new(device) as std::sync::Arc<dyn std::any::Any + Send + Sync>)
    }));
    match super::submit(ctx, authkeys_log::Idempotency::Recorded, cmd).await {
        Ok(committed) => match committed
            .answer
            .as_ref()
            .and_then(|a| a.downcast_ref::<wire::Device>())
        {
            Some(device) => super::ok(&wire::DeviceReply {
                ok: wire::True,
                device: device.clone(),
            }),
            // A retry answered from the first result: read the device now.
            None => answer(ctx, &committed).await,
        },
        // The key was usable a moment ago: another registration won its race (R01), or the
        // node key belongs elsewhere.
        Err(AppendError::Rejected(Rejection::InvalidKey)) => Err(failure()),
        Err(e) => Err(super::refusal(e)),
    }
}

/// The registered (or re-authenticated) node, from the command's events.
fn node_of(committed: &Committed) -> Option<(TailnetId, NodeId)> {
    committed.envelopes.iter().find_map(|env| match &env.event {
        Event::NodeRegistered(e) => Some((env.tailnet.clone(), e.node_id.clone())),
        Event::NodeReauthenticated(e) => Some((env.tailnet.clone(), e.node_id.clone())),
        _ => None,
    })
}

async fn answer(ctx: &Ctx, committed: &Committed) -> Answer {
    let (tailnet, node_id) = node_of(committed)
        .ok_or_else(|| super::internal("read a registration's node", "no node event"))?;
    super::device_reply(ctx, tailnet, node_id).await
}
