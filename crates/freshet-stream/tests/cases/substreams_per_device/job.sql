-- Device B's clock runs an hour behind device A's. On one timeline B's
-- events would all be out of order; OVER DeviceId gives each device its
-- own, and out-of-order tolerance applies within a device.
SELECT DeviceId, System.Timestamp() AS WindowEnd, COUNT(*) AS n
INTO o
FROM i TIMESTAMP BY t OVER DeviceId
GROUP BY DeviceId, TumblingWindow(second, 10)
