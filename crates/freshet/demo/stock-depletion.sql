-- Retail: units sold per SKU every 10 seconds. Every window goes to the
-- live top list; a SKU selling more than 100 units in ten seconds is
-- being depleted (the simulator's flash sale) and raises an alert.
WITH UnitsPerSku AS (
    SELECT Sku, SUM(Qty) AS Units, COUNT(*) AS Orders, System.Timestamp() AS WindowEnd
    FROM [pos-events] TIMESTAMP BY EventTime
    GROUP BY Sku, TumblingWindow(second, 10)
)
SELECT Sku, Units, Orders, WindowEnd INTO [top-skus] FROM UnitsPerSku
SELECT Sku, Units, Orders, WindowEnd INTO [stock-alerts] FROM UnitsPerSku WHERE Units > 100
