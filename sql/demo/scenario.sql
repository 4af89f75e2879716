-- The shop demo's scenario: a few orders and reviews, one of them rolled
-- back. Played by scripts/demo.sh and by compose.yaml's `shop` service:
--   psql -v pace=0.6 -f sql/demo/scenario.sql
-- (pace: seconds between steps). Each run places new orders; the grinder
-- (product 3) is out of stock until the restock below, so its first order
-- fails on the first run only.
\if :{?pace}
\else
\set pace 0.6
\endif
\set QUIET on

\echo '== Ada orders two espresso cups (order + stock + loyalty points, one transaction)'
SELECT shop.place_order(1, 1, 2) \g /dev/null
SELECT pg_sleep(:pace) \g /dev/null
\echo '== Grace orders a kettle'
SELECT shop.place_order(2, 2, 1) \g /dev/null
SELECT pg_sleep(:pace) \g /dev/null
\echo '== Edsger tries to order a grinder: out of stock, rolled back, no webhook'
\set ON_ERROR_STOP off
SELECT shop.place_order(3, 3, 1) \g /dev/null
\set ON_ERROR_STOP on
SELECT pg_sleep(:pace) \g /dev/null
\echo '== Reviews: a five-star and a one-star (the one-star also alerts support)'
INSERT INTO shop.reviews (product_id, customer_id, rating, body) VALUES (1, 1, 5, 'Perfect crema.');
SELECT pg_sleep(:pace) \g /dev/null
INSERT INTO shop.reviews (product_id, customer_id, rating, body) VALUES (2, 2, 1, 'Arrived dented.');
SELECT pg_sleep(:pace) \g /dev/null
\echo '== The grinder is back in stock'
SELECT shop.restock(3, 10) \g /dev/null
SELECT pg_sleep(:pace) \g /dev/null
\echo '== Edsger orders the grinder now; Ada leaves a two-star review'
SELECT shop.place_order(3, 3, 1) \g /dev/null
INSERT INTO shop.reviews (product_id, customer_id, rating, body) VALUES (3, 1, 2, 'Too loud.');
