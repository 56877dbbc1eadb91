//! `authkeys.cmd.admin.set-tags`: set a device's tags; its key expiry is unchanged (R15).

use authkeys_domain::AdminOp;
use authkeys_protocol::SetTagsRequest;

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    super::device_op(ctx, req, SetTagsRequest::parse, |op| match op {
        AdminOp::SetTags { node_id, .. } => Some(node_id),
        _ => None,
    })
    .await
}
