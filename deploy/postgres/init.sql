-- runs once, on the first start of the postgresql service: the ledger's own database
CREATE DATABASE hedgeflow_ledger;
