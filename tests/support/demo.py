"""The shop demo's scenario (sql/demo/scenario.sql) as its receivers
report it: `make demo` (tests/webhookd/test_demo.py) and the compose stack
(tests/deploy/test_compose.py) both deliver it."""

import re
from collections import Counter

LINE = re.compile(r"\[(\w+)\] ✓ +(\d+) +(\S+)")
# What sql/demo/scenario.sql delivers: (receiver, event type) -> count.
EXPECTED = Counter(
    {
        ("warehouse", "orders.insert"): 3,
        ("crm", "loyalty.points_earned"): 3,
        ("crm", "reviews.insert"): 3,
        ("crm", "products.back_in_stock"): 1,
        ("support", "support.low_rating.insert"): 2,
    }
)
