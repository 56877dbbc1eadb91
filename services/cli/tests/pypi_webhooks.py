"""The PyPI `tailscale` client (1.0.0) manages webhooks against a running `authkeys serve` (R23).

Run by `webhooks.rs` (`r23_the_pypi_client_manages_webhooks`), unchanged, in two steps:
- `manage PORT TOKEN URL`: creates a webhook for URL, lists it, reads it, updates its
  subscriptions, queues a test event, rotates its secret; prints a JSON report (endpoint id, both
  secrets, requests).
- `delete PORT TOKEN ENDPOINT_ID`: deletes it, and checks that it is gone.
Every check that fails exits non-zero with a message naming it.
"""

import asyncio
import json
import sys

from pypi_client import Loopback, check
from tailscale import Tailscale
from tailscale.exceptions import TailscaleError


async def manage(port: int, token: str, url: str) -> None:
    session = Loopback(port)
    ts = Tailscale(tailnet="-", api_key=token, session=session)
    try:
        hook = await ts.create_webhook(
            endpoint_url=url, subscriptions=["nodeCreated", "userCreated"]
        )
        check(hook.secret is not None and hook.secret.startswith("tskey-webhook-"), f"create_webhook secret: {hook!r}")
        check(hook.endpoint_url == url, f"create_webhook url: {hook.endpoint_url}")
        check(hook.subscriptions == ["nodeCreated", "userCreated"], f"subscriptions: {hook.subscriptions}")
        check(hook.creator_login_name == "o@example.com", f"creator: {hook.creator_login_name}")
        check(hook.created is not None and hook.last_modified is not None, "created, lastModified")
        listed = await ts.webhooks()
        check([h.endpoint_id for h in listed] == [hook.endpoint_id], f"webhooks(): {listed!r}")
        check(all(h.secret is None for h in listed), "a list never shows a secret")
        one = await ts.webhook(hook.endpoint_id)
        check(one.endpoint_id == hook.endpoint_id and one.secret is None, f"webhook(): {one!r}")
        updated = await ts.update_webhook(hook.endpoint_id, subscriptions=["userCreated", "keyCreated"])
        check(updated.subscriptions == ["userCreated", "keyCreated"], f"update_webhook: {updated.subscriptions}")
        await ts.test_webhook(hook.endpoint_id)
        rotated = await ts.rotate_webhook_secret(hook.endpoint_id)
        check(rotated.secret is not None and rotated.secret != hook.secret, "rotate gives a new secret")
        try:
            await ts.webhook("wNoSuchHook")
            raise AssertionError("an unknown webhook must be 404")
        except TailscaleError:
            pass
        print(json.dumps({
            "endpointId": hook.endpoint_id,
            "secret": hook.secret,
            "rotatedSecret": rotated.secret,
            "requests": session.requests,
        }))
    finally:
        await session.close()


async def delete(port: int, token: str, endpoint_id: str) -> None:
    session = Loopback(port)
    ts = Tailscale(tailnet="-", api_key=token, session=session)
    try:
        await ts.delete_webhook(endpoint_id)
        check(await ts.webhooks() == [], "deleted: the list is empty")
        try:
            await ts.webhook(endpoint_id)
            raise AssertionError("a deleted webhook must be 404")
        except TailscaleError:
            pass
        print(json.dumps({"requests": session.requests}))
    finally:
        await session.close()


if __name__ == "__main__":
    try:
        step, port, token, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        asyncio.run(manage(port, token, arg) if step == "manage" else delete(port, token, arg))
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        sys.exit(1)
