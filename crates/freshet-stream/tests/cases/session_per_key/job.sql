SELECT k, System.Timestamp() AS WindowEnd, COUNT(*) AS n
INTO sessions
FROM i TIMESTAMP BY t
GROUP BY k, SessionWindow(second, 5, 10) OVER (PARTITION BY k)
