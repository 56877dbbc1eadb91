//! Tailnet lock (R04): `authkeys.cmd.lock.init`, `.sign`, `.disable` and `.status`, sent by
//! `authkeys lock …` with the acting user's API token.
//!
//! The token is checked against the log's tokens (`authenticate_token`, the same function
//! `decide` runs again in the writer, so a token revoked in between is refused there). The
//! actor recorded is that user. Every lock command answers the lock's status after it.

use authkeys_domain::lock::authenticate_token;
use authkeys_domain::{Command, Rejection};
use authkeys_events::{Actor, ActorType, Hash, TailnetId, TokenId, UserId};
use authkeys_log::Idempotency;
use authkeys_protocol::ErrorReply;
use authkeys_protocol::lock::{
    LockDisableRequest, LockInitRequest, LockSignRequest, LockStatus, LockStatusRequest, ParsedLock,
};

use super::{Answer, Ctx, Request};

/// `authkeys.cmd.lock.init`.
pub(super) async fn init(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: LockInitRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    append(ctx, req, super::fingerprint(ctx, req, &dto), parsed).await
}

/// `authkeys.cmd.lock.sign`.
pub(super) async fn sign(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: LockSignRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    append(ctx, req, super::fingerprint(ctx, req, &dto), parsed).await
}

/// `authkeys.cmd.lock.disable`.
pub(super) async fn disable(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: LockDisableRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    append(ctx, req, super::fingerprint(ctx, req, &dto), parsed).await
}

/// `authkeys.cmd.lock.status`.
pub(super) async fn status(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: LockStatusRequest = super::decode(req)?;
    let (tailnet, _) = authenticate(ctx, &dto.parse()).await?;
    answer(ctx, tailnet).await
}

/// The token's id and presented hash, or the refusal of a malformed token (the same as a
/// wrong one).
fn presented(ctx: &Ctx, parsed: &ParsedLock) -> Result<(TokenId, Hash), ErrorReply> {
    parsed
        .token
        .as_ref()
        .and_then(|p| {
            Some((
                TokenId::parse(p.id.as_str()).ok()?,
                p.hash(ctx.mint.hashing_key()),
            ))
        })
        .ok_or_else(|| {
            ErrorReply::of(&Rejection::Forbidden(
                "invalid, expired or revoked API token".into(),
            ))
        })
}

/// The tailnet and user the request's token acts for, at the log head.
async fn authenticate(ctx: &Ctx, parsed: &ParsedLock) -> Result<(TailnetId, UserId), ErrorReply> {
    let (token_id, hash) = presented(ctx, parsed)?;
    let now = ctx.now();
    ctx.log
        .query(move |s| {
            authenticate_token(s, &token_id, &hash, now)
                .map(|(tid, _, user, _)| (tid.clone(), user.clone()))
        })
        .await
        .map_err(super::refusal)?
        .map_err(|r| ErrorReply::of(&r))
}

async fn append(ctx: &Ctx, req: &Request<'_>, fingerprint: [u8; 32], parsed: ParsedLock) -> Answer {
    let (tailnet, user) = authenticate(ctx, &parsed).await?;
    let (token_id, presented_hash) = presented(ctx, &parsed)?;
    let (Some(command_id), Some(op)) = (parsed.request_id, parsed.op) else {
        return Err(super::internal("parse a lock request", req.subject));
    };
    super::record_ids(&command_id, Some(&tailnet));
    let actor = Actor {
        actor_type: ActorType::User,
        id: user.to_string(),
        login_name: None,
    };
    let command = Command::Lock {
        token_id,
        presented_hash,
        op,
    };
    super::append(
        ctx,
        Idempotency::Recorded,
        tailnet.as_str(),
        command_id,
        actor,
        fingerprint,
        command,
    )
    .await
    .map_err(super::refusal)?;
    answer(ctx, tailnet).await
}

async fn answer(ctx: &Ctx, tailnet: TailnetId) -> Answer {
    let status = super::view(
        ctx,
        move |s| s.tailnet(&tailnet).map(|t| LockStatus::of(&tailnet, t)),
        "tailnet not found",
    )
    .await?;
    super::ok(&status)
}
