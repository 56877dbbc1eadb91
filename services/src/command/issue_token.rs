//! `authkeys.cmd.admin.issue-token`: another API token for the actor. The token is derived from
//! `(tailnet, commandId)`, so a retry answers with the same token.

use authkeys_domain::wire::{self, IssueTokenRequest, Parsed};
use authkeys_domain::{AdminOp, NewToken};
use authkeys_events::Event;

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: IssueTokenRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (token_id, issued) = ctx
        .secrets
        .derived_api_token(&parsed.tailnet, &parsed.command_id);
    let lifetime_secs = i64::from(ctx.config.token_lifetime_days) * 86_400;
    let op = AdminOp::IssueToken {
        token: NewToken {
            token_id: token_id.clone(),
            secret_hash: issued.secret_hash,
            expires: ctx.now().plus_seconds(lifetime_secs),
        },
    };
    let parsed = Parsed {
        command_id: parsed.command_id,
        tailnet: parsed.tailnet,
        actor: parsed.actor,
        op,
    };
    let committed = super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    // The first result's expiry, also on a retry.
    let expires = committed
        .envelopes
        .iter()
        .find_map(|env| match &env.event {
            Event::ApiTokenIssued(e) if e.token_id == token_id => Some(e.expires),
            _ => None,
        })
        .ok_or_else(|| super::internal("read an issued token", "no ApiTokenIssued event"))?;
    super::ok(&wire::TokenReply {
        ok: wire::True,
        token_id: token_id.to_string(),
        api_key: issued.text,
        expires,
    })
}
