DROP TABLE gateway.ledger;
