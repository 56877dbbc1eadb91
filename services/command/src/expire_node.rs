//! `authkeys.cmd.admin.expire-node`: expire a device's key now (R14).

use authkeys_domain::AdminOp;
use authkeys_protocol::ExpireNodeRequest;

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    super::device_op(ctx, req, ExpireNodeRequest::parse, |op| match op {
        AdminOp::ExpireNode { node_id } => Some(node_id),
        _ => None,
    })
    .await
}
