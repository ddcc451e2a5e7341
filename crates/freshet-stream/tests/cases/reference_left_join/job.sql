SELECT s.deviceId, r.site, s.value
INTO o
FROM s TIMESTAMP BY t
LEFT OUTER JOIN sites r ON s.deviceId = r.deviceId
