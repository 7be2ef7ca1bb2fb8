//! The simulated gateway on its own, against its ledger in Postgres: what each token does
//! and answers, the idempotency key, `lookup`, refunds, and that the ledger is its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use kernel::{Money, PaymentId};
use payments::{ChargeState, GatewayError, GatewayReceipt, PaymentGateway, SimulatedGateway};
use payments_api::tokens;

use crate::{SLOW_ANSWER, money, simulated_gateway, spawn_app};

fn receipt(key: PaymentId) -> GatewayReceipt {
    GatewayReceipt {
        reference: format!("sim_ch_{}", key.as_uuid().simple()),
    }
}

/// Ledger rows under `key` with this outcome.
async fn ledger(app: &crate::TestApp, key: PaymentId, outcome: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{key}' AND outcome = '{outcome}'"
    ))
    .await
}

#[tokio::test]
async fn each_token_writes_its_outcome_and_answers_it() {
    let app = spawn_app().await;
    let gateway = &app.gateway;
    // (token, answer, ledger outcome (None: nothing written), answers only after the delay)
    type Case = (
        &'static str,
        fn(PaymentId) -> Result<GatewayReceipt, GatewayError>,
        Option<&'static str>,
        bool,
    );
    let cases: [Case; 6] = [
        (tokens::VISA, |k| Ok(receipt(k)), Some("charged"), false),
        (
            tokens::DECLINED,
            |_| Err(GatewayError::Declined("card declined".into())),
            Some("declined"),
            false,
        ),
        (
            tokens::GATEWAY_ERROR,
            |_| Err(GatewayError::Unavailable("simulated gateway error".into())),
            Some("failed"),
            false,
        ),
        (tokens::TIMEOUT, |k| Ok(receipt(k)), Some("charged"), true),
        (
            tokens::TIMEOUT_FAILED,
            |_| {
                Err(GatewayError::Unavailable(
                    "simulated gateway timeout".into(),
                ))
            },
            Some("failed"),
            true,
        ),
        (
            "tok_mastercard",
            |_| Err(GatewayError::InvalidToken("unknown token".into())),
            None,
            false,
        ),
    ];
    for (token, expected, outcome, slow) in cases {
        let key = PaymentId::generate();
        let started = Instant::now();
        let answer = gateway.charge(key, money("3.50"), token).await;
        let took = started.elapsed();
        assert_eq!(answer, expected(key), "{token}");
        if slow {
            assert!(took >= SLOW_ANSWER, "{token} answered after {took:?}");
        }
        let rows = app
            .count(&format!(
                "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{key}'"
            ))
            .await;
        match outcome {
            Some(outcome) => {
                assert_eq!(rows, 1, "{token}");
                assert_eq!(ledger(&app, key, outcome).await, 1, "{token}: {outcome}");
            }
            None => assert_eq!(rows, 0, "{token} writes nothing"),
        }
        let state = gateway.lookup(key).await.unwrap();
        let expected_state = match (outcome, expected(key)) {
            (Some("charged"), Ok(r)) => ChargeState::Charged(r),
            (Some("declined"), Err(GatewayError::Declined(why))) => ChargeState::Declined(why),
            (Some("failed"), Err(GatewayError::Unavailable(why))) => ChargeState::Failed(why),
            (None, _) => ChargeState::Unknown,
            other => panic!("{token}: no such case {other:?}"),
        };
        assert_eq!(state, expected_state, "{token}");
    }
    assert_eq!(gateway.charges(), 2, "tok_visa and tok_timeout took money");
    assert_eq!(
        gateway.lookup(PaymentId::generate()).await.unwrap(),
        ChargeState::Unknown
    );
}

#[tokio::test]
async fn the_same_key_answers_the_first_outcome_and_never_charges_twice() {
    let app = spawn_app().await;
    let gateway = &app.gateway;
    let paid = PaymentId::generate();
    for token in [
        tokens::VISA,
        tokens::VISA,
        tokens::DECLINED,
        tokens::GATEWAY_ERROR,
    ] {
        let answer = gateway.charge(paid, money("10"), token).await;
        assert_eq!(answer, Ok(receipt(paid)), "{token} after a charge");
    }
    assert_eq!(gateway.charges(), 1);
    assert_eq!(ledger(&app, paid, "charged").await, 1);

    let refused = PaymentId::generate();
    for token in [tokens::DECLINED, tokens::VISA] {
        let answer = gateway.charge(refused, money("10"), token).await;
        assert_eq!(
            answer,
            Err(GatewayError::Declined("card declined".into())),
            "{token} after a decline"
        );
    }
    assert_eq!(gateway.charges(), 1, "a declined key is never charged");

    // Another instance on the same ledger (another process, or ours after a crash) knows
    // the key too.
    let other = simulated_gateway(&app.db, SLOW_ANSWER);
    assert_eq!(
        other.charge(paid, money("10"), tokens::VISA).await,
        Ok(receipt(paid))
    );
    assert_eq!(other.charges(), 0);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway.ledger").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_under_one_key_charge_once() {
    let app = spawn_app().await;
    let key = PaymentId::generate();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let gateway = app.gateway.clone();
            tokio::spawn(async move { gateway.charge(key, money("2"), tokens::VISA).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(receipt(key)));
    }
    assert_eq!(app.gateway.charges(), 1);
    assert_eq!(ledger(&app, key, "charged").await, 1);
}

/// Polls `lookup(key)` until it answers something other than `Unknown`, for up to `within`.
async fn known(gateway: &SimulatedGateway, key: PaymentId, within: Duration) -> ChargeState {
    let deadline = Instant::now() + within;
    loop {
        let state = gateway.lookup(key).await.unwrap();
        if state != ChargeState::Unknown || Instant::now() > deadline {
            return state;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_already_in_the_ledger_while_the_caller_waits() {
    let app = spawn_app().await;
    // Slow enough that the look-ups below certainly happen before the answer.
    let gateway = Arc::new(simulated_gateway(&app.db, Duration::from_secs(30)));
    let mut keys = Vec::new();
    for (token, expected) in [
        (tokens::TIMEOUT, "charged"),
        (tokens::TIMEOUT_FAILED, "failed"),
    ] {
        let key = PaymentId::generate();
        keys.push(key);
        let slow = gateway.clone();
        let call =
            tokio::spawn(async move { slow.charge(key, money("4.20"), token).await.map(|_| ()) });
        let state = known(&gateway, key, Duration::from_secs(10)).await;
        assert!(!call.is_finished(), "{token} has not answered yet");
        let got = match state {
            ChargeState::Charged(r) => {
                assert_eq!(r, receipt(key));
                "charged"
            }
            ChargeState::Failed(_) => "failed",
            other => panic!("{token}: {other:?}"),
        };
        assert_eq!(got, expected, "{token}");
        call.abort();
    }
    // Counted in the ledger, not by `charges()`: the look-up can see the committed row
    // before the aborted call's task resumes to count it (a CI run saw 0).
    assert_eq!(
        ledger(&app, keys[0], "charged").await,
        1,
        "tok_timeout took money"
    );
    for outcome in ["charged", "refunded"] {
        assert_eq!(
            ledger(&app, keys[1], outcome).await,
            0,
            "tok_timeout_failed took none"
        );
    }
}

#[tokio::test]
async fn a_charge_is_refunded_once() {
    let app = spawn_app().await;
    let gateway = &app.gateway;
    let key = PaymentId::generate();
    gateway.charge(key, money("9"), tokens::VISA).await.unwrap();
    for _ in 0..3 {
        gateway.refund(key, money("9")).await.unwrap();
    }
    assert_eq!(gateway.refunds(), 1);
    assert_eq!(
        gateway.lookup(key).await.unwrap(),
        ChargeState::Refunded(receipt(key))
    );
    assert_eq!(ledger(&app, key, "refunded").await, 1);
    assert_eq!(
        gateway.charge(key, money("9"), tokens::VISA).await,
        Ok(receipt(key)),
        "the key's charge happened; it is not made again"
    );
    assert_eq!(gateway.charges(), 1);

    let declined = PaymentId::generate();
    gateway
        .charge(declined, money("9"), tokens::DECLINED)
        .await
        .unwrap_err();
    for nothing in [declined, PaymentId::generate()] {
        let err = gateway.refund(nothing, Money::parse("9").unwrap()).await;
        assert!(matches!(err, Err(GatewayError::NotCharged(_))), "{err:?}");
    }
    assert_eq!(gateway.refunds(), 1);
}

#[tokio::test]
async fn the_ledger_is_outside_the_payments_schema() {
    let app = spawn_app().await;
    app.gateway
        .charge(PaymentId::generate(), money("1"), tokens::VISA)
        .await
        .unwrap();
    let mut conn = kernel::db::connect(&app.pool).await.unwrap();
    let err = diesel::sql_query("SELECT count(*) FROM gateway.ledger")
        .execute(&mut conn)
        .await
        .expect_err("the payments role reads no ledger");
    assert!(
        err.to_string()
            .contains("permission denied for schema gateway"),
        "{err}"
    );
}
