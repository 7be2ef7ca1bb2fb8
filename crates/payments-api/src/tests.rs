//! The contract's shapes and each error's answer.

use super::*;

/// What the HTTP layer answers for `error`.
fn answer(error: PaymentError) -> Problem {
    error
        .into_problem()
        .unwrap_or_else(|cause| Problem::from_unexpected(&cause))
}

#[test]
fn every_error_has_its_status_and_code() {
    let order_id = OrderId::generate();
    let cases = [
        (
            PaymentError::NotFound(PaymentId::generate()),
            404,
            "payment_not_found",
        ),
        (PaymentError::Declined { order_id }, 402, "payment_declined"),
        (
            PaymentError::GatewayUnavailable("timeout".into()),
            502,
            "payment_gateway_error",
        ),
        (
            PaymentError::InvalidToken {
                token: "x".into(),
                reason: "unknown token".into(),
            },
            422,
            "invalid_payment_token",
        ),
        (
            PaymentError::Pending {
                order_id,
                payment_id: PaymentId::generate(),
            },
            504,
            "payment_pending",
        ),
        (
            PaymentError::AlreadyPending {
                order_id,
                payment_id: PaymentId::generate(),
            },
            409,
            "payment_pending",
        ),
        (
            PaymentError::Invalid(vec![kernel::FieldError::new("amount", "must be > 0")]),
            422,
            "validation_failed",
        ),
        (
            PaymentError::Unexpected(anyhow::anyhow!("syntax error at or near SELECT")),
            500,
            "internal_error",
        ),
    ];
    for (error, status, code) in cases {
        let p = answer(error);
        assert_eq!((p.status, p.code.as_str()), (status, code), "{p}");
        assert!(!p.detail.contains("SELECT"), "{p}");
    }
    let gateway = answer(PaymentError::GatewayUnavailable("timeout".into()));
    assert!(gateway.detail.contains("safe to retry"), "{gateway}");
    let declined = answer(PaymentError::Declined { order_id });
    assert!(
        declined.detail.contains(&order_id.to_string()),
        "{declined}"
    );
}

#[test]
fn payments_and_events_render_as_the_contract_says() {
    let now = Utc::now();
    let payment = Payment {
        id: PaymentId::generate(),
        order_id: OrderId::generate(),
        amount: Money::parse("12.5").unwrap(),
        status: PaymentStatus::Refunded,
        created_at: now,
        updated_at: now,
    };
    let json = serde_json::to_value(&payment).unwrap();
    assert_eq!(json["status"], "refunded");
    assert_eq!(json["amount"], "12.50");
    assert_eq!(json["id"], payment.id.to_string());
    for status in PaymentStatus::ALL {
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    let declined = events::PaymentDeclined {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount: payment.amount,
        reason: "card declined".to_owned(),
    };
    let json = serde_json::to_value(&declined).unwrap();
    assert_eq!(json["order_id"], payment.order_id.to_string());
    assert_eq!(json["reason"], "card declined");
    assert_eq!(
        serde_json::from_value::<events::PaymentDeclined>(json).unwrap(),
        declined
    );
}
