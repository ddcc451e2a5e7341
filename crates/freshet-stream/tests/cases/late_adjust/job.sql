SELECT k, System.Timestamp() AS WindowEnd, COUNT(*) AS n
INTO o
FROM i TIMESTAMP BY t
GROUP BY k, TumblingWindow(second, 10)
