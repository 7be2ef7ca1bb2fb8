"""schemathesis hooks of `cargo xtask fuzz` (xtask/src/fuzz/mod.rs).

They change only schema-valid (positive) requests, into other schema-valid requests, just
before they are sent (schemathesis re-classifies a changed request); negative ones go as
generated, to be refused as they are.

- Ids: a generated UUID names nothing, so a request on one order, user, product or
  payment would only ever answer 404. Half of the time a valid UUID in a path (and in
  `GET /payments?order_id=`) becomes an id the seed made (target/fuzz/seed.json), so the
  rest of the request reaches the code behind the 404. A new order's lines get distinct
  seeded products and its `user_id` a seeded customer: an unknown product or user is a
  `422` the document states but cannot rule out by shape.
- A confirm pays with `tok_visa`: which tokens the payment gateway knows is the gateway's
  business (any other well-formed token is `422 invalid_payment_token`, as documented).
- `PATCH /users/{id}` of one's own email or password needs `current_password` (`422`
  without it); for staff changing another's email it is not needed: a rule of who calls,
  which the document states in words. A change of email or password gets a (wrong)
  `current_password`, answered `403` for oneself and ignored for another.
- Headers: schemathesis's coverage phase draws header values from `[A-Za-z0-9]` only
  (`ensure_valid_headers_schema`), so for a header whose pattern needs a quote (`If-Match:
  "3"`, `If-None-Match`) it sends one that does not match (`0`) and still calls the request
  valid. Such a header is dropped from a request called valid, which then is.
- Lists: `page x page_size` is at most 10,000 (documented; a rule between two parameters
  that JSON Schema cannot state), so `page` is lowered to keep to it.
"""

import json
import os
import random
import re
import uuid

import schemathesis

RNG = random.Random(1)

with open(os.environ["FUZZ_SEED"], encoding="utf-8") as file:
    SEED = json.load(file)

# Which seeded ids a path's `{id}` names.
KINDS = (
    ("/users/", "users"),
    ("/products/", "products"),
    ("/commands/orders/", "orders"),
    ("/queries/orders/", "orders"),
    ("/payments/", "payments"),
)
MAX_DEPTH = 10_000


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError):
        return False
    return True


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _int(value):
    try:
        return int(value)
    except (ValueError, TypeError):
        return None


def _misdrawn_headers(case):
    """The headers of `case` that do not match their declared pattern."""
    headers = case.headers or {}
    for param in case.operation.headers:
        pattern = (param.definition.get("schema") or {}).get("pattern")
        value = headers.get(param.name)
        if pattern and isinstance(value, str) and not re.search(pattern, value):
            yield param.name


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if not _positive(case):
        return
    for name in list(_misdrawn_headers(case)):
        del case.headers[name]
    path = case.operation.path
    params = case.path_parameters
    if params and _is_uuid(params.get("id")) and RNG.random() < 0.5:
        for prefix, kind in KINDS:
            if path.startswith(prefix):
                params["id"] = RNG.choice(SEED[kind])
                break
    query = case.query
    if query:
        if _is_uuid(query.get("order_id")) and RNG.random() < 0.5:
            query["order_id"] = RNG.choice(SEED["orders"])
        page, size = _int(query.get("page")), _int(query.get("page_size", 20))
        if page is not None and size and page * size > MAX_DEPTH:
            query["page"] = max(1, MAX_DEPTH // size)
    body = case.body
    if not isinstance(body, dict):
        return
    if path == "/commands/orders":
        products = RNG.sample(SEED["order_products"], len(SEED["order_products"]))
        for line, product in zip(body.get("items") or [], products):
            if isinstance(line, dict) and _is_uuid(line.get("product_id")):
                line["product_id"] = product
        if _is_uuid(body.get("user_id")):
            body["user_id"] = RNG.choice(SEED["users"])
    if path == "/users/{id}" and case.method.upper() == "PATCH":
        changes_secret = body.get("email") is not None or body.get("password") is not None
        if changes_secret and body.get("current_password") is None:
            body["current_password"] = "not the current password"
    if path.endswith("/confirm") and isinstance(body.get("payment_token"), str):
        body["payment_token"] = "tok_visa"
