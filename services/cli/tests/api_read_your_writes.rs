//! Read-your-writes under concurrency (SPEC §5): 32 clients each create a key and at once get
//! it, in a loop; a read that starts after the create's response must see it — never a 404.

mod api_support;

use anyhow::{Context, ensure};
use api_support::Stack;
use serde_json::json;

/// Concurrent clients.
const CLIENTS: usize = 32;
/// Create-then-get rounds per client.
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_32_clients_create_then_get_never_404() -> anyhow::Result<()> {
    let s = std::sync::Arc::new(Stack::start().await?);
    let mut tasks = tokio::task::JoinSet::new();
    // One admin per client: the rate limit is per token, and each client's keys are its own.
    let mut tokens = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        tokens.push(
            s.add_user(&format!("admin{i}@example.com"), "admin")
                .await?
                .1,
        );
    }
    for t in tokens {
        let s = std::sync::Arc::clone(&s);
        tasks.spawn(async move {
            for _ in 0..ROUNDS {
                let key = s.create_key(&t, json!({})).await?;
                let id = key["id"].as_str().context("id")?;
                let got = s
                    .call(
                        "GET",
                        &format!("/api/v2/tailnet/-/keys/{id}"),
                        Some(&t),
                        None,
                    )
                    .await?;
                ensure!(
                    got.status == 200,
                    "read after write: {} {}",
                    got.status,
                    got.body
                );
                ensure!(got.body["id"] == id);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let s = std::sync::Arc::into_inner(s).context("every client finished")?;
    s.stop().await
}
