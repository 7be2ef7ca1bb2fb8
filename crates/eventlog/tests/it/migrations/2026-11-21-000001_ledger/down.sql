DROP TABLE ledger.applied;
