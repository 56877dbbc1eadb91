//! `authkeys.cmd.register`: a registrar forwards a node's `--authkey` (R01–R06, R10, R16).
//!
//! parse → rate-limit check → hash the presented secret (always) → decide (always) → answer the
//! device. Every key failure is the one `invalid_key` reply, built in one place.

use authkeys_domain::{Command, Rejection};
use authkeys_events::{Actor, ActorType, Event, NodeId, TailnetId};
use authkeys_log::{AppendError, Committed};
use authkeys_protocol::{self as wire, ErrorCode, ErrorReply, RegisterRequest};

use super::{Answer, Ctx, REGISTRAR_SCOPE, Request};

/// The reply to a registration refused by a rate limit.
const RATE_LIMITED: &str = "too many failed registrations; retry later";

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: RegisterRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    super::record_ids(&parsed.request_id, None);
    let key_id = parsed.auth_key.key_id();
    // A malformed key names no key: only its registrar's bucket counts it.
    let limit_key = parsed
        .auth_key
        .is_well_formed()
        .then(|| key_id.as_str().to_owned());
    if ctx.limits.is_blocked(req.registrar, limit_key.as_deref()) {
        return Err(ErrorReply::new(ErrorCode::RateLimited, RATE_LIMITED));
    }
    let presented_hash = parsed.auth_key.hash(ctx.secrets.hashing_key());
    let new_node_id =
        crate::secrets::random_node_id().map_err(|e| super::internal("draw a node id", e))?;
    let command = Command::Register {
        key_id: key_id.clone(),
        presented_hash,
        node_key: parsed.node_key,
        hostname: parsed.hostname,
        os: parsed.os,
        new_node_id,
    };
    let actor = Actor {
        actor_type: ActorType::Registrar,
        id: req.registrar.to_owned(),
        login_name: None,
    };
    let fingerprint = super::fingerprint(ctx, req, &dto);
    match super::append(
        ctx,
        REGISTRAR_SCOPE,
        parsed.request_id,
        actor,
        fingerprint,
        command,
    )
    .await
    {
        Ok(committed) => answer(ctx, &committed).await,
        Err(AppendError::Rejected(Rejection::InvalidKey)) => {
            if ctx.limits.fail(req.registrar, limit_key.as_deref()) {
                tracing::info!(registrar = req.registrar, key_id = %key_id, "failed registrations rate-limited");
                return Err(ErrorReply::new(ErrorCode::RateLimited, RATE_LIMITED));
            }
            Err(ErrorReply::of(&Rejection::InvalidKey))
        }
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
    let missing = format!("device {node_id} not found");
    let device = super::view(
        ctx,
        move |s| wire::device_view(s, &tailnet, &node_id),
        &missing,
    )
    .await?;
    super::ok(&wire::DeviceReply {
        ok: wire::True,
        device,
    })
}
