//! `authkeys.cmd.admin.revoke-token`: revoke an API token (R18): the actor's own, or any of the
//! tailnet's by an Owner, Admin or IT admin. The gateway checks every request's token at the
//! log head, so the token answers 401 from the next request on.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, RevokeTokenRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: RevokeTokenRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let AdminOp::RevokeToken { token_id } = &parsed.op else {
        return Err(super::internal("parse revoke-token", "unexpected op"));
    };
    let token_id = token_id.to_string();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    super::ok(&wire::RevokedTokenReply {
        ok: wire::True,
        token_id,
    })
}
