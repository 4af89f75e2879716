-- The `orders` table of the capture benchmark (B1), untracked: every
-- variant's table is made LIKE it (capture.sql; the portable edition's in a
-- database of its own, scripts/bench.sh).
CREATE TABLE orders_plain (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    total       numeric(12, 2) NOT NULL,
    currency    text NOT NULL DEFAULT 'EUR',
    items       int NOT NULL,
    note        text,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
