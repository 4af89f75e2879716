-- The shop demo: a small real shop whose tables become signed webhooks.
-- Loaded by scripts/demo.sh into a database that has pg_webhook installed.

CREATE SCHEMA shop;
SET search_path = shop, public;

CREATE TABLE customers (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL,
    email          text NOT NULL UNIQUE,
    loyalty_points int NOT NULL DEFAULT 0
);

CREATE TABLE products (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock int NOT NULL DEFAULT 0 CHECK (stock >= 0)
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    product_id  bigint NOT NULL REFERENCES products,
    quantity    int NOT NULL CHECK (quantity > 0),
    total       numeric(10, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'placed',
    placed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reviews (
    id          bigserial PRIMARY KEY,
    product_id  bigint NOT NULL REFERENCES products,
    customer_id bigint NOT NULL REFERENCES customers,
    rating      int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Placing an order: the order row, the stock, the loyalty points and the
-- loyalty event commit together, or not at all.
CREATE FUNCTION place_order(p_customer bigint, p_product bigint, p_quantity int) RETURNS bigint
LANGUAGE plpgsql SET search_path = shop, pg_catalog AS $$
DECLARE o orders; points int;
BEGIN
  UPDATE products SET stock = stock - p_quantity WHERE id = p_product AND stock >= p_quantity;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'product % is out of stock', p_product USING ERRCODE = 'check_violation';
  END IF;
  INSERT INTO orders (customer_id, product_id, quantity, total)
  SELECT p_customer, p_product, p_quantity, price * p_quantity FROM products WHERE id = p_product
  RETURNING * INTO o;
  points := floor(o.total)::int;
  UPDATE customers SET loyalty_points = loyalty_points + points WHERE id = p_customer;
  PERFORM webhook.emit('loyalty.points_earned',
                       jsonb_build_object('customer_id', p_customer, 'order_id', o.id, 'points', points,
                                          'balance', (SELECT loyalty_points FROM customers WHERE id = p_customer)),
                       'customer:' || p_customer);
  RETURN o.id;
END $$;

-- Restocking: customers waiting for an item hear when it is back.
CREATE FUNCTION restock(p_product bigint, p_quantity int) RETURNS void
LANGUAGE plpgsql SET search_path = shop, pg_catalog AS $$
DECLARE before int;
BEGIN
  SELECT stock INTO before FROM products WHERE id = p_product FOR UPDATE;
  UPDATE products SET stock = stock + p_quantity WHERE id = p_product;
  IF before = 0 AND p_quantity > 0 THEN
    PERFORM webhook.emit('products.back_in_stock',
                         (SELECT jsonb_build_object('product_id', id, 'name', name, 'stock', stock)
                            FROM products WHERE id = p_product),
                         'product:' || p_product);
  END IF;
END $$;

-- Capture: new orders (and their status changes), every review, and the
-- low ratings a second time, as support alerts.
SELECT webhook.track('orders', '{insert,update}');
SELECT webhook.track('reviews', '{insert}');
SELECT webhook.track('reviews', '{insert}', 'support.low_rating', 'NEW.rating <= 2',
                     '{id,product_id,customer_id,rating,body}');

INSERT INTO customers (name, email) VALUES
  ('Ada Lovelace', 'ada@example.com'),
  ('Grace Hopper', 'grace@example.com'),
  ('Edsger Dijkstra', 'edsger@example.com');
INSERT INTO products (name, price, stock) VALUES
  ('Espresso cup', 12.50, 40),
  ('Pour-over kettle', 49.00, 5),
  ('Grinder', 129.00, 0);
