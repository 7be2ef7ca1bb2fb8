"""schemathesis hooks of `cargo xtask fuzz` (xtask/src/fuzz/mod.rs).

Generated ids are random UUIDs, which name nothing: a request on one order, user,
product or payment would only ever answer 404. In half of the positive cases these hooks
put an id the seed made (target/fuzz/seed.json) where the generated one was a valid UUID,
so that the rest of the request reaches the code behind the 404. Negative cases, and ids
that are not UUIDs, are left as generated: they must be refused as they are.
"""

import json
import os
import random
import uuid

import schemathesis

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


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(ctx, case):
    if not _positive(case):
        return case
    path = case.operation.path
    params = case.path_parameters or {}
    if "id" in params and _is_uuid(params["id"]) and random.random() < 0.5:
        for prefix, kind in KINDS:
            if path.startswith(prefix):
                params["id"] = random.choice(SEED[kind])
                break
    query = case.query or {}
    if "order_id" in query and _is_uuid(query["order_id"]) and random.random() < 0.5:
        query["order_id"] = random.choice(SEED["orders"])
    body = case.body
    if path == "/commands/orders" and isinstance(body, dict):
        # Each line another seeded product (the same product twice is refused), and the
        # order for a seeded customer or the caller.
        products = random.sample(SEED["order_products"], len(SEED["order_products"]))
        for line, product in zip(body.get("items") or [], products):
            if isinstance(line, dict) and _is_uuid(line.get("product_id")):
                line["product_id"] = product
        if _is_uuid(body.get("user_id")):
            body["user_id"] = random.choice(SEED["users"])
    return case
