//! `authkeys.cmd.admin.authorize-node`: approve or un-approve a device (R03).

use authkeys_domain::AdminOp;
use authkeys_protocol::AuthorizeNodeRequest;

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    super::device_op(ctx, req, AuthorizeNodeRequest::parse, |op| match op {
        AdminOp::AuthorizeNode { node_id, .. } => Some(node_id),
        _ => None,
    })
    .await
}
