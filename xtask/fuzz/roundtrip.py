"""One flow through a client generated from the served document (`cargo xtask fuzz`,
xtask/src/fuzz/mod.rs): a customer registers and logs in, the admin creates a product,
the customer places an order for it, confirms it, and reads it back through the query
API, waiting for the confirm's version with `min_version`. Every call goes through the
generated functions and models only; the typed answers are checked field by field. Exits
non-zero, naming the step, on any difference; an import error means the generated client
does not load.

Environment: EMPORIUM_URL (the server), EMPORIUM_ADMIN_ACCESS_TOKEN (an admin's access
token). PYTHONPATH holds the generated package `emporium_client`.
"""

import os
import sys
import uuid

from emporium_client import AuthenticatedClient, Client
from emporium_client.api.auth import token
from emporium_client.api.orders import confirm_order, get_order, place_order
from emporium_client.api.products import create_product
from emporium_client.api.users import get_me, register_user
from emporium_client.models import (
    Accepted,
    ConfirmOrder,
    NewOrder,
    NewOrderLine,
    NewProduct,
    NewUser,
    OrderStatus,
    OrderView,
    PasswordGrant,
    PasswordGrantGrantType,
    Product,
    TokenPair,
    User,
)


def answered(step, response, status, model):
    """The parsed answer of `step`, which must be `status` with a `model`."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"roundtrip: {step} answered {response.status_code} "
            f"{response.content[:500]!r}, not {status} {model.__name__}"
        )
    return response.parsed


def check(step, got, expected):
    if got != expected:
        sys.exit(f"roundtrip: {step}: got {got!r}, expected {expected!r}")


def main():
    base = os.environ["EMPORIUM_URL"]
    admin = AuthenticatedClient(base_url=base, token=os.environ["EMPORIUM_ADMIN_ACCESS_TOKEN"])
    anonymous = Client(base_url=base)

    email = f"roundtrip-{uuid.uuid4().hex[:12]}@fuzz.example"
    password = "a generated client's password"
    new_user = NewUser(email=email, name="  Round Trip  ", password=password)
    user = answered("register", register_user.sync_detailed(client=anonymous, body=new_user), 201, User)
    check("register: name", user.name, "Round Trip")
    check("register: roles", user.roles, [])

    grant = PasswordGrant(grant_type=PasswordGrantGrantType.PASSWORD, email=email, password=password)
    pair = answered("log in", token.sync_detailed(client=anonymous, body=grant), 200, TokenPair)
    customer = AuthenticatedClient(base_url=base, token=pair.access_token)
    me = answered("GET /users/me", get_me.sync_detailed(client=customer), 200, User)
    check("GET /users/me: id", me.id, user.id)

    new_product = NewProduct(name="Round-trip mug", price="9.90", description="Stoneware", stock=5)
    product = answered("create product", create_product.sync_detailed(client=admin, body=new_product), 201, Product)
    check("create product: price", product.price, "9.90")

    order = NewOrder(items=[NewOrderLine(product_id=product.id, quantity=2)])
    placed = answered(
        "place order",
        place_order.sync_detailed(client=customer, body=order, idempotency_key=f"roundtrip-{user.id}"),
        202,
        Accepted,
    )
    check("place order: version", placed.version, 1)

    confirmed = answered(
        "confirm order",
        confirm_order.sync_detailed(
            placed.order_id, client=customer, body=ConfirmOrder(payment_token="tok_visa"), if_match='"1"'
        ),
        202,
        Accepted,
    )
    check("confirm order: status", confirmed.status, OrderStatus.CONFIRMED)

    view = answered(
        "read the order",
        get_order.sync_detailed(placed.order_id, client=customer, min_version=confirmed.version),
        200,
        OrderView,
    )
    check("read the order: status", view.status, OrderStatus.CONFIRMED)
    check("read the order: version", view.version, confirmed.version)
    check("read the order: total", view.total, "19.80")
    check("read the order: user", (view.user_id, view.user_name, view.user_email), (user.id, "Round Trip", email))
    check("read the order: lines", [(i.product_id, i.quantity, i.subtotal) for i in view.items], [(product.id, 2, "19.80")])
    check("read the order: cancel_reason", view.cancel_reason, None)
    print(f"roundtrip: order {view.id} placed, confirmed and read back through the generated client")


main()
