#!/bin/bash
# compose.yaml's database set-up, run once by the postgres image's
# entrypoint (/docker-entrypoint-initdb.d) when its volume is new: the
# extension, webhookd's and the console's roles, the shop schema
# (sql/demo/shop.sql) and the demo's three endpoints at the receiver
# containers, with the secrets the receivers verify with (both from
# compose.yaml's environment).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" --no-psqlrc \
  -v webhookd_password="$WEBHOOKD_PASSWORD" -v console_password="$CONSOLE_PASSWORD" \
  -v warehouse_secret="$WAREHOUSE_SECRET" -v crm_secret="$CRM_SECRET" -v support_secret="$SUPPORT_SECRET" <<'SQL'
\set QUIET on
CREATE EXTENSION pg_webhook;
-- The receivers are containers on the stack's private network, spoken to
-- in plain HTTP (webhookd allows their private addresses by its
-- environment in compose.yaml).
SELECT current_database() AS db \gset
ALTER DATABASE :"db" SET webhook.allow_http = on;
SET webhook.allow_http = on;
CREATE ROLE webhookd LOGIN PASSWORD :'webhookd_password';
SELECT webhook.grant_dispatcher('webhookd') \g /dev/null
CREATE ROLE console LOGIN PASSWORD :'console_password';
SELECT webhook.grant_manager('console') \g /dev/null
\i /shop/shop.sql
SELECT webhook.create_endpoint('http://warehouse:8080/orders', '{orders.insert}', :'warehouse_secret',
                               description => 'warehouse', ordered => true) \g /dev/null
SELECT webhook.create_endpoint('http://crm:8080/crm', '{reviews.insert,loyalty.*,products.back_in_stock}', :'crm_secret',
                               description => 'CRM') \g /dev/null
SELECT webhook.create_endpoint('http://support:8080/alerts', '{support.low_rating.*}', :'support_secret',
                               description => 'support alerts') \g /dev/null
SQL
