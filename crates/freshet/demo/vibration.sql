-- IoT: each device's average and peak reading every 10 seconds. A device
-- averaging above 65 (normal is about 50) is drifting, like the
-- simulator's device 0 during its anomaly. OVER deviceId runs each device
-- on its own timeline (seed 004's devices keep their own clocks): a device
-- that lags or goes quiet holds back only its own windows.
WITH PerDevice AS (
    SELECT deviceId, AVG(value) AS AvgValue, MAX(value) AS MaxValue, COUNT(*) AS Readings,
           System.Timestamp() AS WindowEnd
    FROM [iot-events] TIMESTAMP BY createdAt OVER deviceId
    GROUP BY deviceId, TumblingWindow(second, 10)
)
SELECT deviceId, AvgValue, MaxValue, Readings, WindowEnd INTO [device-readings] FROM PerDevice
SELECT deviceId, AvgValue, MaxValue, WindowEnd INTO [vibration-alerts] FROM PerDevice WHERE AvgValue > 65
