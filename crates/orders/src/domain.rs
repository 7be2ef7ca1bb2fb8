//! The order aggregate: its status machine and the events each transition publishes.
//! Parse, don't validate: a `Reason` that exists is valid.

use kernel::{Money, NewEvent, OrderId, PaymentId};
use orders_api::{OrderError, OrderStatus, events};

/// A visible order, as commands see it.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: OrderId,
    pub(crate) status: OrderStatus,
    pub(crate) total: Money,
    pub(crate) payment_id: Option<PaymentId>,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) version: i64,
}

impl Order {
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

    /// Cancels; the event names the status it left, which tells whether it was paid.
    pub(crate) fn cancel(&mut self, reason: Reason) -> Result<NewEvent, OrderError> {
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

/// A cancellation reason: 1 to 500 characters after trimming.
#[derive(Debug, Clone)]
pub(crate) struct Reason(String);

impl Reason {
    pub(crate) fn parse(raw: &str) -> Result<Reason, String> {
        let reason = raw.trim();
        let chars = reason.chars().count();
        if chars == 0 || chars > 500 {
            return Err(format!(
                "must be 1 to 500 characters after trimming, got {chars}"
            ));
        }
        Ok(Reason(reason.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> Order {
        Order {
            id: OrderId::generate(),
            status,
            total: Money::parse("10").unwrap(),
            payment_id: None,
            cancel_reason: None,
            version: 3,
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
                |o| o.cancel(Reason::parse("changed my mind").unwrap()),
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
    fn reasons() {
        assert!(Reason::parse("  ").is_err());
        assert!(Reason::parse(&"r".repeat(501)).is_err());
        assert!(Reason::parse(&"r".repeat(500)).is_ok());
    }
}
