SELECT BIN, System.Timestamp() AS WindowEnd, COUNT(*) AS Attempts,
       SUM(CASE WHEN Result = 'DECLINE' THEN 1 ELSE 0 END) * 100.0 / COUNT(*) AS DeclineRatePct
INTO [powerbi-live]
FROM [auth-events] PARTITION BY BIN
TIMESTAMP BY EventTime
GROUP BY BIN, TumblingWindow(second, 30)
HAVING DeclineRatePct > 15
