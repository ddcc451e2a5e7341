WITH perDevice AS (
    SELECT deviceId, COUNT(*) AS n
    FROM i TIMESTAMP BY t
    GROUP BY deviceId, TumblingWindow(second, 10)
)
SELECT System.Timestamp() AS WindowEnd, COUNT(*) AS devices, SUM(n) AS events, MAX(n) AS busiest
INTO o
FROM perDevice
GROUP BY System.Timestamp()
