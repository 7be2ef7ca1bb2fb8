//! The order aggregate: its status machine, the events each transition publishes, and the
//! fence a confirm puts on it while it charges. Parse, don't validate: a `Reason` that
//! exists is valid.

use chrono::{DateTime, Utc};
use kernel::{Money, NewEvent, OrderId, PaymentId, UserId};
use orders_api::{OrderError, OrderStatus, Scope, events};
use uuid::Uuid;

/// A visible order, as commands see it.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: OrderId,
    /// Who placed it.
    pub(crate) user_id: UserId,
    pub(crate) status: OrderStatus,
    pub(crate) total: Money,
    pub(crate) payment_id: Option<PaymentId>,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) version: i64,
    /// Set while a confirm charges the (pending) order.
    pub(crate) fence: Option<Fence>,
}

/// A pending order is being paid for: confirm `attempt` charges it, and until `until` no
/// other confirm, no cancel and no expiry may touch it, so nobody is charged for an order
/// that is then refused (and of concurrent confirms exactly one succeeds). It is no new
/// version and no event: readers see a pending order. The confirm lifts it when it ends,
/// and every status change ends it; `until` only matters when the confirm crashed, and
/// outlasts any charge (it is longer than the gateway's deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub(crate) attempt: Uuid,
    pub(crate) until: DateTime<Utc>,
}

impl Order {
    /// Whether a command of `scope` reaches this order: a customer's reaches only their
    /// own orders; for anyone else's the answer is `NotFound`, exactly as for an unknown
    /// order (checked before anything else, the version included, so it tells nothing).
    pub(crate) fn within(&self, scope: Scope) -> Result<(), OrderError> {
        match scope {
            Scope::Own(user) if user != self.user_id => Err(OrderError::NotFound(self.id)),
            _ => Ok(()),
        }
    }

    /// A customer cancels their order while it is `pending` or `confirmed`; once it has
    /// shipped, only staff may (the goods are on their way: a return, not a click).
    pub(crate) fn may_cancel_as(&self, scope: Scope) -> Result<(), OrderError> {
        match (scope, self.status) {
            (Scope::Own(_), OrderStatus::Shipped) => Err(OrderError::Forbidden(
                "a shipped order can be cancelled only by support or admin".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a confirm is charging the order at `now`.
    pub(crate) fn being_paid(&self, now: DateTime<Utc>) -> bool {
        self.fence.is_some_and(|fence| fence.until > now)
    }

    /// Fences the order for a confirm that will charge it: it must be pending and not
    /// being paid already (`payment_pending`). The caller stores the fence.
    pub(crate) fn fence_for_confirm(
        &mut self,
        now: DateTime<Utc>,
        lasts: std::time::Duration,
    ) -> Result<Fence, OrderError> {
        if self.status != OrderStatus::Pending {
            return Err(OrderError::InvalidTransition {
                from: self.status,
                command: "confirm",
            });
        }
        if self.being_paid(now) {
            return Err(OrderError::PaymentInProgress(self.id));
        }
        let fence = Fence {
            attempt: Uuid::now_v7(),
            until: now + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::MAX),
        };
        self.fence = Some(fence);
        Ok(fence)
    }

    fn transition(&mut self, command: &'static str, to: OrderStatus) -> Result<(), OrderError> {
        use OrderStatus::*;
        let allowed = matches!(
            (self.status, to),
            (Pending, Confirmed)
                | (Confirmed, Shipped)
                | (Shipped, Delivered)
                | (Pending | Confirmed | Shipped, Cancelled)
        );
        if !allowed {
            return Err(OrderError::InvalidTransition {
                from: self.status,
                command,
            });
        }
        self.status = to;
        self.version += 1;
        Ok(())
    }

    pub(crate) fn confirm(&mut self, payment_id: PaymentId) -> Result<NewEvent, OrderError> {
        self.transition("confirm", OrderStatus::Confirmed)?;
        self.payment_id = Some(payment_id);
        let payload = events::OrderConfirmed {
            payment_id,
            amount: self.total,
        };
        Ok(NewEvent::new(
            events::ORDER_CONFIRMED,
            self.id,
            self.version,
            &payload,
        ))
    }

    pub(crate) fn ship(&mut self) -> Result<NewEvent, OrderError> {
        self.transition("ship", OrderStatus::Shipped)?;
        Ok(NewEvent::new(
            events::ORDER_SHIPPED,
            self.id,
            self.version,
            &events::StatusChanged {},
        ))
    }

    pub(crate) fn deliver(&mut self) -> Result<NewEvent, OrderError> {
        self.transition("deliver", OrderStatus::Delivered)?;
        Ok(NewEvent::new(
            events::ORDER_DELIVERED,
            self.id,
            self.version,
            &events::StatusChanged {},
        ))
    }

    /// Cancels; the event names the status it left, which tells whether it was paid. Not
    /// while a confirm is charging the order (`payment_pending`).
    pub(crate) fn cancel(
        &mut self,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> Result<NewEvent, OrderError> {
        if self.being_paid(now) {
            return Err(OrderError::PaymentInProgress(self.id));
        }
        let previous_status = self.status;
        self.transition("cancel", OrderStatus::Cancelled)?;
        self.cancel_reason = Some(reason.0.clone());
        let payload = events::OrderCancelled {
            reason: reason.0,
            previous_status,
        };
        Ok(NewEvent::new(
            events::ORDER_CANCELLED,
            self.id,
            self.version,
            &payload,
        ))
    }
}

/// A cancellation reason: [`kernel::input::line`] of at most [`Reason::MAX_CHARS`].
#[derive(Debug, Clone)]
pub(crate) struct Reason(String);

impl Reason {
    pub(crate) const MAX_CHARS: usize = 500;

    pub(crate) fn parse(raw: &str) -> Result<Reason, String> {
        kernel::input::line(raw, Self::MAX_CHARS).map(Reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> Order {
        Order {
            id: OrderId::generate(),
            user_id: UserId::generate(),
            status,
            total: Money::parse("10").unwrap(),
            payment_id: None,
            cancel_reason: None,
            version: 3,
            fence: None,
        }
    }

    #[test]
    fn scopes() {
        use OrderStatus::*;
        let mine = order(Shipped);
        let owner = Scope::Own(mine.user_id);
        let stranger = Scope::Own(UserId::generate());
        assert!(mine.within(Scope::Any).is_ok() && mine.within(owner).is_ok());
        assert!(matches!(mine.within(stranger), Err(OrderError::NotFound(id)) if id == mine.id));
        for status in OrderStatus::ALL {
            let o = Order {
                status,
                ..mine.clone()
            };
            assert!(o.may_cancel_as(Scope::Any).is_ok());
            let forbidden = matches!(o.may_cancel_as(owner), Err(OrderError::Forbidden(_)));
            assert_eq!(forbidden, status == Shipped, "{status:?}");
        }
    }

    #[test]
    fn status_machine() {
        use OrderStatus::*;
        type Command = fn(&mut Order) -> Result<NewEvent, OrderError>;
        let commands: [(&str, Command, OrderStatus); 4] = [
            ("confirm", |o| o.confirm(PaymentId::generate()), Confirmed),
            ("ship", Order::ship, Shipped),
            ("deliver", Order::deliver, Delivered),
            (
                "cancel",
                |o| o.cancel(Reason::parse("changed my mind").unwrap(), Utc::now()),
                Cancelled,
            ),
        ];
        let allowed = [
            (Pending, "confirm"),
            (Confirmed, "ship"),
            (Shipped, "deliver"),
            (Pending, "cancel"),
            (Confirmed, "cancel"),
            (Shipped, "cancel"),
        ];
        for from in OrderStatus::ALL {
            for (name, command, to) in &commands {
                let mut o = order(from);
                let result = command(&mut o);
                if allowed.contains(&(from, name)) {
                    let event = result.unwrap_or_else(|e| panic!("{from:?} {name}: {e}"));
                    assert_eq!((o.status, o.version, event.aggregate_version), (*to, 4, 4));
                } else {
                    assert!(
                        matches!(result, Err(OrderError::InvalidTransition { .. })),
                        "{from:?} {name}"
                    );
                    assert_eq!(
                        (o.status, o.version),
                        (from, 3),
                        "a refused command changes nothing"
                    );
                }
            }
        }
    }

    #[test]
    fn a_fenced_order_is_neither_fenced_again_nor_cancelled_until_the_fence_runs_out() {
        let now = Utc::now();
        let lasts = std::time::Duration::from_secs(30);
        let mut o = order(OrderStatus::Pending);
        let fence = o.fence_for_confirm(now, lasts).unwrap();
        assert_eq!(fence.until, now + chrono::Duration::seconds(30));
        assert!(matches!(
            o.fence_for_confirm(now, lasts),
            Err(OrderError::PaymentInProgress(_))
        ));
        let reason = || Reason::parse("changed my mind").unwrap();
        assert!(matches!(
            o.cancel(reason(), now),
            Err(OrderError::PaymentInProgress(_))
        ));
        assert_eq!((o.status, o.version), (OrderStatus::Pending, 3));
        let later = fence.until + chrono::Duration::milliseconds(1);
        assert!(!o.being_paid(later), "a crashed confirm's fence runs out");
        assert!(o.fence_for_confirm(later, lasts).unwrap().attempt != fence.attempt);
        let mut o = order(OrderStatus::Pending);
        o.fence_for_confirm(now, lasts).unwrap();
        o.cancel(reason(), later).unwrap();
        for from in OrderStatus::ALL
            .into_iter()
            .filter(|s| *s != OrderStatus::Pending)
        {
            assert!(matches!(
                order(from).fence_for_confirm(now, lasts),
                Err(OrderError::InvalidTransition { .. })
            ));
        }
    }

    #[test]
    fn reasons() {
        assert!(Reason::parse("  ").is_err());
        assert!(Reason::parse(&"r".repeat(501)).is_err());
        assert!(Reason::parse(&"r".repeat(500)).is_ok());
    }
}
