DROP TABLE payments.payments;
