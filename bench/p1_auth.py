"""P1: the auth step per request ÷ one bare RS256 verification of the same token.

The auth step is what `shared.http.pipeline` does before a handler runs: the subscription key
check, token validation into a `Principal`, and the endpoint's policy. The floor is
`cryptography`'s `RSAPublicKey.verify` alone, on a signature and signing input decoded in
advance. Both sides run over the same batch of tokens, in alternating order.

- First seen: every token in a batch is new to the validator (distinct users' tokens), so it
  is parsed, verified, checked claim by claim and remembered.
- Seen before: the batch was validated earlier; the validator answers from its memory of
  validated tokens.
"""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from bench.context import BenchContext
from bench.core import Figure, Result, paired, per_item, ratio_row
from shared.auth import Access, Policy, SigningKeys, SubscriptionKeys, TokenValidator, authorize

BATCH = 100
FIRST_SEEN_ROUNDS = 60
SEEN_BEFORE_ROUNDS = 60
WARMUP = 200

Bare = tuple[RSAPublicKey, bytes, bytes]


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _bare_inputs(keys: SigningKeys, tokens: list[str]) -> list[Bare]:
    snapshot = keys.current()
    inputs: list[Bare] = []
    for token in tokens:
        header, payload, signature = token.split(".")
        kid = json.loads(_b64(header))["kid"]
        inputs.append((snapshot.keys[kid], _b64(signature), f"{header}.{payload}".encode()))
    return inputs


def _bare_verify(item: Bare) -> None:
    key, signature, signed = item
    key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())


def run(ctx: BenchContext) -> Result:
    keys = ctx.signing_keys()
    settings = ctx.settings()
    subscriptions = SubscriptionKeys(settings.subscription_keys)
    subscription_key = next(iter(settings.subscription_keys.values()))[0]
    policy = Policy("customer", Access.READ)
    validator = TokenValidator(
        keys,
        tenant_id=settings.tenant_id,
        client_id=settings.api_client_id,
        clock_skew=settings.clock_skew_seconds,
        cache_size=settings.validated_token_cache_size,
    )

    def auth_step(token: str) -> None:
        subscriptions.check(subscription_key)
        authorize(validator.validate(token), policy)

    ctx.progress("P1: minting tokens")
    warmup = ctx.scaled(WARMUP, 20)
    first_rounds = ctx.scaled(FIRST_SEEN_ROUNDS, 3)
    total = warmup + first_rounds * BATCH
    tokens = ctx.user_tokens(total)
    bare = _bare_inputs(keys, tokens)
    warm_tokens, fresh = tokens[:warmup], tokens[warmup:]
    warm_bare, fresh_bare = bare[:warmup], bare[warmup:]
    for token, item in zip(warm_tokens, warm_bare, strict=True):
        auth_step(token)
        _bare_verify(item)

    def batch(r: int) -> slice:
        return slice(r * BATCH, (r + 1) * BATCH)

    ctx.progress("P1: tokens seen for the first time")
    verified = validator.verifications
    first = paired(
        lambda r: per_item(auth_step, fresh[batch(r)]),
        lambda r: per_item(_bare_verify, fresh_bare[batch(r)]),
        rounds=first_rounds,
    )
    assert validator.verifications - verified == len(fresh), "a first-seen token was not verified"

    ctx.progress("P1: tokens seen before")
    seen_tokens, seen_bare = warm_tokens[:BATCH], warm_bare[:BATCH]
    verified = validator.verifications
    seen = paired(
        lambda _: per_item(auth_step, seen_tokens),
        lambda _: per_item(_bare_verify, seen_bare),
        rounds=ctx.scaled(SEEN_BEFORE_ROUNDS, 3),
    )
    assert validator.verifications == verified, "a token seen before was verified again"

    return Result(
        [
            ratio_row(
                "P1", "auth step ÷ bare RS256 verify, token seen for the first time", first, 3.0
            ),
            ratio_row("P1", "auth step ÷ bare RS256 verify, token seen before", seen, 1.0),
        ]
    )


FIGURE = Figure("P1", "auth step per request ÷ one bare RS256 verify", run)
