SELECT o.orderId, p.amount, DATEDIFF(second, o, p) AS waited
INTO matched
FROM orders o TIMESTAMP BY t
JOIN payments p TIMESTAMP BY t
  ON o.orderId = p.orderId AND DATEDIFF(second, o, p) BETWEEN 0 AND 10
