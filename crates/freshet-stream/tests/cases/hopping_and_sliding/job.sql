WITH Readings AS (
    SELECT deviceId, CAST(value AS float) AS value
    FROM iot TIMESTAMP BY createdAt
    WHERE type = 'vibration'
)
SELECT deviceId, System.Timestamp() AS WindowEnd, COUNT(*) AS n, AVG(value) AS avgValue, MAX(value) AS maxValue
INTO hopping
FROM Readings
GROUP BY deviceId, HoppingWindow(second, 10, 5)

SELECT deviceId, System.Timestamp() AS At, COUNT(*) AS n
INTO sliding
FROM Readings
GROUP BY deviceId, SlidingWindow(second, 10)
HAVING COUNT(*) >= 2
