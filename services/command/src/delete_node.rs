//! `authkeys.cmd.admin.delete-node`: delete a device, which is how a node is de-authorized (R11).

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, DeleteNodeRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: DeleteNodeRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let AdminOp::DeleteNode { node_id } = &parsed.op else {
        return Err(super::internal("parse delete-node", "unexpected op"));
    };
    let node_id = node_id.to_string();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    super::ok(&wire::DeletedReply {
        ok: wire::True,
        node_id,
    })
}
