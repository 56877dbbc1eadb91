//! What the command-service benchmarks share.

use authkeys_protocol::{GenerateKeyRequest, KeyReply, Reply, subject};
use serde_json::json;

/// Generates a reusable key over `authkeys.cmd.admin.generate-key` as `actor`, expiring in
/// `expiry_seconds` (the default when `None`); panics if refused. The key's secret text.
pub async fn generate_key(
    client: &async_nats::Client,
    command_id: &str,
    tailnet: &str,
    actor: &str,
    expiry_seconds: Option<u64>,
) -> String {
    let mut body = json!({
        "commandId": command_id,
        "tailnet": tailnet,
        "actor": actor,
        "capabilities": {"devices": {"create": {"reusable": true}}},
    });
    if let Some(secs) = expiry_seconds {
        body["expirySeconds"] = json!(secs);
    }
    let req: GenerateKeyRequest = serde_json::from_value(body).expect("request");
    let reply = client
        .request(
            subject::GENERATE_KEY,
            serde_json::to_vec(&req).expect("encodes").into(),
        )
        .await
        .expect("generate-key");
    match serde_json::from_slice::<Reply<KeyReply>>(&reply.payload).expect("reply") {
        Reply::Ok(k) => k.key.key.expect("the secret, in the create reply"),
        Reply::Err(e) => panic!("generate-key refused: {:?}", e.error),
    }
}
